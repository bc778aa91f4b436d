"""Cross-entity checks that types alone cannot express: references, duplicates, regexes, vendor fields.

Run on the YAML bootstrap at startup and on the would-be configuration before every admin API write, so
a configuration that the gateway cannot serve never reaches the store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from sync.model import ConfigFile, Filter, Llm

SECRET_PREFIX = "$SECRET/"

# Filter kinds and the phases they may run in (INTERFACE.md, "Built-in filter kinds").
FILTER_PHASES: dict[str, frozenset[str]] = {
    "pii_redact": frozenset({"post_auth", "response"}),
    "regex_block": frozenset({"pre_auth", "post_auth"}),
    "max_prompt_tokens": frozenset({"post_auth"}),
    "require_fields": frozenset({"pre_auth", "post_auth"}),
    "strip_fields": frozenset({"pre_auth", "post_auth"}),
    "response_regex": frozenset({"response"}),
}
EXTERNAL_FILTER_PREFIXES = ("python:", "plugin:")

# Vendor-specific LLM fields, and which vendors take them.
VENDOR_FIELDS: dict[str, frozenset[str]] = {
    "organization": frozenset({"openai"}),
    "anthropic_version": frozenset({"anthropic"}),
    "project": frozenset({"vertex"}),
    "region": frozenset({"vertex", "bedrock"}),
    "api_version": frozenset({"azure_openai"}),
    "deployments": frozenset({"azure_openai"}),
}
VENDORS_WITHOUT_DEFAULT_BASE = frozenset({"azure_openai"})


class Problem(NamedTuple):
    section: str
    label: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.section} '{self.label}'" if self.label else self.section
        return f"{where}: field '{self.field}': {self.message}" if self.field else f"{where}: {self.message}"


def validate(cfg: ConfigFile) -> list[Problem]:
    """Every problem of `cfg`, in file order; an empty list means it can be served."""
    return list(_problems(cfg))


def compile_models(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One full-match regex for `allowed_models`; None when any model is allowed."""
    parts = [f"(?:{p})" for p in patterns]
    return re.compile("|".join(parts)) if parts else None


def _problems(cfg: ConfigFile) -> Iterator[Problem]:
    slugs = {llm.slug for llm in cfg.llms}
    callable_slugs = slugs | {route.slug for route in cfg.routes}
    users = {user.email for user in cfg.users}
    groups = {group.name for group in cfg.groups}
    filters = {f.name for f in cfg.filters}
    secrets = set(cfg.secrets)

    yield from _duplicates("llms", [llm.slug for llm in cfg.llms] + [r.slug for r in cfg.routes])
    yield from _duplicates("apps", [app.name for app in cfg.apps])
    yield from _duplicates("users", [user.email for user in cfg.users])
    yield from _duplicates("groups", [group.name for group in cfg.groups])
    yield from _duplicates("filters", [f.name for f in cfg.filters])
    yield from _duplicates("prices", [f"{p.vendor}/{p.model}" for p in cfg.prices])

    for llm in cfg.llms:
        yield from _llm_problems(llm, filters, secrets)
    for route in cfg.routes:
        for target in route.targets:
            if target.llm not in slugs:
                yield Problem("routes", route.slug, "targets", f"unknown LLM '{target.llm}'")
        if route.fallback and route.fallback.to not in callable_slugs:
            yield Problem("routes", route.slug, "fallback", f"unknown LLM or route '{route.fallback.to}'")
    for user in cfg.users:
        for name in user.groups:
            if name not in groups:
                yield Problem("users", user.email, "groups", f"unknown group '{name}'")
    for group in cfg.groups:
        yield from _unknown_llms("groups", group.name, group.llms, callable_slugs)
    keys: dict[str, str] = {}
    for app in cfg.apps:
        if app.owner not in users:
            yield Problem("apps", app.name, "owner", f"unknown user '{app.owner}'")
        yield from _unknown_llms("apps", app.name, app.llms, callable_slugs)
        if app.api_key is not None:
            if len(app.api_key) < 8:
                yield Problem("apps", app.name, "api_key", "must be at least 8 characters")
            elif app.api_key in keys:
                yield Problem("apps", app.name, "api_key", f"same key as app '{keys[app.api_key]}'")
            keys[app.api_key] = app.name
    for f in cfg.filters:
        yield from _filter_problems(f)
    if cfg.cache and cfg.cache.embedding and cfg.cache.embedding.llm not in slugs:
        yield Problem("cache", "", "embedding", f"unknown LLM '{cfg.cache.embedding.llm}'")


