"""The configuration schema: one frozen Struct per entity, in the configuration file's field names.

The same Structs are decoded from the YAML bootstrap, from admin API bodies and from the store, and are
what a hub ships to its edges, so the format is defined once, here. Unknown fields are an error
everywhere (a typo in a config file must not be silently ignored).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, field

Vendor = Literal[
    "openai",
    "anthropic",
    "google_ai",
    "vertex",
    "huggingface",
    "ollama",
    "azure_openai",
    "bedrock",
    "mistral",
]
VENDORS: tuple[str, ...] = Vendor.__args__  # type: ignore[attr-defined]

Role = Literal["super_admin", "admin", "developer", "chat_user"]
Phase = Literal["pre_auth", "auth", "post_auth", "response"]

# Slugs appear in URL paths: keep them to characters that never need escaping.
Slug = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Email = Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
Usd = Annotated[float, Meta(ge=0)]
PerMillion = Annotated[float, Meta(ge=0)]
Positive = Annotated[int, Meta(gt=0)]
Seconds = Annotated[float, Meta(gt=0)]


class Entity(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Base of every configuration entity."""


class RateLimit(Entity, frozen=True):
    rpm: Positive | None = None
    tpm: Positive | None = None


class CacheSettings(Entity, frozen=True):
    mode: Literal["off", "exact", "semantic"] = "off"
    ttl_s: Seconds = 3600.0
    threshold: Annotated[float, Meta(gt=0, le=1)] = 0.95
    scope: Literal["app", "global"] = "app"
    max_messages: Positive = 10  # semantic: longer conversations are looked up exactly only


class Llm(Entity, frozen=True):
    slug: Slug
    vendor: Vendor
    api_base: str | None = None
    api_key: str | None = None
    allowed_models: list[str] = []
    default_model: str | None = None
    monthly_budget_usd: Usd | None = None
    rate_limit: RateLimit | None = None
    filters: list[str] = []
    namespace: str = ""
    timeout_s: Seconds = 600.0
    active: bool = True
    cache: CacheSettings | None = None
    # Vendor-specific fields (INTERFACE.md, "Vendor-specific LLM fields").
    organization: str | None = None
    anthropic_version: str | None = None
    project: str | None = None
    region: str | None = None
    api_version: str | None = None
    deployments: dict[str, str] | None = None


RetryOn = Annotated[int, Meta(ge=400, le=599)] | Literal["timeout", "connect"]


class Retry(Entity, frozen=True):
    attempts: Annotated[int, Meta(ge=0, le=10)] = 0
    on: list[RetryOn] = field(default_factory=lambda: [429, 500, 502, 503, 504, "timeout", "connect"])
    backoff_ms: Annotated[int, Meta(ge=0)] = 200
    respect_retry_after: bool = True
    max_retry_after_s: Annotated[float, Meta(ge=0)] = 30.0


class Fallback(Entity, frozen=True):
    on: list[Literal["context_length", "content_filter"]]
    to: Slug


class Cooldown(Entity, frozen=True):
    fails: Positive = 3
    window_s: Seconds = 60.0
    duration_s: Seconds = 30.0


class RouteTarget(Entity, frozen=True):
    llm: Slug
    model: str | None = None
    weight: Annotated[int, Meta(ge=0)] = 1
    priority: Annotated[int, Meta(ge=0)] = 0


class Route(Entity, frozen=True):
    slug: Slug
    targets: Annotated[list[RouteTarget], Meta(min_length=1)]
    strategy: Literal["weighted", "round_robin", "least_busy", "latency", "priority"] = "weighted"
    retry: Retry | None = None
    fallback: Fallback | None = None
    cooldown: Cooldown | None = None
    cache: CacheSettings | None = None
    namespace: str = ""


class Price(Entity, frozen=True):
    vendor: Vendor
    model: Name
    input_per_1m: PerMillion
    output_per_1m: PerMillion = 0.0
    # None: cached tokens cost what other input tokens cost (never free by omission).
    cache_write_per_1m: PerMillion | None = None
    cache_read_per_1m: PerMillion | None = None


class User(Entity, frozen=True):
    email: Email
    role: Role = "developer"
    groups: list[str] = []
    # Optional admin-API key (stored hashed); admins and super admins may use it on the admin port.
    api_key: str | None = None


class Group(Entity, frozen=True):
    name: Name
    llms: list[str] = []


class App(Entity, frozen=True):
    name: Name
    owner: Email
    api_key: str | None = None
    llms: list[str] = []
    monthly_budget_usd: Usd | None = None
    rate_limit: RateLimit | None = None
    namespace: str = ""
    active: bool = True
    cache: CacheSettings | None = None


class Filter(Entity, frozen=True):
    name: Name
    phase: Phase
    kind: Annotated[str, Meta(min_length=1)]
    config: dict[str, Any] = {}
    global_: bool = field(default=False, name="global")
    namespace: str = ""


class Secret(Entity, frozen=True):
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]
    value: str


class EmbeddingRef(Entity, frozen=True):
    llm: Slug
    model: str | None = None


class CacheStore(Entity, frozen=True):
    backend: Literal["memory", "redis"] = "memory"
    max_entries: Positive = 10000
    embedding: EmbeddingRef | None = None


class MockUpstream(Entity, frozen=True):
    """Tollgate extension: `serve` starts the bundled OpenAI-compatible mock on this address."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(gt=0, lt=65536)] = 9099
    api_key: str | None = None


class ConfigFile(Entity, frozen=True):
    secrets: dict[str, str] = {}
    llms: list[Llm] = []
    routes: list[Route] = []
    prices: list[Price] = []
    users: list[User] = []
    groups: list[Group] = []
    apps: list[App] = []
    filters: list[Filter] = []
    cache: CacheStore | None = None
    mock_upstream: MockUpstream | None = None
