"""The PostgreSQL store (store/postgres.py) against the real PostgreSQL of this machine (127.0.0.1:5432), each
test in a fresh database: the interface the SQLite store has, migrations once under concurrency, and
two gateways sharing one database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from store.base import Conflict, Delete, Put, StoreError
from store.postgres import PostgresStore
from store.records import AnalyticsRecord, InteractionQuery, UsageQuery
from tests.conftest import StartGateway
from tests.support import APP_KEY, base_config
from tests.support import PG_ADMIN_URL as ADMIN_URL

pytestmark = pytest.mark.one_store  # on PostgreSQL already, a database per test

T = TypeVar("T")


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url, pool_size=3)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def run(url: str, body: Callable[[PostgresStore], Awaitable[T]]) -> T:
    async def main() -> T:
        async with opened(url) as store:
            return await body(store)

    return asyncio.run(main())


def record(i: int, **fields: Any) -> AnalyticsRecord:
    values: dict[str, Any] = {
        "timestamp": 1_790_000_000.0 + i,
        "request_id": f"r{i}",
        "interaction_type": "chat",
    }
    values.update({"status_code": 200, "app_id": 1, "app_name": "bot", "latency_ms": float(i), "cost": 0.5})
    values.update(fields)
    return AnalyticsRecord(**values)


def test_ten_stores_opening_at_once_migrate_once(database: str) -> None:
    async def main() -> list[tuple[Any, ...]]:
        stores = [PostgresStore(database) for _ in range(10)]
        await asyncio.gather(*(s.open() for s in stores))
        rows = await stores[0].pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
        await asyncio.gather(*(s.close() for s in stores))
        return [tuple(r) for r in rows]

    assert asyncio.run(main()) == [(1,), (2,), (3,)]


def test_writes_reads_conflicts_and_the_config_version(database: str) -> None:
    async def body(store: PostgresStore) -> None:
        assert await store.config_version() == 0
        (row,) = await store.write([Put("users", "a@x", "", b'{"email": "a@x"}', key_hash="h1")])
        assert row is not None and row.id == 1 and await store.config_version() == 1
        (again,) = await store.write([Put("users", "a@x", "", b'{"email": "a@x", "role": "admin"}')])
        assert again is not None and again.id == 1 and b"admin" in again.data  # upsert keeps the id
        with pytest.raises(Conflict):
            await store.write([Put("users", "a@x", "", b"{}", mode="insert")])
        assert (await store.find("users", key_hash="h1")) is None  # the upsert replaced the key hash
        await store.write([Delete("users", 1)])
        config = await store.load_config()
        assert config.version == 4 - 1 and config.rows["users"] == []  # the failed insert wrote nothing

    run(database, body)


def test_analytics_copy_queries_usage_and_spend(database: str) -> None:
    async def body(store: PostgresStore) -> None:
        await store.insert_records(
            [record(i, llm_id=2, llm_slug="gpt", stream=i % 2 == 0) for i in range(1, 11)]
        )
        newest = await store.interactions(InteractionQuery(limit=3))
        assert [r.request_id for r in newest] == ["r10", "r9", "r8"] and newest[0].stream is True
        assert len(await store.interactions(InteractionQuery(app="bot"))) == 10
        (usage,) = await store.usage(UsageQuery(group_by="app"))
        assert (usage["requests"], usage["cost"], usage["latency_p50_ms"]) == (10, 5.0, 5.0)
        (day,) = await store.usage(UsageQuery(group_by="day"))
        assert day["group"] == time.strftime("%Y-%m-%d", time.gmtime(1_790_000_001))
        assert await store.spend(0) == {"app:1": 5.0, "llm:2": 5.0}

    run(database, body)


def test_kv_and_uploads_once(database: str) -> None:
    async def body(store: PostgresStore) -> None:
        await store.put_values({"edge:a": b"1", "edge:b": b"2", "Edge:c": b"3", "edgex": b"4"})
        assert await store.get_values("edge:") == {"edge:a": b"1", "edge:b": b"2"}
        await store.put_values({"edge:a": None})
        assert await store.get_values("edge:") == {"edge:b": b"2"}
        batch = [record(i, id=i) for i in range(1, 6)]
        assert await store.insert_uploaded("e1/db", batch) == (5, 5)
        assert await store.insert_uploaded("e1/db", batch) == (0, 5)
        assert await store.insert_uploaded("e1/db", [record(i, id=i) for i in range(4, 9)]) == (3, 8)
        assert [r.request_id for r in await store.records_after(6, 10)] == ["r7", "r8"]
        assert await store.prune_records(8, time.time()) == 8
        await store.insert_records([record(99)])
        assert (await store.records_after(0, 10))[0].id == 9  # ids are never reused

    run(database, body)


def test_a_wrong_url_is_a_one_line_store_error() -> None:
    store = PostgresStore("postgresql://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(StoreError) as failed:
        asyncio.run(store.open())
    assert "secret" not in str(failed.value) and "127.0.0.1:1" in str(failed.value)


def test_two_gateways_on_one_database(
    start_gateway: StartGateway, upstream: Any, upstream_url: str, database: str
) -> None:
    """A change through one gateway's admin API answers on the other (within 5 s), and the analytics of
    both are in one usage answer."""
    env = {"TOLLGATE_SECRET_KEY": "a-shared-master-key-for-tests"}
    one = start_gateway(base_config(upstream_url), "--db", database, env=env)
    two = start_gateway(None, "--db", database, env=env)
    body = {"name": "late", "owner": "alice@example.com", "llms": ["gpt"]}
    key = one.admin("POST", "/api/v1/apps", json=body).json()["api_key"]
    started = time.monotonic()
    while (status := _chat(two.url, key)) == 401 and time.monotonic() - started < 5:
        time.sleep(0.1)
    assert status == 200, "the app created through one gateway never answered on the other"
    assert _chat(one.url, APP_KEY) == 200
    time.sleep(1)
    usage = one.admin("GET", "/api/v1/analytics/usage", params={"group_by": "app"}).json()["data"]
    counts = {row["group"]: row["requests"] for row in usage if row["group"]}
    assert counts == {"late": 1, "app-one": 1}

    gpt = next(llm for llm in two.admin("GET", "/api/v1/llms").json()["data"] if llm["slug"] == "gpt")
    two.admin("PATCH", f"/api/v1/llms/{gpt['id']}", json={"active": False})
    started = time.monotonic()
    while _chat(one.url, APP_KEY) == 200 and time.monotonic() - started < 5:
        time.sleep(0.02)
    assert _chat(one.url, APP_KEY) == 404  # within the 5 s (told by NOTIFY; the poll is the net)
    assert asyncio.run(_listeners(database)) == 2  # each gateway LISTENs on its own connection
    metrics = httpx.get(one.url + "/metrics").text
    assert "tollgate_store_up 1.0" in metrics and "tollgate_snapshot_age_seconds" in metrics
    assert "tollgate_analytics_queue_depth" in metrics
    assert start_gateway(base_config(upstream_url), "--db", database, ready=False).process.wait(30) == 1


async def _listeners(url: str) -> int:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        name = url.rsplit("/", 1)[1]
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'"
        return int(await conn.fetchval(query, name))
    finally:
        await conn.close()


def _chat(url: str, key: str) -> int:
    response = httpx.post(
        f"{url}/openai/gpt/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )
    return response.status_code


def test_ten_gateways_started_at_once_on_an_empty_database(
    start_gateway: StartGateway, upstream: Any, upstream_url: str, database: str
) -> None:
    """They migrate it once and create each bootstrap entity once, and all become ready."""
    env = {"TOLLGATE_SECRET_KEY": "a-shared-master-key-for-tests"}
    config = base_config(upstream_url)
    gateways = [start_gateway(config, "--db", database, env=env, ready=False) for _ in range(10)]
    for gateway in gateways:
        gateway.wait_ready(timeout=60)

    async def counts() -> tuple[int, int, int]:
        conn = await asyncpg.connect(database)
        try:
            versions = await conn.fetchval("SELECT count(*) FROM schema_migrations")
            apps = await conn.fetchval("SELECT count(*) FROM apps")
            llms = await conn.fetchval("SELECT count(*) FROM llms")
            return int(versions), int(apps), int(llms)
        finally:
            await conn.close()

    assert asyncio.run(counts()) == (3, len(config["apps"]), len(config["llms"]))
    assert {_chat(g.url, APP_KEY) for g in gateways} == {200}


def test_usage_agrees_with_sqlite(database: str, tmp_path: Any) -> None:
    """PostgreSQL's percentiles (an ordered-set aggregate) are SQLite's (window functions): nearest rank."""
    import random

    from store.sqlite import SqliteStore

    rng = random.Random(5)
    rows = [
        record(i, app_id=i % 3, app_name=f"app{i % 3}", latency_ms=round(rng.random() * 100, 3), cost=0.25)
        for i in range(1, 38)
    ]

    async def both() -> tuple[list[Any], list[Any]]:
        sqlite = SqliteStore(tmp_path / "t.db")
        await sqlite.open()
        async with opened(database) as postgres:
            out = []
            for store in (sqlite, postgres):
                await store.insert_records(rows)
                out.append([await store.usage(UsageQuery(group_by=g)) for g in ("app", "day")])  # type: ignore[arg-type]
        await sqlite.close()
        return out[0], out[1]

    on_sqlite, on_postgres = asyncio.run(both())
    assert on_postgres == on_sqlite


def test_rpm_is_exact_across_two_gateways_on_one_database_and_one_redis(
    start_gateway: StartGateway, upstream: Any, upstream_url: str, database: str
) -> None:
    """rpm 30, 200 requests fired at both at once: exactly 30 through, counted once in the analytics."""
    from tests.gateway.test_limits import (
        REDIS_URL,
        _assert_exactly_30_of_200,
        _config,
        _redis_prefix_flush,
        fire,
    )

    _redis_prefix_flush()
    env = {"TOLLGATE_SECRET_KEY": "a-shared-master-key-for-tests"}
    config = _config(upstream_url, rate_limit={"rpm": 30})
    one = start_gateway(config, "--db", database, "--redis", REDIS_URL, env=env)
    two = start_gateway(None, "--db", database, "--redis", REDIS_URL, env=env)
    _assert_exactly_30_of_200(fire([one.url, two.url], 200))
    assert len(upstream.requests) == 30
    time.sleep(1)
    usage = one.admin("GET", "/api/v1/analytics/usage", params={"group_by": "app"}).json()["data"]
    assert sum(row["requests"] for row in usage) == 200  # every answer and refusal, from both, once
