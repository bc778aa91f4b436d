"""Leases of the Redis counters (pipeline/counters/leases.py), against the Redis at 127.0.0.1:6379: far
from a limit requests are admitted without asking Redis, yet a window never holds more than its rpm, every
leased request stays counted for a window after it was made, what is not spent is given back, and budget
blocks never let spend past the limit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from pipeline.counters.base import Budget, Window
from pipeline.counters.failover import FailoverCounters
from pipeline.counters.leases import LEASE_MS
from pipeline.counters.local import LocalCounters
from pipeline.counters.lua import MIN_UNITS
from pipeline.counters.redis import RedisCounters
from pipeline.counters.resp import RedisConnection
from tests.test_counters import MONTH, Proxy, ask, delete_keys, free_port, needs_redis, settle_of

URL = "redis://127.0.0.1:6379/0"


def with_counters(body: Callable[[Callable[..., RedisCounters], str], Awaitable[None]]) -> None:
    """Run `body(make, prefix)`: `make()` is another client (worker or gateway) of one set of counters."""
    needs_redis()
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    made: list[RedisCounters] = []

    def make(url: str = URL) -> RedisCounters:
        made.append(RedisCounters(url, prefix))
        return made[-1]

    async def main() -> None:
        try:
            await body(make, prefix)
        finally:
            for counters in made:
                await counters.close()
            await delete_keys("{" + prefix + "}")

    uvloop.run(main())


async def redis(*command: Any) -> Any:
    connection = RedisConnection(URL)
    try:
        return await connection.call(*command)
    finally:
        connection.close()


def log_key(prefix: str, window: str) -> str:
    return "{" + prefix + "}r:" + window


async def budget_state(prefix: str, key: str) -> tuple[int, int]:
    spent, reserved = await redis(b"HMGET", "{" + prefix + "}b:" + MONTH + ":" + key, b"s", b"r")
    return int(spent or 0), int(reserved or 0)


def test_far_from_its_limit_a_request_spends_a_lease_without_asking_redis() -> None:
    window = Window("app:1", rpm=10_000)

    async def body(make: Callable[..., RedisCounters], prefix: str) -> None:
        counters = make()
        key = log_key(prefix, "app:1")
        assert (await counters.admit(ask(window))).allowed  # asks Redis, brings back a lease
        assert await redis(b"ZCARD", key) == 1 + MIN_UNITS  # the leased requests are counted already
        for spent in range(1, MIN_UNITS + 1):
            answer = await counters.admit(ask(window))
            assert answer.allowed and answer.windows[0].requests_remaining == 10_000 - 1 - spent
        assert counters.leases.local == MIN_UNITS
        assert await redis(b"ZCARD", key) == 1 + MIN_UNITS  # none of them asked Redis
        # Each request spent was made before its member's score: counted for a whole window after it.
        seconds, micros = await redis(b"TIME")
        now = int(seconds) * 1000 + int(micros) // 1000
        scores = await redis(b"ZRANGE", key, 0, -1, b"WITHSCORES")
        leased = [float(s) for m, s in zip(scores[::2], scores[1::2], strict=True) if b"#" in m]
        assert len(leased) == MIN_UNITS and min(leased) >= now
        assert (await counters.admit(ask(window))).allowed  # spent: asks Redis, for twice as many
        assert await redis(b"ZCARD", key) == 1 + MIN_UNITS + 1 + 2 * MIN_UNITS

    with_counters(body)


def test_a_window_never_holds_more_than_its_rpm_and_leases_are_spent_to_the_last() -> None:
    """Two gateways, 600 requests each at once, rpm 200: exactly 200 admitted, some of them on leases."""
    window = Window("app:1", rpm=200)

    async def body(make: Callable[..., RedisCounters], prefix: str) -> None:
        one, two = make(), make()
        asks = [(one if i % 2 else two, ask(window)) for i in range(1_200)]
        answers = await asyncio.gather(*(c.admit(a) for c, a in asks))
        assert sum(a.allowed for a in answers) == 200
        assert await redis(b"ZCARD", log_key(prefix, "app:1")) == 200
        assert one.leases.local + two.leases.local > 0
        refused = next(a for a in answers if not a.allowed)
        assert refused.refused == "rpm:app:1" and refused.retry_after_ms > 0

    with_counters(body)


def test_what_a_lease_did_not_spend_is_given_back() -> None:
    window = Window("app:1", rpm=10_000)

    async def body(make: Callable[..., RedisCounters], prefix: str) -> None:
        counters = make()
        key = log_key(prefix, "app:1")
        assert (await counters.admit(ask(window))).allowed
        assert await redis(b"ZCARD", key) == 1 + MIN_UNITS
        await asyncio.sleep(LEASE_MS / 1000 + 0.1)  # the lease ends with nobody asking: a timer gives back
        assert await redis(b"ZCARD", key) == 1
        assert (await counters.admit(ask(window))).allowed
        assert await redis(b"ZCARD", key) == 2 + MIN_UNITS
        await counters.close()  # a stopping gateway gives back at once
        assert await redis(b"ZCARD", key) == 2

    with_counters(body)


def test_budget_blocks_never_let_spend_past_the_limit() -> None:
    """Two gateways spend a budget of 1,000 requests' reservations, each request costing all it reserved:
    spend ends within one reservation of the limit, every block and reservation is released, and most
    requests reserved from a block here rather than in Redis."""
    reserve, limit = 1_000, 1_000_000
    budget = Budget("app:1", limit)

    async def body(make: Callable[..., RedisCounters], prefix: str) -> None:
        one, two = make(), make()
        admitted = 0

        async def caller(counters: RedisCounters) -> None:
            nonlocal admitted
            for _ in range(100):
                sent = ask(budgets=(budget,), reserve=reserve)
                if not (await counters.admit(sent)).allowed:
                    continue
                admitted += 1
                await asyncio.sleep(0)
                counters.defer_settle(settle_of(sent, cost=reserve))

        await asyncio.gather(*(caller(c) for c in (one, two) for _ in range(8)))  # 1,600 calls
        assert one.leases.local + two.leases.local > admitted // 2
        await one.close()
        await two.close()
        spent, reserved = await budget_state(prefix, "app:1")
        assert (spent, reserved) == (admitted * reserve, 0)
        assert spent <= limit + reserve
        # Under: the blocks a gateway held when its callers had stopped trying (each under a quarter of
        # what was left when granted).
        assert spent >= 0.9 * limit

    with_counters(body)


def test_near_its_limit_a_tpm_window_asks_redis() -> None:
    """A tpm window is admitted locally only while a quarter of it was left at the last look, counting the
    tokens settled here since; then Redis answers, and refuses at the limit."""
    window = Window("app:1", rpm=100_000, tpm=1_000)

    async def body(make: Callable[..., RedisCounters], prefix: str) -> None:
        counters = make()
        first = ask(window)
        assert (await counters.admit(first)).allowed
        await counters.settle(settle_of(first, tokens=700))
        second = ask(window)
        answer = await counters.admit(second)  # 300 left here: more than a quarter
        assert answer.allowed and counters.leases.local == 1 and answer.windows[0].tokens_remaining == 300
        await counters.settle(settle_of(second, tokens=100))
        third = ask(window)
        answer = await counters.admit(third)  # 200 left: Redis looks
        assert answer.allowed and counters.leases.local == 1 and answer.windows[0].tokens_remaining == 200
        await counters.settle(settle_of(third, tokens=200))
        refused = await counters.admit(ask(window))
        assert not refused.allowed and refused.refused == "tpm:app:1"

    with_counters(body)


def test_a_redis_gone_is_noticed_at_the_first_settlement_it_cannot_take() -> None:
    """Requests on a lease make no call that could fail: the lost settlement degrades to local counters."""
    window = Window("app:1", rpm=10_000)

    async def body(make: Callable[..., RedisCounters], prefix: str) -> None:
        proxy = Proxy(free_port())
        await proxy.start()
        primary = make(f"redis://127.0.0.1:{proxy.port}/0")
        counters = FailoverCounters(primary, LocalCounters(), retry_s=60)
        sent = ask(window)
        assert (await counters.admit(sent)).allowed
        await proxy.stop()
        leased = ask(window)
        assert (await counters.admit(leased)).allowed and primary.leases.local == 1
        assert not counters.degraded
        counters.defer_settle(settle_of(leased))
        for _ in range(100):
            if counters.degraded:
                break
            await asyncio.sleep(0.01)
        assert counters.degraded and counters.name == "local"

    with_counters(body)


def test_a_settlement_of_a_leased_request_books_its_cost_and_holds_nothing_in_redis() -> None:
    budget = Budget("app:1", 10**12)

    async def body(make: Callable[..., RedisCounters], prefix: str) -> None:
        counters = make()
        first = ask(budgets=(budget,), reserve=1_000)
        assert (await counters.admit(first)).allowed
        assert await budget_state(prefix, "app:1") == (0, 1_000 + MIN_UNITS * 1_000)  # its own + a block
        leased = ask(budgets=(budget,), reserve=1_000)
        assert (await counters.admit(leased)).allowed and counters.leases.local == 1
        await counters.settle(settle_of(leased, cost=400))
        await counters.settle(settle_of(first, cost=300))
        assert await budget_state(prefix, "app:1") == (700, MIN_UNITS * 1_000)  # the block until it ends
        await counters.close()
        assert await budget_state(prefix, "app:1") == (700, 0)

    with_counters(body)


def test_an_admit_cancelled_in_flight_keeps_its_leases() -> None:
    """A caller cancelled while its admit is in Redis (a route's deadline, a shutdown): what Redis granted
    with the answer is still recorded here, so it is spent or given back, not left counted for nobody."""
    window = Window("app:1", rpm=10_000)

    async def body(make: Callable[..., RedisCounters], prefix: str) -> None:
        counters = make()
        key = log_key(prefix, "app:1")
        task = asyncio.ensure_future(counters.admit(ask(window)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if "app:1" in counters.leases.windows and counters.leases.windows["app:1"].units:
                break
            await asyncio.sleep(0.01)
        assert len(counters.leases.windows["app:1"].units) == MIN_UNITS
        assert await redis(b"ZCARD", key) == 1 + MIN_UNITS  # the cancelled request counted, as sent
        await counters.close()
        assert await redis(b"ZCARD", key) == 1  # the lease given back

    with_counters(body)
