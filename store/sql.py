"""Analytics SQL shared by every SQL store; only placeholders and the day expression differ by dialect."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from store.base import KIND_NAMES, Put, StoreError
from store.records import RECORD_FIELDS, AnalyticsRecord, InteractionQuery, UsageQuery

# Record field → column (the timestamp column is `ts`: `timestamp` is a type name in SQL).
_COLUMNS = tuple("ts" if f == "timestamp" else f for f in RECORD_FIELDS)
SELECT_RECORD = ", ".join(("id", *_COLUMNS))

# group_by → (key expression, label expression); labels are the names recorded at the time.
_GROUPS = {
    "app": ("app_id", "app_name"),
    "user": ("user_id", "user_email"),
    "llm": ("llm_id", "llm_slug"),
    "model": ("model_name", "model_name"),
}


class Params:
    """Collects query parameters and hands out placeholders: `?` (SQLite) or `$1, $2, ...` (PostgreSQL)."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return "?" if self.style == "?" else f"${len(self.values)}"


def insert_record_statement(params: Params) -> str:
    placeholders = ", ".join(params.add(None) for _ in _COLUMNS)
    return f"INSERT INTO analytics ({', '.join(_COLUMNS)}) VALUES ({placeholders})"


def record_params(record: AnalyticsRecord) -> tuple[Any, ...]:
    return msgspec.structs.astuple(record)[:-1]  # every field but `id`, which is last


def record_from_row(row: Sequence[Any]) -> AnalyticsRecord:
    values = dict(zip(RECORD_FIELDS, row[1:], strict=True))
    values["stream"] = bool(values["stream"])
    return AnalyticsRecord(id=int(row[0]), **values)


def _where(params: Params, since: float | None, until: float | None, extra: list[str]) -> str:
    clauses = list(extra)
    if since is not None:
        clauses.append(f"ts >= {params.add(since)}")
    if until is not None:
        clauses.append(f"ts < {params.add(until)}")
    return " WHERE " + " AND ".join(clauses) if clauses else ""


def _match(params: Params, id_column: str, name_column: str, value: str) -> str:
    """`value` may be an entity's id or its name (slug, email)."""
    if value.isdigit():
        return f"({id_column} = {params.add(int(value))} OR {name_column} = {params.add(value)})"
    return f"{name_column} = {params.add(value)}"


def interactions_query(query: InteractionQuery, params: Params) -> tuple[str, list[Any]]:
    """Newest first; records with equal timestamps (a route's attempts) in the order they were recorded."""
    extra = []
    if query.app is not None:
        extra.append(_match(params, "app_id", "app_name", query.app))
    if query.user is not None:
        extra.append(_match(params, "user_id", "user_email", query.user))
    if query.llm is not None:
        extra.append(_match(params, "llm_id", "llm_slug", query.llm))
    where = _where(params, query.since, query.until, extra)
    limit = params.add(query.limit)
    statement = f"SELECT {SELECT_RECORD} FROM analytics{where} ORDER BY ts DESC, id LIMIT {limit}"
    return statement, params.values


def usage_query(
    query: UsageQuery, params: Params, day_expression: str, ordered_sets: bool = False
) -> tuple[str, list[Any]]:
    """One row per group; p50/p95 latency by nearest rank, computed in the database: with PostgreSQL's
    ordered-set aggregate (`ordered_sets`; percentile_disc is nearest rank), else with window functions
    (SQLite has no percentile aggregate)."""
    key, label = _GROUPS.get(query.group_by, (day_expression, day_expression))
    where = _where(params, query.since, query.until, [])
    order = "gkey" if query.group_by == "day" else "requests DESC, glabel"
    if ordered_sets:
        statement = f"""
            SELECT {key} AS gkey, MAX({label}) AS glabel, COUNT(*) AS requests,
                   SUM(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END),
                   SUM(prompt_tokens), SUM(response_tokens), SUM(total_tokens), SUM(cost),
                   percentile_disc(0.50) WITHIN GROUP (ORDER BY latency_ms),
                   percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms)
            FROM analytics{where} GROUP BY gkey ORDER BY {order}"""
        return statement, params.values
    statement = f"""
        WITH base AS (
            SELECT {key} AS gkey, {label} AS glabel, status_code, prompt_tokens, response_tokens,
                   total_tokens, cost, latency_ms
            FROM analytics{where}
        ), ranked AS (
            SELECT base.*,
                   ROW_NUMBER() OVER (PARTITION BY gkey ORDER BY latency_ms) AS rn,
                   COUNT(*) OVER (PARTITION BY gkey) AS n
            FROM base
        )
        SELECT gkey, MAX(glabel) AS glabel, COUNT(*) AS requests,
               SUM(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END),
               SUM(prompt_tokens), SUM(response_tokens), SUM(total_tokens), SUM(cost),
               MIN(CASE WHEN rn >= 0.50 * n THEN latency_ms END),
               MIN(CASE WHEN rn >= 0.95 * n THEN latency_ms END)
        FROM ranked GROUP BY gkey ORDER BY {order}"""
    return statement, params.values