def _llm_problems(llm: Llm, filters: set[str], secrets: set[str]) -> Iterator[Problem]:
    if llm.api_base is not None and not llm.api_base.startswith(("http://", "https://")):
        yield Problem("llms", llm.slug, "api_base", "must be an http:// or https:// URL")
    if llm.api_base is None and llm.vendor in VENDORS_WITHOUT_DEFAULT_BASE:
        yield Problem("llms", llm.slug, "api_base", f"vendor {llm.vendor} needs its resource endpoint")
    if llm.api_key and llm.api_key.startswith(SECRET_PREFIX):
        name = llm.api_key.removeprefix(SECRET_PREFIX)
        if name not in secrets:
            yield Problem("llms", llm.slug, "api_key", f"unknown secret '{name}'")
    for field, vendors in VENDOR_FIELDS.items():
        if getattr(llm, field) is not None and llm.vendor not in vendors:
            yield Problem("llms", llm.slug, field, f"does not apply to vendor {llm.vendor}")
    try:
        allowed = compile_models(llm.allowed_models)
    except re.error as exc:
        yield Problem("llms", llm.slug, "allowed_models", f"invalid regex: {exc}")
    else:
        if allowed and llm.default_model and not allowed.fullmatch(llm.default_model):
            yield Problem("llms", llm.slug, "default_model", "is not matched by allowed_models")
    for name in llm.filters:
        if name not in filters:
            yield Problem("llms", llm.slug, "filters", f"unknown filter '{name}'")


def _filter_problems(f: Filter) -> Iterator[Problem]:
    if f.kind.startswith(EXTERNAL_FILTER_PREFIXES):
        from pipeline.plugins.filters import config_problems as external_problems

        for message in external_problems(f):
            yield Problem("filters", f.name, "config", message)
        return
    phases = FILTER_PHASES.get(f.kind)
    if phases is None:
        known = ", ".join(sorted(FILTER_PHASES))
        yield Problem(
            "filters", f.name, "kind", f"unknown kind '{f.kind}' (built-in: {known}, python:, plugin:)"
        )
    elif f.phase not in phases:
        yield Problem("filters", f.name, "phase", f"kind {f.kind} runs in {', '.join(sorted(phases))}")
    else:
        for message in _config_problems(f):
            yield Problem("filters", f.name, "config", message)


def _config_problems(f: Filter) -> Iterator[str]:
    from pipeline.text import config_problems as text_problems

    config = f.config
    if f.kind == "max_prompt_tokens":
        limit = config.get("max")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            yield "'max' must be a positive number of tokens"
    elif f.kind in ("require_fields", "strip_fields"):
        fields = config.get("fields")
        if not isinstance(fields, list) or not fields or not all(isinstance(x, str) for x in fields):
            yield "'fields' must be a non-empty list of field names"
    else:
        yield from text_problems(f.kind, config)


def _unknown_llms(section: str, label: str, names: list[str], known: set[str]) -> Iterator[Problem]:
    for name in names:
        if name not in known:
            yield Problem(section, label, "llms", f"unknown LLM or route '{name}'")


def _duplicates(section: str, names: list[str]) -> Iterator[Problem]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            yield Problem(section, name, "", "defined more than once")
        seen.add(name)
