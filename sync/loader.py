"""Read the YAML bootstrap into a validated `ConfigFile`, or fail with one line naming file, entry, field."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from sync.model import ConfigFile
from sync.validate import validate

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_AT_PATH = re.compile(r" - at `\$(.*)`$")
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[(['\"])(.*?)\3\]")
# The field that names an entry of each list section, for error messages.
_ENTRY_LABELS = ("slug", "name", "email", "model")


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 reads `on:` (retry.on, fallback.on) as `True:`."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class ConfigError(Exception):
    """A configuration that cannot be served; the message is one line meant for the operator."""


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> ConfigFile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (llms:, apps:, ...)")
    env = os.environ if environ is None else environ
    expanded = _expand(raw, env, path, raw, [])
    try:
        cfg = msgspec.convert(expanded, ConfigFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {describe_error(str(exc), raw)}") from None
    problems = validate(cfg)
    if problems:
        raise ConfigError(f"{path}: {problems[0]}")
    return cfg


def describe_error(message: str, raw: Any) -> str:
    """Turn msgspec's `... - at `$.llms[0].vendor`` into `llms 'gpt': field 'vendor': ...`."""
    match = _AT_PATH.search(message)
    detail = message[: match.start()] if match else message
    parts: list[str | int] = []
    for attr, index, _, key in _PATH_PART.findall(match.group(1) if match else ""):
        parts.append(int(index) if index else (attr or key))
    named = re.match(r"Object (contains unknown|missing required) field `(.+)`", detail)
    if named:
        parts.append(named.group(2))
        detail = "unknown field" if named.group(1) == "contains unknown" else "is required"
    return _locate(parts, raw) + detail


def _locate(parts: list[str | int], raw: Any) -> str:
    if len(parts) >= 2 and isinstance(parts[0], str) and isinstance(parts[1], int):
        section, index = parts[0], parts[1]
        entry = raw.get(section, [None])[index] if isinstance(raw.get(section), list) else None
        label = next((str(entry[k]) for k in _ENTRY_LABELS if isinstance(entry, dict) and k in entry), None)
        where = f"{section} '{label}'" if label else f"{section}[{index}]"
        rest = parts[2:]
    else:
        where, rest = "", parts
    field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in rest).replace(".[", "[")
    if where and field:
        return f"{where}: field '{field}': "
    if field:
        return f"field '{field}': "
    return f"{where}: " if where else ""


def _expand(value: Any, env: Mapping[str, str], path: Path, raw: Any, at: list[str | int]) -> Any:
    if isinstance(value, str):
        return _expand_string(value, env, path, raw, at)
    if isinstance(value, dict):
        return {k: _expand(v, env, path, raw, [*at, str(k)]) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, path, raw, [*at, i]) for i, v in enumerate(value)]
    return value


def _expand_string(text: str, env: Mapping[str, str], path: Path, raw: Any, at: list[str | int]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: {_locate(at, raw)}environment variable {name} is not set")

    return _ENV_REF.sub(substitute, text) if "$" in text else text
