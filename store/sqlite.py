"""The embedded store: SQLite through aiosqlite, WAL mode, safe for several processes on one host."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from store import sql
from store.base import KIND_NAMES, ConfigRows, Conflict, Delete, Op, Row, StoreError
from store.migrations import SQLITE
from store.records import AnalyticsRecord, InteractionQuery, UsageQuery

_INSERT_RECORD = sql.insert_record_statement(sql.Params("?"))


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        # One connection per process; the lock keeps a transaction's statements together.
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA busy_timeout = 30000")
            await self._db.execute("PRAGMA journal_mode = WAL")
            await self._db.execute("PRAGMA synchronous = NORMAL")
            await self._migrate()
        except (sqlite3.Error, OSError) as exc:
            await self.close()  # its thread would keep the process alive
            raise StoreError(f"cannot open the SQLite store {self.path}: {exc}") from None

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    @asynccontextmanager
    async def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self.db.execute(begin)
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    async def _migrate(self) -> None:
        # BEGIN IMMEDIATE takes the write lock, so processes starting together migrate one at a time.
        async with self._transaction() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)"
            )
            async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
                current = (await cur.fetchone() or (0,))[0]
            for version, steps in enumerate(SQLITE[current:], start=current + 1):
                for statement in steps:
                    await db.execute(statement)
                await db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))

    async def config_version(self) -> int:
        async with self.db.execute("SELECT value FROM meta WHERE key = 'config_version'") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def load_config(self) -> ConfigRows:
        async with self._transaction("BEGIN") as db:
            async with db.execute("SELECT value FROM meta WHERE key = 'config_version'") as cur:
                version = int((await cur.fetchone() or (0,))[0])
            rows: dict[str, list[Row]] = {}
            for kind in KIND_NAMES:
                async with db.execute(f"SELECT {sql.ROW_COLUMNS} FROM {kind} ORDER BY id") as cur:
                    rows[kind] = [_row(r) for r in await cur.fetchall()]
        return ConfigRows(version, rows)

    async def get(self, kind: str, id: int) -> Row | None:
        async with self.db.execute(
            f"SELECT {sql.ROW_COLUMNS} FROM {sql.table(kind)} WHERE id = ?", (id,)
        ) as cur:
            row = await cur.fetchone()
        return _row(row) if row else None

    async def find(self, kind: str, *, name: str | None = None, key_hash: str | None = None) -> Row | None:
        column, value = ("name", name) if name is not None else ("key_hash", key_hash)
        query = f"SELECT {sql.ROW_COLUMNS} FROM {sql.table(kind)} WHERE {column} = ?"
        async with self.db.execute(query, (value,)) as cur:
            row = await cur.fetchone()
        return _row(row) if row else None

    async def write(self, ops: Sequence[Op]) -> list[Row | None]:
        now = time.time()
        results: list[Row | None] = []
        try:
            async with self._transaction() as db:
                for op in ops:
                    results.append(await _apply(db, op, now))
                await db.execute("UPDATE meta SET value = value + 1 WHERE key = 'config_version'")
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from None
        return results

    async def insert_records(self, records: Sequence[AnalyticsRecord]) -> None:
        params = [sql.record_params(r) for r in records]
        async with self._transaction() as db:
            await db.executemany(_INSERT_RECORD, params)

    async def interactions(self, query: InteractionQuery) -> list[AnalyticsRecord]:
        statement, params = sql.interactions_query(query, sql.Params("?"))
        async with self.db.execute(statement, params) as cur:
            rows = await cur.fetchall()
        return [sql.record_from_row(r) for r in rows]

    async def spend(self, since: float) -> dict[str, float]:
        statement, params = sql.spend_query(since, sql.Params("?"))
        async with self.db.execute(statement, params) as cur:
            rows = await cur.fetchall()
        return sql.spend_rows(rows)

    async def usage(self, query: UsageQuery) -> list[dict[str, object]]:
        day = "strftime('%Y-%m-%d', ts, 'unixepoch')"
        statement, params = sql.usage_query(query, sql.Params("?"), day)
        async with self.db.execute(statement, params) as cur:
            rows = await cur.fetchall()
        return [sql.usage_row(r) for r in rows]

    async def get_values(self, prefix: str) -> dict[str, bytes]:
        query = "SELECT key, value FROM kv WHERE key >= ? AND key < ?"  # a range: LIKE ignores case
        async with self.db.execute(query, (prefix, prefix + "\U0010ffff")) as cur:
            return {key: bytes(value) for key, value in await cur.fetchall()}

    async def put_values(self, values: Mapping[str, bytes | None]) -> None:
        async with self._transaction() as db:
            for key, value in values.items():
                if value is None:
                    await db.execute("DELETE FROM kv WHERE key = ?", (key,))
                else:
                    await db.execute(
                        "INSERT INTO kv (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (key, value),
                    )

    async def records_after(self, after_id: int, limit: int) -> list[AnalyticsRecord]:
        statement = f"SELECT {sql.SELECT_RECORD} FROM analytics WHERE id > ? ORDER BY id LIMIT ?"
        async with self.db.execute(statement, (after_id, limit)) as cur:
            rows = await cur.fetchall()
        return [sql.record_from_row(r) for r in rows]

    async def prune_records(self, upto_id: int, before: float) -> int:
        async with self._transaction() as db:
            cur = await db.execute("DELETE FROM analytics WHERE id <= ? AND ts < ?", (upto_id, before))
            return cur.rowcount

    async def insert_uploaded(self, source: str, records: Sequence[AnalyticsRecord]) -> tuple[int, int]:
        async with self._transaction() as db:
            async with db.execute("SELECT last_id FROM uploads WHERE source = ?", (source,)) as cur:
                row = await cur.fetchone()
            watermark = int(row[0]) if row else 0
            fresh = [r for r in records if r.id > watermark]
            if fresh:
                await db.executemany(_INSERT_RECORD, [sql.record_params(r) for r in fresh])
                watermark = max(r.id for r in fresh)
                await db.execute(
                    "INSERT INTO uploads (source, last_id) VALUES (?, ?) "
                    "ON CONFLICT (source) DO UPDATE SET last_id = excluded.last_id",
                    (source, watermark),
                )
        return len(fresh), watermark


async def _apply(db: aiosqlite.Connection, op: Op, now: float) -> Row | None:
    if isinstance(op, Delete):
        await db.execute(f"DELETE FROM {sql.table(op.kind)} WHERE id = ?", (op.id,))
        return None
    statement, params = sql.put_statement(op, now, sql.Params("?"))
    async with db.execute(statement, params) as cur:
        row = await cur.fetchone()
    return _row(row) if row else None


def _row(r: Any) -> Row:
    data = r[3] if isinstance(r[3], bytes) else str(r[3]).encode()
    return Row(int(r[0]), r[1], r[2], data, r[4], float(r[5]), float(r[6]))