def usage_row(row: Sequence[Any]) -> dict[str, object]:
    return {
        "key": row[0],
        "group": row[1] if row[1] is not None else "",
        "requests": int(row[2]),
        "errors": int(row[3] or 0),
        "prompt_tokens": int(row[4] or 0),
        "response_tokens": int(row[5] or 0),
        "total_tokens": int(row[6] or 0),
        "cost": float(row[7] or 0.0),
        "latency_p50_ms": float(row[8] or 0.0),
        "latency_p95_ms": float(row[9] or 0.0),
    }


def spend_query(since: float, params: Params) -> tuple[str, list[Any]]:
    """Cost since `since` per app and per LLM (the budgets' seed): rows of (kind, id, cost)."""
    statement = f"""
        SELECT 'app', app_id, SUM(cost) FROM analytics WHERE ts >= {params.add(since)} AND app_id IS NOT NULL
        GROUP BY app_id
        UNION ALL
        SELECT 'llm', llm_id, SUM(cost) FROM analytics WHERE ts >= {params.add(since)} AND llm_id IS NOT NULL
        GROUP BY llm_id"""
    return statement, params.values


def spend_rows(rows: Iterable[Sequence[Any]]) -> dict[str, float]:
    """{"app:12": usd, "llm:3": usd}: the counters' budget keys (pipeline/limits.py)."""
    return {f"{kind}:{id}": float(cost or 0.0) for kind, id, cost in rows}


ROW_COLUMNS = "id, name, namespace, data, key_hash, created_at, updated_at"


def table(kind: str) -> str:
    """The table of an entity kind (table names are interpolated: only known kinds get through)."""
    if kind not in KIND_NAMES:
        raise StoreError(f"unknown entity kind {kind!r}")
    return kind


def put_statement(op: Put, now: float, params: Params) -> tuple[str, list[Any]]:
    """The statement of one Put (insert, upsert by name, or update by id), returning the row."""
    name = table(op.kind)
    if op.mode == "update":
        sets = ", ".join(
            f"{column} = {params.add(value)}"
            for column, value in (
                ("name", op.name), ("namespace", op.namespace), ("data", op.data),
                ("key_hash", op.key_hash), ("updated_at", now),
            )
        )  # fmt: skip
        return (
            f"UPDATE {name} SET {sets} WHERE id = {params.add(op.id)} RETURNING {ROW_COLUMNS}",
            params.values,
        )
    values = ", ".join(params.add(v) for v in (op.name, op.namespace, op.data, op.key_hash, now, now))
    statement = (
        f"INSERT INTO {name} (name, namespace, data, key_hash, created_at, updated_at) VALUES ({values})"
    )
    if op.mode == "upsert":
        key_hash = f"COALESCE({name}.key_hash, excluded.key_hash)" if op.keep_key else "excluded.key_hash"
        statement += (
            " ON CONFLICT (name) DO UPDATE SET namespace = excluded.namespace, data = excluded.data,"
            f" key_hash = {key_hash}, updated_at = excluded.updated_at"
        )
    return f"{statement} RETURNING {ROW_COLUMNS}", params.values
