"""The snapshot: everything the hot path reads, compiled once from a `ConfigState` and swapped whole.

Regexes are compiled, credentials opened, adapters bound, grants resolved and filter chains composed
here, so a request does dict lookups and nothing else. A snapshot is never mutated.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import msgspec

from pipeline.access import RouteAccess
from pipeline.chain import Chain, compose
from pipeline.counters.base import Budget, Window
from pipeline.limits import budget_for, window_for
from pipeline.registry import Services
from pipeline.routing import Target
from pipeline.services import default_services
from providers.base import Provider
from providers.registry import bind, has_adapter
from sync.entities import resolve_api_key
from sync.model import App, CacheSettings, Cooldown, Fallback, Filter, Llm, Retry, Route, User
from sync.prices import PriceBook
from sync.secrets import SecretBox
from sync.state import ConfigState
from sync.validate import compile_models

ADMIN_ROLES = frozenset({"super_admin", "admin"})
SLICE_S = 0.002  # build_async: the longest the event loop waits for it at a time


class LlmEntry(msgspec.Struct, frozen=True):
    id: int
    slug: str
    vendor: str
    default_model: str | None
    allowed_models: re.Pattern[str] | None
    provider: Provider
    chain: Chain
    window: Window | None = None  # its rate_limit
    budget: Budget | None = None  # its monthly_budget_usd
    hold_ms: int = 660_000  # how long a budget reservation outlives an unsettled call
    cache: CacheSettings | None = None
    # What it was compiled from (the LLM, its filters in order, its opened key) and the warnings that
    # gave: the next build reuses the entry when they are equal.
    source: tuple[Any, ...] = ()
    notes: tuple[str, ...] = ()


class RouteEntry(msgspec.Struct, frozen=True):
    """A route: a virtual LLM whose attempts go to its targets (gateway/routing.py)."""

    id: int
    slug: str
    strategy: str
    targets: tuple[Target, ...]
    chain: Chain  # global filters, the app key, the route's grant, limits
    retry: Retry
    fallback: Fallback | None
    cooldown: Cooldown
    price: tuple[str, str] | None  # (vendor, model) of its dearest target: what a reservation costs
    hold_ms: int  # how long a reservation outlives an unsettled call
    deadline_s: float  # every attempt of a call, backoffs included, ends within this
    cache: CacheSettings | None = None


class AppEntry(msgspec.Struct, frozen=True):
    id: int
    name: str
    active: bool
    owner_id: int | None
    owner_email: str
    llms: frozenset[str]  # what it may call: its `llms` that its owner may use
    window: Window | None = None  # its rate_limit
    budget: Budget | None = None  # its monthly_budget_usd
    namespace: str = ""  # edges of other namespaces never get it
    cache: CacheSettings | None = None


class UserEntry(msgspec.Struct, frozen=True):
    id: int
    email: str
    role: str


class Snapshot(msgspec.Struct, frozen=True):
    version: int
    built_at: float
    llms: dict[str, LlmEntry]
    apps: dict[str, AppEntry]  # by the hex SHA-256 of the key
    users: dict[str, UserEntry]  # by the hex SHA-256 of their admin API key
    prices: PriceBook
    unserved: dict[str, str]  # slug → why it is configured but not served (a disabled LLM)
    warnings: tuple[str, ...]
    plugin_commands: frozenset[str] = frozenset()  # the plugin: executables its filters call
    routes: dict[str, RouteEntry] = {}

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(-1, time.time(), {}, {}, {}, PriceBook(()), {}, ())


def build(
    state: ConfigState, box: SecretBox, notes: Sequence[str] = (), services: Services | None = None
) -> Snapshot:
    """Compile `state`; `notes` are process-level warnings (flags not built yet) to show beside ours.
    `services` are the process's counters and plugin hosts that filters use (a probe build gets its own)."""
    steps = _build(state, box, notes, services or default_services())
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def build_async(
    state: ConfigState,
    box: SecretBox,
    notes: Sequence[str] = (),
    services: Services | None = None,
    previous: Snapshot | None = None,
) -> Snapshot:
    """`build`, giving the event loop back every `SLICE_S`, so requests keep flowing while a large
    configuration compiles (the snapshot is swapped in only when it is whole). The LLMs of `previous`
    (built with the same `services`) that have not changed are reused, not compiled again."""
    steps = _build(state, box, notes, services or default_services(), previous)
    started = time.perf_counter()
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if time.perf_counter() - started > SLICE_S:
            await asyncio.sleep(0)
            started = time.perf_counter()


