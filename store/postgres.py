"""The shared store: PostgreSQL through asyncpg, for several gateways (or a hub) on one database.

The same interface, tables and migrations as the SQLite store (store/base.py, store/migrations.py), with
PostgreSQL's types. A pool of at most `--db-pool` connections per process. Gateways that start together
on an empty database migrate it once: the migrating transaction holds an advisory lock. Analytics go in
with COPY (one round trip per batch). Every config write NOTIFYs the gateways that LISTEN, so a change
made through any one is rebuilt everywhere within milliseconds (the version poll is the safety net).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg

from store import sql
from store.base import KIND_NAMES, ConfigRows, Conflict, Delete, Op, Row, StoreError
from store.migrations import POSTGRES
from store.records import RECORD_FIELDS, AnalyticsRecord, InteractionQuery, UsageQuery

_RECORD_COLUMNS = [("ts" if f == "timestamp" else f) for f in RECORD_FIELDS]
_MIGRATION_LOCK = 7_291_342_001  # pg_advisory_xact_lock key: Tollgate's migrations
_DAY = "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
_USAGE_WORK_MEM = "64MB"
CHANNEL = "tollgate_config"  # NOTIFY'd by every config write, at its commit


class PostgresStore:
    def __init__(self, url: str, pool_size: int = 5) -> None:
        self.url = url
        self.pool_size = max(1, pool_size)
        self._pool: asyncpg.Pool | None = None
        self._listener: Any = None  # the connection LISTENing on CHANNEL

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size)
            await self._migrate()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.close()
            raise StoreError(f"cannot open the PostgreSQL store {_safe(self.url)}: {exc}") from None

    async def listen(self, on_change: Callable[[], None]) -> None:
        """Call `on_change` whenever any gateway commits a config change (LISTEN/NOTIFY, on a connection
        of its own). The runtime still polls the version: a notification lost with a connection is not
        a change lost."""
        conn = await asyncpg.connect(self.url)
        await conn.add_listener(CHANNEL, lambda *_: on_change())
        conn.add_termination_listener(lambda _: self._drop_listener(conn))
        self._listener = conn

    @property
    def listening(self) -> bool:
        return self._listener is not None and not self._listener.is_closed()

    def _drop_listener(self, conn: Any) -> None:
        if self._listener is conn:
            self._listener = None

    async def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    async def _migrate(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)"
            )
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            for version, steps in enumerate(POSTGRES[current:], start=current + 1):
                for statement in steps:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, time.time())

    async def config_version(self) -> int:
        value = await self.pool.fetchval("SELECT value FROM meta WHERE key = 'config_version'")
        return int(value or 0)

    async def load_config(self) -> ConfigRows:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            version = int(await conn.fetchval("SELECT value FROM meta WHERE key = 'config_version'") or 0)
            rows = {
                kind: [_row(r) for r in await conn.fetch(f"SELECT {sql.ROW_COLUMNS} FROM {kind} ORDER BY id")]
                for kind in KIND_NAMES
            }
        return ConfigRows(version, rows)

    async def get(self, kind: str, id: int) -> Row | None:
        row = await self.pool.fetchrow(f"SELECT {sql.ROW_COLUMNS} FROM {sql.table(kind)} WHERE id = $1", id)
        return _row(row) if row else None

    async def find(self, kind: str, *, name: str | None = None, key_hash: str | None = None) -> Row | None:
        column, value = ("name", name) if name is not None else ("key_hash", key_hash)
        row = await self.pool.fetchrow(
            f"SELECT {sql.ROW_COLUMNS} FROM {sql.table(kind)} WHERE {column} = $1", value
        )
        return _row(row) if row else None

    async def write(self, ops: Sequence[Op]) -> list[Row | None]:
        now = time.time()
        results: list[Row | None] = []
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                for op in ops:
                    results.append(await _apply(conn, op, now))
                await conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'config_version'")
                await conn.execute("SELECT pg_notify($1, '')", CHANNEL)  # delivered at the commit
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(str(exc)) from None
        return results

    async def insert_records(self, records: Sequence[AnalyticsRecord]) -> None:
        async with self.pool.acquire() as conn:
            await _copy(conn, records)

    async def interactions(self, query: InteractionQuery) -> list[AnalyticsRecord]:
        statement, params = sql.interactions_query(query, sql.Params("$"))
        return [sql.record_from_row(tuple(r)) for r in await self.pool.fetch(statement, *params)]

    async def usage(self, query: UsageQuery) -> list[dict[str, object]]:
        statement, params = sql.usage_query(query, sql.Params("$"), _DAY, ordered_sets=True)
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            # The percentiles sort each group's latencies: in memory, not in temporary files. And no plain
            # index scan: grouped by app it would walk (app_id, ts) in index order, one random heap read
            # per record (3 s for a month of a million records); a scan (bitmap for a short range) and
            # a sort take 0.5 s.
            await conn.execute(f"SET LOCAL work_mem = '{_USAGE_WORK_MEM}'")
            await conn.execute("SET LOCAL enable_indexscan = off")
            rows = await conn.fetch(statement, *params)
        return [sql.usage_row(tuple(r)) for r in rows]

    async def spend(self, since: float) -> dict[str, float]:
        statement, params = sql.spend_query(since, sql.Params("$"))
        return sql.spend_rows(tuple(r) for r in await self.pool.fetch(statement, *params))

    async def get_values(self, prefix: str) -> dict[str, bytes]:
        rows = await self.pool.fetch(
            "SELECT key, value FROM kv WHERE key >= $1 AND key < $2", prefix, prefix + "\U0010ffff"
        )
        return {r["key"]: bytes(r["value"]) for r in rows}

    async def put_values(self, values: Mapping[str, bytes | None]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            for key, value in values.items():
                if value is None:
                    await conn.execute("DELETE FROM kv WHERE key = $1", key)
                else:
                    await conn.execute(
                        "INSERT INTO kv (key, value) VALUES ($1, $2) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        key,
                        value,
                    )

    async def records_after(self, after_id: int, limit: int) -> list[AnalyticsRecord]:
        statement = f"SELECT {sql.SELECT_RECORD} FROM analytics WHERE id > $1 ORDER BY id LIMIT $2"
        return [sql.record_from_row(tuple(r)) for r in await self.pool.fetch(statement, after_id, limit)]

    async def prune_records(self, upto_id: int, before: float) -> int:
        status = await self.pool.execute("DELETE FROM analytics WHERE id <= $1 AND ts < $2", upto_id, before)
        return int(status.split()[-1])

    async def insert_uploaded(self, source: str, records: Sequence[AnalyticsRecord]) -> tuple[int, int]:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO uploads (source, last_id) VALUES ($1, 0) ON CONFLICT (source) DO NOTHING", source
            )
            watermark = int(
                await conn.fetchval("SELECT last_id FROM uploads WHERE source = $1 FOR UPDATE", source)
            )
            fresh = [r for r in records if r.id > watermark]
            if fresh:
                await _copy(conn, fresh)
                watermark = max(r.id for r in fresh)
                await conn.execute("UPDATE uploads SET last_id = $2 WHERE source = $1", source, watermark)
        return len(fresh), watermark


async def _copy(conn: Any, records: Sequence[AnalyticsRecord]) -> None:
    rows = [_record_tuple(r) for r in records]
    await conn.copy_records_to_table("analytics", records=rows, columns=_RECORD_COLUMNS)


def _record_tuple(record: AnalyticsRecord) -> tuple[Any, ...]:
    values = list(sql.record_params(record))
    stream_at = RECORD_FIELDS.index("stream")
    values[stream_at] = int(values[stream_at])
    return tuple(values)


async def _apply(conn: Any, op: Op, now: float) -> Row | None:
    if isinstance(op, Delete):
        await conn.execute(f"DELETE FROM {sql.table(op.kind)} WHERE id = $1", op.id)
        return None
    statement, params = sql.put_statement(op, now, sql.Params("$"))
    row = await conn.fetchrow(statement, *params)
    return _row(row) if row else None


def _row(r: Any) -> Row:
    return Row(int(r[0]), r[1], r[2], bytes(r[3]), r[4], float(r[5]), float(r[6]))


def _safe(url: str) -> str:
    """The URL without its password (errors and logs never show secrets)."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{tail}"
