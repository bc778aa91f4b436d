"""The analytics endpoints: interactions (newest first) and usage (one row per group)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from gateway.errors import InvalidRequest
from store.base import Store
from store.records import AnalyticsRecord, InteractionQuery, UsageQuery
from sync.state import ConfigState

MAX_LIMIT = 10_000
_GROUP_KINDS = {"app": "apps", "user": "users", "llm": "llms"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def export(record: AnalyticsRecord) -> dict[str, Any]:
    fields: dict[str, Any] = msgspec.to_builtins(record)
    fields["timestamp"] = iso(record.timestamp)
    return fields


async def interactions(store: Store, params: dict[str, str]) -> list[dict[str, Any]]:
    query = InteractionQuery(
        app=params.get("app") or None,
        user=params.get("user") or None,
        llm=params.get("llm") or None,
        since=_time(params, "since"),
        until=_time(params, "until"),
        limit=_limit(params.get("limit")),
    )
    return [export(r) for r in await store.interactions(query)]


async def usage(store: Store, state: ConfigState, params: dict[str, str]) -> list[dict[str, Any]]:
    group_by = params.get("group_by", "")
    if group_by not in ("app", "user", "llm", "model", "day"):
        raise InvalidRequest("group_by must be one of app, user, llm, model, day")
    query = UsageQuery(group_by=group_by, since=_time(params, "since"), until=_time(params, "until"))  # type: ignore[arg-type]
    rows = await store.usage(query)
    names = {s.id: s.name for s in state.of(_GROUP_KINDS[group_by])} if group_by in _GROUP_KINDS else {}
    out = []
    for row in rows:
        key = row.pop("key")
        entity_id = key if group_by in _GROUP_KINDS else None
        if entity_id is not None and entity_id in names:
            row["group"] = names[entity_id]  # the current name, if it was renamed since
        out.append({"group": row.pop("group"), "id": entity_id, **row})
    return out


def _time(params: dict[str, str], name: str) -> float | None:
    value = params.get(name)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO 8601 date or time, e.g. 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _limit(value: str | None) -> int:
    if not value:
        return 100
    try:
        limit = int(value)
    except ValueError:
        raise InvalidRequest("limit must be a whole number") from None
    return max(1, min(limit, MAX_LIMIT))