def _build(
    state: ConfigState,
    box: SecretBox,
    notes: Sequence[str],
    services: Services,
    previous: Snapshot | None = None,
) -> Generator[None, None, Snapshot]:
    """The compilation, as steps: it yields after each LLM and each slice of apps."""
    reusable = previous.llms if previous is not None else {}
    warnings = list(notes)
    filters: dict[str, Filter] = {s.name: s.entity for s in state.of("filters")}
    secrets = state.secret_values()
    llms: dict[str, LlmEntry] = {}
    unserved: dict[str, str] = {}
    for stored in state.of("llms"):
        llm: Llm = stored.entity
        if not llm.active:
            unserved[llm.slug] = f"LLM '{llm.slug}' is disabled"
            continue
        chosen = _unique(
            [f for f in filters.values() if f.global_] + [filters[n] for n in llm.filters if n in filters]
        )
        source = (stored.id, llm, tuple(chosen), resolve_api_key(llm, secrets, box))
        entry = reusable.get(llm.slug)
        if entry is None or entry.source != source:
            entry = _compile_llm(llm, source, [n for n in llm.filters if n not in filters], services)
        llms[llm.slug] = entry
        warnings += entry.notes
        yield
    globals_ = _unique([f for f in filters.values() if f.global_])
    routes: dict[str, RouteEntry] = {}
    for stored in state.of("routes"):
        compiled, notes = _compile_route(stored.id, stored.entity, llms, state, globals_, services)
        warnings += notes
        if compiled is not None:
            routes[compiled.slug] = compiled
        else:
            unserved[stored.entity.slug] = f"route '{stored.entity.slug}' has no target this gateway serves"
        yield
    warnings += _unbuilt(state)
    apps = yield from _resolve_apps(state)
    return Snapshot(
        version=state.version,
        built_at=time.time(),
        llms=llms,
        apps=apps,
        users={
            s.key_hash: UserEntry(s.id, s.entity.email, s.entity.role)
            for s in state.of("users")
            if s.key_hash
        },
        prices=PriceBook(s.entity for s in state.of("prices")),
        unserved=unserved,
        warnings=tuple(dict.fromkeys(warnings)),
        plugin_commands=frozenset(
            f.kind.removeprefix("plugin:") for f in filters.values() if f.kind.startswith("plugin:")
        ),
        routes=routes,
    )


def _compile_llm(llm: Llm, source: tuple[Any, ...], missing: list[str], services: Services) -> LlmEntry:
    id, _, chosen, api_key = source
    notes = [f"LLM '{llm.slug}': filter '{n}' is not in this gateway's configuration" for n in missing]
    chain, broken = compose(chosen, services)
    notes += [f"filter '{f.name}' ({f.kind}) is not enforced: {why}" for f, why in broken]
    if chain.responds and llm.vendor == "bedrock":
        notes.append(
            f"LLM '{llm.slug}': response filters apply on /openai/; Bedrock's native event streams "
            "on /proxy/ pass through them unfiltered"
        )
    return LlmEntry(
        id,
        llm.slug,
        llm.vendor,
        llm.default_model,
        compile_models(llm.allowed_models),
        bind(llm, api_key),
        chain,
        window=window_for(f"llm:{id}", llm.rate_limit),
        budget=budget_for(f"llm:{id}", llm.monthly_budget_usd),
        hold_ms=int(llm.timeout_s * 1000) + 60_000,
        cache=llm.cache,
        source=source,
        notes=tuple(notes),
    )


