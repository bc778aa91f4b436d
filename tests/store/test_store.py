"""The store: migrations once whoever starts first, one transaction per write, upserts that keep ids, and
the analytics queries (filters, order, usage with nearest-rank latency percentiles).

On SQLite files, or with `pytest --store postgres` on a fresh PostgreSQL database per store; the tests of
the SQLite file itself (WAL, processes racing on one file, a broken file) are `one_store`."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from store.base import Conflict, Delete, Put, Row, Store, StoreError
from store.migrations import SQLITE
from store.records import AnalyticsRecord, GroupBy, InteractionQuery, UsageQuery
from store.sqlite import SqliteStore
from tests.support import store_at

T = TypeVar("T")


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[Store]:
    store = store_at(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def with_store(path: Path, body: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store at `path`, run `body` on it, close it: one event loop per call, as a process would."""

    async def main() -> T:
        async with opened(path) as store:
            return await body(store)

    return asyncio.run(main())


def put(name: str, data: bytes = b"{}", **kwargs: Any) -> Put:
    kind = kwargs.pop("kind", "users")
    return Put(kind, name, kwargs.pop("namespace", ""), data, **kwargs)


def query(path: Path, statement: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(statement).fetchall()


# --- migrations --------------------------------------------------------------------------------------------


@pytest.mark.one_store
def test_opening_twice_migrates_once_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    for _ in range(2):
        assert with_store(db, lambda s: s.config_version()) == 0
    versions = [v for (v,) in query(db, "SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, len(SQLITE) + 1))
    assert query(db, "PRAGMA journal_mode") == [("wal",)]


def _open_and_upsert(path: str, index: int, barrier: Any) -> None:
    """A spawned process: wait for the others, then open (and so migrate) and write one upsert."""
    barrier.wait()

    async def body(store: Store) -> None:
        await store.write([put("shared@example.com", b'{"by": %d}' % index), put(f"u{index}@example.com")])

    with_store(Path(path), body)


@pytest.mark.one_store
def test_eight_processes_starting_together_migrate_once(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(8)
    processes = [context.Process(target=_open_and_upsert, args=(str(db), i, barrier)) for i in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0] * 8
    versions = [v for (v,) in query(db, "SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, len(SQLITE) + 1))
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    names = sorted(n for (n,) in query(db, "SELECT name FROM users"))
    assert names == sorted(["shared@example.com", *(f"u{i}@example.com" for i in range(8))])
    assert query(db, "SELECT value FROM meta WHERE key = 'config_version'") == [(8,)]


# --- config writes -----------------------------------------------------------------------------------------

CONFLICTS = [
    ("existing name", [put("a@x"), put("b@x", mode="insert"), put("old@x", mode="insert")]),
    ("existing key", [put("a@x", key_hash="k-a"), put("b@x", key_hash="k-old")]),
    ("name twice in the batch", [put("a@x", mode="insert"), put("a@x", mode="insert")]),
]


@pytest.mark.parametrize("ops", [c[1] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS])
def test_a_conflicting_write_leaves_nothing_of_the_batch(tmp_path: Path, ops: list[Put]) -> None:
    async def body(store: Store) -> tuple[int, int, list[str]]:
        await store.write([put("old@x", key_hash="k-old")])
        before = await store.config_version()
        with pytest.raises(Conflict):
            await store.write(ops)
        rows = (await store.load_config()).rows["users"]
        return before, await store.config_version(), [r.name for r in rows]

    before, after, names = with_store(tmp_path / "t.db", body)
    assert before == after == 1
    assert names == ["old@x"]


def test_the_config_version_moves_by_one_per_successful_write(tmp_path: Path) -> None:
    async def body(store: Store) -> list[int]:
        versions = [await store.config_version()]
        await store.write([put("a@x"), put("b@x"), put("c@x", kind="groups")])
        versions.append(await store.config_version())
        await store.write([put("a@x", b'{"v": 2}')])
        versions.append(await store.config_version())
        with pytest.raises(Conflict):
            await store.write([put("a@x", mode="insert")])
        versions.append(await store.config_version())
        rows = await store.load_config()
        versions.append(rows.version)
        return versions

    assert with_store(tmp_path / "t.db", body) == [0, 1, 2, 2, 2]


def test_upsert_by_name_keeps_the_id_and_the_key_only_when_asked(tmp_path: Path) -> None:
    async def body(store: Store) -> list[Row | None]:
        first = (await store.write([put("bot", b'{"v": 1}', kind="apps", key_hash="h1")]))[0]
        kept = (await store.write([put("bot", b'{"v": 2}', kind="apps", key_hash="h2", keep_key=True)]))[0]
        replaced = (await store.write([put("bot", b'{"v": 3}', kind="apps", key_hash="h3")]))[0]
        unkeyed = (await store.write([put("new", kind="apps", key_hash="h4", keep_key=True)]))[0]
        return [first, kept, replaced, unkeyed]

    first, kept, replaced, unkeyed = with_store(tmp_path / "t.db", body)
    assert first is not None and kept is not None and replaced is not None and unkeyed is not None
    assert first.id == kept.id == replaced.id
    assert (first.key_hash, kept.key_hash, replaced.key_hash) == ("h1", "h1", "h3")
    assert (kept.data, replaced.data) == (b'{"v": 2}', b'{"v": 3}')
    assert unkeyed.key_hash == "h4" and unkeyed.id != first.id  # nothing to keep: the new key is taken
    assert replaced.created_at == first.created_at <= replaced.updated_at


def test_keep_key_takes_the_new_key_when_the_row_has_none(tmp_path: Path) -> None:
    async def body(store: Store) -> Row | None:
        await store.write([put("bot", kind="apps")])
        return (await store.write([put("bot", kind="apps", key_hash="h1", keep_key=True)]))[0]

    row = with_store(tmp_path / "t.db", body)
    assert row is not None and row.key_hash == "h1"


def test_find_get_update_and_delete(tmp_path: Path) -> None:
    async def body(store: Store) -> dict[str, Any]:
        row = (await store.write([put("bot", b'{"a": 1}', kind="apps", key_hash="h1", namespace="eu")]))[0]
        assert row is not None
        out: dict[str, Any] = {
            "by name": await store.find("apps", name="bot"),
            "by key": await store.find("apps", key_hash="h1"),
            "by id": await store.get("apps", row.id),
            "unknown id": await store.get("apps", row.id + 100),
            "unknown name": await store.find("apps", name="nope"),
            "unknown key": await store.find("apps", key_hash="nope"),
            "other kind": await store.get("users", row.id),
        }
        update = Put("apps", "bot2", "", b'{"a": 2}', "h2", mode="update", id=row.id)
        out["updated"] = (await store.write([update]))[0]
        out["old key"] = await store.find("apps", key_hash="h1")
        out["delete result"] = await store.write([Delete("apps", row.id)])
        out["after delete"] = await store.get("apps", row.id)
        out["by name after delete"] = await store.find("apps", name="bot2")
        out["row"] = row
        return out

    out = with_store(tmp_path / "t.db", body)
    row = out["row"]
    assert (row.name, row.namespace, row.data, row.key_hash) == ("bot", "eu", b'{"a": 1}', "h1")
    assert out["by name"] == out["by key"] == out["by id"] == row
    assert out["unknown id"] is None and out["unknown name"] is None and out["unknown key"] is None
    assert out["other kind"] is None
    updated = out["updated"]
    assert (updated.id, updated.name, updated.namespace, updated.data, updated.key_hash) == (
        row.id, "bot2", "", b'{"a": 2}', "h2",
    )  # fmt: skip
    assert out["old key"] is None
    assert out["delete result"] == [None]
    assert out["after delete"] is None and out["by name after delete"] is None


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        with pytest.raises(StoreError):
            await store.get("apps; DROP TABLE apps", 1)
        with pytest.raises(StoreError):
            await store.write([put("x", kind="nope")])
        assert await store.config_version() == 0

    with_store(tmp_path / "t.db", body)


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    async def body() -> None:
        store = store_at(tmp_path / "t.db")
        with pytest.raises(StoreError, match="not open"):
            await store.config_version()

    asyncio.run(body())


def _broken_db(tmp_path: Path) -> Path:
    db = tmp_path / "t.db"
    db.write_bytes(b"this is not an SQLite database, " * 64)
    return db


@pytest.mark.one_store
def test_a_broken_database_fails_to_open_with_a_store_error(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(_broken_db(tmp_path))
        try:
            with pytest.raises(StoreError):
                await store.open()
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.one_store
def test_a_failed_open_leaves_no_thread_behind(tmp_path: Path) -> None:
    async def main() -> list[threading.Thread]:
        before = set(threading.enumerate())
        store = SqliteStore(_broken_db(tmp_path))
        try:
            with pytest.raises(Exception):  # noqa: B017 (which one is the other test's business)
                await store.open()
            # A non-daemon thread keeps the interpreter from exiting after the error.
            return [t for t in threading.enumerate() if t not in before and not t.daemon]
        finally:
            await store.close()

    for thread in asyncio.run(main()):
        thread.join(5)  # it may take a moment to see its stop signal, but it must end
        assert not thread.is_alive(), thread


# --- analytics ---------------------------------------------------------------------------------------------

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0


def record(ts: float, request_id: str, **fields: Any) -> AnalyticsRecord:
    return AnalyticsRecord(timestamp=ts, request_id=request_id, interaction_type="chat",
                           status_code=fields.pop("status_code", 200), **fields)  # fmt: skip


APP_A: dict[str, Any] = {"app_id": 1, "app_name": "alpha", "user_id": 10, "user_email": "a@x",
                         "llm_id": 100, "llm_slug": "gpt"}  # fmt: skip
APP_B: dict[str, Any] = {"app_id": 2, "app_name": "beta", "user_id": 11, "user_email": "b@x",
                         "llm_id": 101, "llm_slug": "claude"}  # fmt: skip
# Four records of app alpha and two of beta over two days; r2 and r3 share a timestamp.
RECORDS = [
    record(T0 + 10, "r1", **APP_A, vendor="openai", model_name="gpt-4o-mini", prompt_tokens=10,
           response_tokens=5, total_tokens=15, cost=0.5, latency_ms=30.0),
    record(T0 + 20, "r2", **APP_A, vendor="openai", model_name="gpt-4o-mini", prompt_tokens=20,
           response_tokens=10, total_tokens=30, cost=1.25, latency_ms=10.0),
    record(T0 + 20, "r3", **APP_B, vendor="anthropic", model_name="claude-x", prompt_tokens=7,
           response_tokens=3, total_tokens=10, cost=0.25, latency_ms=50.0, status_code=429),
    record(T0 + DAY + 5, "r4", **APP_A, vendor="openai", model_name="gpt-4o", prompt_tokens=100,
           response_tokens=50, total_tokens=150, cost=2.0, latency_ms=20.0, status_code=500, stream=True),
    record(T0 + DAY + 6, "r5", **APP_B, vendor="anthropic", model_name="claude-x", prompt_tokens=1,
           response_tokens=1, total_tokens=2, cost=0.0, latency_ms=40.0, status_code=200),
    record(T0 + DAY + 7, "r6", **APP_A, vendor="openai", model_name="gpt-4o-mini", prompt_tokens=3,
           response_tokens=4, total_tokens=7, cost=0.125, latency_ms=60.0, status_code=400),
]  # fmt: skip


@pytest.fixture
def analytics_db(tmp_path: Path) -> Path:
    db = tmp_path / "t.db"

    async def body(store: Store) -> None:
        await store.insert_records(RECORDS[:3])
        await store.insert_records(RECORDS[3:])

    with_store(db, body)
    return db


def interactions(db: Path, **kwargs: Any) -> list[str]:
    found = with_store(db, lambda s: s.interactions(InteractionQuery(**kwargs)))
    return [r.request_id for r in found]


QUERIES = [
    ("all, newest first; equal timestamps as recorded", {}, ["r6", "r5", "r4", "r2", "r3", "r1"]),
    ("limit", {"limit": 2}, ["r6", "r5"]),
    ("app by name", {"app": "alpha"}, ["r6", "r4", "r2", "r1"]),
    ("app by id", {"app": "2"}, ["r5", "r3"]),
    ("user by email", {"user": "b@x"}, ["r5", "r3"]),
    ("user by id", {"user": "10"}, ["r6", "r4", "r2", "r1"]),
    ("llm by slug", {"llm": "claude"}, ["r5", "r3"]),
    ("llm by id", {"llm": "100"}, ["r6", "r4", "r2", "r1"]),
    ("unknown app", {"app": "gamma"}, []),
    ("unknown id", {"app": "3"}, []),
    ("since is inclusive", {"since": T0 + 20}, ["r6", "r5", "r4", "r2", "r3"]),
    ("until is exclusive", {"until": T0 + 20}, ["r1"]),
    ("one day", {"since": T0, "until": T0 + DAY}, ["r2", "r3", "r1"]),
    ("filters combine", {"app": "alpha", "llm": "gpt", "since": T0 + DAY, "limit": 1}, ["r6"]),
]


@pytest.mark.parametrize(("params", "expected"), [c[1:] for c in QUERIES], ids=[c[0] for c in QUERIES])
def test_interactions(analytics_db: Path, params: dict[str, Any], expected: list[str]) -> None:
    assert interactions(analytics_db, **params) == expected


def test_records_read_back_as_written(analytics_db: Path) -> None:
    found = with_store(analytics_db, lambda s: s.interactions(InteractionQuery(limit=100)))
    by_request = {r.request_id: r for r in found}
    ids = [by_request[r.request_id].id for r in RECORDS]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # ids follow the order of recording
    for written in RECORDS:
        read = by_request[written.request_id]
        assert read.stream is written.stream
        assert {**_fields(read), "id": 0} == _fields(written)


def _fields(r: AnalyticsRecord) -> dict[str, Any]:
    return {f: getattr(r, f) for f in r.__struct_fields__}


def test_equal_timestamps_keep_the_order_of_recording(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    names = [f"q{i}" for i in range(20)]

    async def body(store: Store) -> None:
        for name in names[:10]:
            await store.insert_records([record(T0, name)])
        await store.insert_records([record(T0, name) for name in names[10:]])

    with_store(db, body)
    assert interactions(db) == names  # a route's attempts share a timestamp: they read in order
    assert interactions(db, limit=5) == names[:5]


def usage(db: Path, group_by: GroupBy, **kwargs: Any) -> list[dict[str, object]]:
    return with_store(db, lambda s: s.usage(UsageQuery(group_by=group_by, **kwargs)))


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(p * len(ordered)), 1) - 1]


def expected_usage(
    key: Callable[[AnalyticsRecord], object], label: Callable[[AnalyticsRecord], str]
) -> dict[object, dict[str, object]]:
    groups: dict[object, list[AnalyticsRecord]] = {}
    for r in RECORDS:
        groups.setdefault(key(r), []).append(r)
    return {
        k: {
            "key": k,
            "group": label(rs[0]),
            "requests": len(rs),
            "errors": sum(r.status_code >= 400 for r in rs),
            "prompt_tokens": sum(r.prompt_tokens for r in rs),
            "response_tokens": sum(r.response_tokens for r in rs),
            "total_tokens": sum(r.total_tokens for r in rs),
            "cost": pytest.approx(sum(r.cost for r in rs)),
            "latency_p50_ms": nearest_rank([r.latency_ms for r in rs], 0.50),
            "latency_p95_ms": nearest_rank([r.latency_ms for r in rs], 0.95),
        }
        for k, rs in groups.items()
    }


def _day(r: AnalyticsRecord) -> str:
    return "2026-01-01" if r.timestamp < T0 + DAY else "2026-01-02"


GROUPINGS: list[tuple[GroupBy, Callable[[AnalyticsRecord], object], Callable[[AnalyticsRecord], str]]] = [
    ("app", lambda r: r.app_id, lambda r: r.app_name),
    ("user", lambda r: r.user_id, lambda r: r.user_email),
    ("llm", lambda r: r.llm_id, lambda r: r.llm_slug),
    ("model", lambda r: r.model_name, lambda r: r.model_name),
    ("day", _day, _day),
]


@pytest.mark.parametrize(("group_by", "key", "label"), GROUPINGS, ids=[g[0] for g in GROUPINGS])
def test_usage_per_group(
    analytics_db: Path,
    group_by: GroupBy,
    key: Callable[[AnalyticsRecord], object],
    label: Callable[[AnalyticsRecord], str],
) -> None:
    rows = usage(analytics_db, group_by)
    assert {row["key"]: row for row in rows} == expected_usage(key, label)
    assert len(rows) == len({key(r) for r in RECORDS})
    if group_by == "day":
        assert [row["group"] for row in rows] == ["2026-01-01", "2026-01-02"]
    else:  # busiest first
        counts = [row["requests"] for row in rows]
        assert counts == sorted(counts, reverse=True)  # type: ignore[type-var]


def test_usage_since_and_until(analytics_db: Path) -> None:
    rows = usage(analytics_db, "app", since=T0 + 20, until=T0 + DAY + 7)  # r2..r5
    assert [(r["group"], r["requests"], r["errors"], r["total_tokens"]) for r in rows] == [
        ("alpha", 2, 1, 180), ("beta", 2, 1, 12),
    ]  # fmt: skip
    assert usage(analytics_db, "app", since=T0 + 10 * DAY) == []


LATENCIES = [
    ("1..100 ms", [float(v) for v in range(1, 101)]),
    ("1..100 ms shuffled", [float((v * 37) % 100 + 1) for v in range(100)]),
    ("one record", [42.5]),
    ("two records", [9.0, 3.0]),
    ("ten records", [float(v) for v in (5, 1, 9, 2, 8, 3, 7, 4, 6, 10)]),
    ("twenty-one records", [float(v) * 1.5 for v in range(21, 0, -1)]),
    ("ties", [7.0, 7.0, 7.0, 1.0, 100.0]),
]


@pytest.mark.parametrize("latencies", [c[1] for c in LATENCIES], ids=[c[0] for c in LATENCIES])
def test_usage_latency_percentiles_by_nearest_rank(tmp_path: Path, latencies: list[float]) -> None:
    db = tmp_path / "t.db"
    records = [record(T0 + i, f"r{i}", app_id=1, latency_ms=ms) for i, ms in enumerate(latencies)]
    with_store(db, lambda s: s.insert_records(records))
    [row] = usage(db, "app")
    assert row["requests"] == len(latencies)
    assert row["latency_p50_ms"] == nearest_rank(latencies, 0.50)
    assert row["latency_p95_ms"] == nearest_rank(latencies, 0.95)


def test_usage_of_1_to_100_ms_is_50_and_95(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    records = [record(T0, f"r{ms}", latency_ms=float(ms)) for ms in range(100, 0, -1)]
    with_store(db, lambda s: s.insert_records(records))
    [row] = usage(db, "model")
    assert (row["latency_p50_ms"], row["latency_p95_ms"]) == (50.0, 95.0)


def test_usage_of_an_empty_store(tmp_path: Path) -> None:
    assert usage(tmp_path / "t.db", "day") == []
