"""Analytics: one record per interaction, and the queries the admin API runs over them."""

from __future__ import annotations

from typing import Literal

import msgspec

InteractionType = Literal["chat", "embedding", "proxy"]
GroupBy = Literal["app", "user", "llm", "model", "day"]


class AnalyticsRecord(msgspec.Struct, kw_only=True):
    """What the analytics queue carries and the store keeps (INTERFACE.md, "Analytics")."""

    timestamp: float  # epoch seconds, UTC
    request_id: str
    interaction_type: InteractionType
    status_code: int
    error_code: str = ""
    user_id: int | None = None
    user_email: str = ""
    app_id: int | None = None
    app_name: str = ""
    llm_id: int | None = None
    llm_slug: str = ""
    vendor: str = ""
    model_name: str = ""
    prompt_tokens: int = 0
    response_tokens: int = 0
    total_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    upstream_latency_ms: float = 0.0  # time to the upstream's response headers
    stream: bool = False
    edge_id: str = ""
    route: str = ""
    attempt: int = 1
    cache_status: str = ""
    blocked_by: str = ""  # the filter that blocked the request or its answer
    id: int = 0  # assigned by the store; orders records with equal timestamps


RECORD_FIELDS: tuple[str, ...] = tuple(f for f in AnalyticsRecord.__struct_fields__ if f != "id")


class InteractionQuery(msgspec.Struct, frozen=True, kw_only=True):
    app: str | None = None  # an id or a name
    user: str | None = None  # an id or an email
    llm: str | None = None  # an id or a slug
    since: float | None = None
    until: float | None = None
    limit: int = 100


class UsageQuery(msgspec.Struct, frozen=True, kw_only=True):
    group_by: GroupBy
    since: float | None = None
    until: float | None = None