def _compile_route(
    id: int,
    route: Route,
    llms: dict[str, LlmEntry],
    state: ConfigState,
    globals_: list[Filter],
    services: Services,
) -> tuple[RouteEntry | None, list[str]]:
    """The route's entry (None when none of its targets is served here) and the warnings it gives."""
    notes: list[str] = []
    targets: list[Target] = []
    for index, spec in enumerate(route.targets):
        llm = llms.get(spec.llm)
        if llm is None:
            notes.append(f"route '{route.slug}': target '{spec.llm}' is not an LLM this gateway serves")
            continue
        model = spec.model or llm.default_model or ""
        if not model:
            notes.append(f"route '{route.slug}': target '{spec.llm}' names no model and has no default_model")
            continue
        if llm.allowed_models is not None and not llm.allowed_models.fullmatch(model):
            notes.append(f"route '{route.slug}': model '{model}' is not allowed on LLM '{spec.llm}'")
            continue
        targets.append(Target(index, spec.llm, model, spec.weight, spec.priority))
    if route.fallback is not None and route.fallback.to == route.slug:
        notes.append(f"route '{route.slug}': falls back to itself; the fallback is ignored")
    if not targets:
        return None, notes
    chain, broken = compose(globals_, services, RouteAccess())
    notes += [f"filter '{f.name}' ({f.kind}) is not enforced: {why}" for f, why in broken]
    prices = PriceBook(s.entity for s in state.of("prices"))
    served = [(llms[t.llm], t.model) for t in targets]
    priced = [(llm.vendor, model, prices.rate(llm.vendor, model)) for llm, model in served]
    dearest = max(priced, key=lambda p: (p[2].input + p[2].output) if p[2] else -1.0)
    longest = max(llm.hold_ms for llm, _ in served)
    fallback = route.fallback if route.fallback is not None and route.fallback.to != route.slug else None
    return (
        RouteEntry(
            id,
            route.slug,
            route.strategy,
            tuple(targets),
            chain,
            route.retry or Retry(),
            fallback,
            route.cooldown or Cooldown(),
            (dearest[0], dearest[1]),
            longest,
            deadline_s=(longest - 60_000) / 1000,
            cache=route.cache,
        ),
        notes,
    )


def resolve_apps(state: ConfigState) -> dict[str, AppEntry]:
    """Every app with a key, by key hash, its grants resolved (what a hub answers edges' lookups with)."""
    steps = _resolve_apps(state)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def _resolve_apps(state: ConfigState) -> Generator[None, None, dict[str, AppEntry]]:
    group_llms: dict[str, set[str]] = {s.entity.name: set(s.entity.llms) for s in state.of("groups")}
    users: dict[str, tuple[int, User]] = {s.entity.email: (s.id, s.entity) for s in state.of("users")}
    apps: dict[str, AppEntry] = {}
    permissions: dict[str, set[str] | None] = {}  # owner → what they may use, worked out once per owner
    for stored in state.of("apps"):
        app: App = stored.entity
        if not stored.key_hash:
            continue
        owner = users.get(app.owner)
        if app.owner not in permissions:
            permissions[app.owner] = _permitted(owner[1], group_llms) if owner else set()
        permitted = permissions[app.owner]
        grants = frozenset(s for s in app.llms if permitted is None or s in permitted)
        owner_id = owner[0] if owner else None
        entry = AppEntry(
            stored.id,
            app.name,
            app.active,
            owner_id,
            app.owner,
            grants,
            window=window_for(f"app:{stored.id}", app.rate_limit),
            budget=budget_for(f"app:{stored.id}", app.monthly_budget_usd),
            namespace=app.namespace,
            cache=app.cache,
        )
        apps[stored.key_hash] = entry
        if len(apps) % 512 == 0:
            yield
    return apps


def _permitted(user: User, group_llms: dict[str, set[str]]) -> set[str] | None:
    """The LLMs a user may use; None means every one (admins)."""
    if user.role in ADMIN_ROLES:
        return None
    return set().union(*(group_llms.get(g, set()) for g in user.groups))


def _unbuilt(state: ConfigState) -> Iterator[str]:
    """Warnings for configured features that this version does not enforce yet (never silently ignored)."""
    for stored in state.of("llms"):
        llm: Llm = stored.entity
        if not has_adapter(llm.vendor):
            yield f"LLM '{llm.slug}': vendor {llm.vendor} has no adapter yet; its calls answer 501"


def uses_semantic(snapshot: Snapshot) -> list[str]:
    """The LLMs, routes and apps whose cache mode is semantic."""
    entries: list[Any] = [*snapshot.llms.values(), *snapshot.routes.values(), *snapshot.apps.values()]
    return [
        str(getattr(e, "slug", None) or getattr(e, "name", ""))
        for e in entries
        if e.cache is not None and e.cache.mode == "semantic"
    ]


def _unique(filters: list[Filter]) -> list[Filter]:
    return list({f.name: f for f in filters}.values())
