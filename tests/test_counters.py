"""The counter homes behind rate limits and budgets: one behavioural suite run against each of
LocalCounters, HostCounters (a CounterServer on a temporary socket) and RedisCounters (the Redis at
127.0.0.1:6379, skipped only outside CI when it is not running), then each home's own failure modes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import uvloop

from pipeline.counters.base import (
    WINDOW_MS,
    Answer,
    Ask,
    Budget,
    Counters,
    CountersUnavailable,
    Settle,
    Window,
)
from pipeline.counters.failover import FailoverCounters
from pipeline.counters.host import CounterServer, HostCounters
from pipeline.counters.local import LocalCounters
from pipeline.counters.lua import Script
from pipeline.counters.redis import RedisCounters
from pipeline.counters.resp import RedisConnection

REDIS = ("127.0.0.1", 6379)
MONTH = "2026-11"
Make = Callable[[], Counters]  # another client of the same counters (another worker or gateway)
_ids = itertools.count()


def redis_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(REDIS, timeout=0.5):
        return True
    return False


def needs_redis() -> None:
    if not redis_up() and not os.environ.get("CI"):
        pytest.skip("no Redis at 127.0.0.1:6379")


@pytest.fixture(params=["local", "host", "redis"])
def home(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        needs_redis()
    return str(request.param)


@contextlib.asynccontextmanager
async def counters_at(home: str, tmp_path: Path, window_ms: int) -> AsyncIterator[Make]:
    made: list[Counters] = []
    if home == "local":
        local = LocalCounters(window_ms=window_ms)
        yield lambda: local
    elif home == "host":
        server = CounterServer(str(tmp_path / "counters.sock"), LocalCounters(window_ms=window_ms))
        await server.start()

        def host() -> Counters:
            made.append(HostCounters(server.path))
            return made[-1]

        try:
            yield host
        finally:
            for counters in made:
                await counters.close()
            await server.close()
    else:
        prefix = f"test-{uuid.uuid4().hex[:12]}:"

        def redis() -> Counters:
            made.append(RedisCounters("redis://127.0.0.1:6379/0", prefix, window_ms=window_ms))
            return made[-1]

        try:
            yield redis
        finally:
            for counters in made:
                await counters.close()
            await delete_keys("{" + prefix + "}")


async def delete_keys(prefix: str) -> None:
    connection = RedisConnection("redis://127.0.0.1:6379/0")
    keys = await connection.call(b"KEYS", prefix + "*")
    if keys:
        await connection.call(b"DEL", *keys)
    connection.close()


def run(
    home: str, tmp_path: Path, body: Callable[[Make], Awaitable[None]], window_ms: int = WINDOW_MS
) -> None:
    async def main() -> None:
        async with counters_at(home, tmp_path, window_ms) as make:
            await body(make)

    uvloop.run(main())


def ask(
    *windows: Window,
    budgets: tuple[Budget, ...] = (),
    reserve: int = 0,
    hold_ms: int = 60_000,
    month: str = MONTH,
) -> Ask:
    return Ask(windows, budgets, month, reserve, f"r{next(_ids)}", hold_ms)


def settle_of(sent: Ask, tokens: int = 0, cost: int = 0) -> Settle:
    tpm = tuple(w.key for w in sent.windows if w.tpm)
    budgets = tuple(b.key for b in sent.budgets)
    return Settle(tpm, tokens, budgets, sent.month, sent.reservation, cost, sent.reserve)


async def admit_all(counters: Counters, asks: list[Ask]) -> list[Answer]:
    return list(await asyncio.gather(*(counters.admit(a) for a in asks)))


# ---- rate windows


def test_rpm_is_exact_under_concurrency(home: str, tmp_path: Path) -> None:
    async def body(make: Make) -> None:
        first, second = make(), make()
        window = Window("app:1", rpm=50)
        answers = await admit_all(first, [ask(window) for _ in range(100)])
        answers += await admit_all(second, [ask(window) for _ in range(100)])
        allowed = [a for a in answers if a.allowed]
        assert len(allowed) == 50
        assert sorted(a.windows[0].requests_remaining for a in allowed) == list(range(50))
        for refused in (a for a in answers if not a.allowed):
            assert refused.refused == "rpm:app:1"
            assert 0 < refused.retry_after_ms <= WINDOW_MS
            assert refused.windows[0].requests_remaining == 0

    run(home, tmp_path, body)


def test_rpm_window_slides(home: str, tmp_path: Path) -> None:
    window = Window("app:1", rpm=2)

    async def body(make: Make) -> None:
        counters = make()
        first = await counters.admit(ask(window))
        assert first.allowed and first.windows[0].requests_remaining == 1
        assert 1700 < first.windows[0].requests_reset_ms <= 2000
        await asyncio.sleep(0.8)
        second = await counters.admit(ask(window))
        assert second.allowed and second.windows[0].requests_remaining == 0
        assert 900 < second.windows[0].requests_reset_ms <= 1205  # the first one leaves then (ms rounded up)
        third = await counters.admit(ask(window))
        assert not third.allowed and third.refused == "rpm:app:1"
        assert 900 < third.retry_after_ms <= 1205
        await asyncio.sleep(third.retry_after_ms / 1000 + 0.05)
        fourth = await counters.admit(ask(window))  # the first has left; the second still counts
        assert fourth.allowed and fourth.windows[0].requests_remaining == 0
        fifth = await counters.admit(ask(window))
        assert not fifth.allowed and 400 < fifth.retry_after_ms <= 800

    run(home, tmp_path, body, window_ms=2000)


def test_remaining_and_reset(home: str, tmp_path: Path) -> None:
    window = Window("app:1", rpm=3, tpm=1000)

    async def body(make: Make) -> None:
        counters = make()
        first = ask(window)
        state = (await counters.admit(first)).windows[0]
        assert (state.requests_remaining, state.tokens_remaining, state.tokens_reset_ms) == (2, 1000, 0)
        assert WINDOW_MS - 200 < state.requests_reset_ms <= WINDOW_MS
        await counters.settle(settle_of(first, tokens=300))
        state = (await counters.admit(ask(window))).windows[0]
        assert (state.requests_remaining, state.tokens_remaining) == (1, 700)
        assert WINDOW_MS - 1200 < state.tokens_reset_ms <= WINDOW_MS
        unlimited = Window("llm:1", tpm=10)
        answers = await admit_all(counters, [ask(unlimited) for _ in range(20)])
        assert all(a.allowed for a in answers)

    run(home, tmp_path, body)


def test_tpm_refuses_once_settled_tokens_reach_it(home: str, tmp_path: Path) -> None:
    window = Window("app:1", tpm=100)

    async def body(make: Make) -> None:
        counters = make()
        first = ask(window)
        assert (await counters.admit(first)).allowed
        await counters.settle(settle_of(first, tokens=99))
        second = ask(window)
        answer = await counters.admit(second)  # 99 < 100: the request itself is not estimated
        assert answer.allowed and answer.windows[0].tokens_remaining == 1
        await counters.settle(settle_of(second, tokens=5))
        refused = await counters.admit(ask(window))
        assert not refused.allowed and refused.refused == "tpm:app:1"
        assert refused.windows[0].tokens_remaining == 0
        assert 0 < refused.retry_after_ms <= 1200
        await asyncio.sleep(refused.retry_after_ms / 1000 + 0.05)
        assert (await counters.admit(ask(window))).allowed

    run(home, tmp_path, body, window_ms=1200)


def test_first_refusal_is_named(home: str, tmp_path: Path) -> None:
    async def body(make: Make) -> None:
        counters = make()
        app, llm = Window("app:1", rpm=1), Window("llm:1", rpm=1)
        assert (await counters.admit(ask(app, llm))).allowed
        answer = await counters.admit(ask(app, llm))
        assert answer.refused == "rpm:app:1" and len(answer.windows) == 2

    run(home, tmp_path, body)


# ---- budgets


def test_first_call_goes_through_whatever_its_estimate(home: str, tmp_path: Path) -> None:
    budget = Budget("app:1", limit=10)

    async def body(make: Make) -> None:
        counters = make()
        assert (await counters.admit(ask(budgets=(budget,), reserve=1000))).allowed
        refused = await counters.admit(ask(budgets=(budget,), reserve=1))
        assert (refused.allowed, refused.refused, refused.retry_after_ms) == (False, "budget:app:1", 0)

    run(home, tmp_path, body)


def test_concurrent_reservations_overshoot_by_one_call_at_most(home: str, tmp_path: Path) -> None:
    reserve, limit = 30, 100
    budget = Budget("app:1", limit)

    async def body(make: Make) -> None:
        first, second = make(), make()
        answers = await admit_all(first, [ask(budgets=(budget,), reserve=reserve) for _ in range(25)])
        answers += await admit_all(second, [ask(budgets=(budget,), reserve=reserve) for _ in range(25)])
        admitted = sum(a.allowed for a in answers)
        assert admitted * reserve <= limit + reserve
        assert admitted == math.ceil(limit / reserve)

    run(home, tmp_path, body)


def test_settle_releases_the_reservation_and_books_the_cost(home: str, tmp_path: Path) -> None:
    budget = Budget("app:1", 100)

    async def body(make: Make) -> None:
        counters = make()
        first, second = ask(budgets=(budget,), reserve=60), ask(budgets=(budget,), reserve=60)
        assert (await counters.admit(first)).allowed
        assert (await counters.admit(second)).allowed
        assert not (await counters.admit(ask(budgets=(budget,), reserve=60))).allowed
        await counters.settle(settle_of(first, cost=10))
        await counters.settle(settle_of(second, cost=10))
        await counters.settle(settle_of(second, cost=0))  # a second settle finds no reservation
        answers = await admit_all(counters, [ask(budgets=(budget,), reserve=60) for _ in range(3)])
        assert [a.allowed for a in answers] == [True, True, False]  # 20 spent, then 80 reserved

    run(home, tmp_path, body)


def test_expired_reservations_are_freed(home: str, tmp_path: Path) -> None:
    budget = Budget("app:1", 100)

    async def body(make: Make) -> None:
        counters = make()
        assert (await counters.admit(ask(budgets=(budget,), reserve=100, hold_ms=200))).allowed
        assert not (await counters.admit(ask(budgets=(budget,), reserve=100))).allowed
        await asyncio.sleep(0.3)
        assert (await counters.admit(ask(budgets=(budget,), reserve=100))).allowed

    run(home, tmp_path, body)


def test_seed_never_overwrites_and_months_are_independent(home: str, tmp_path: Path) -> None:
    spent, fresh = Budget("app:1", 100), Budget("app:2", 100)

    async def body(make: Make) -> None:
        counters = make()
        assert (await counters.admit(ask(budgets=(fresh,), reserve=1))).allowed  # app:2 has state now
        await counters.seed(MONTH, {"app:1": 100, "app:2": 1000})
        await counters.seed(MONTH, {"app:1": 0})
        assert (await counters.admit(ask(budgets=(spent,)))).refused == "budget:app:1"
        assert (await counters.admit(ask(budgets=(fresh,)))).allowed
        assert (await counters.admit(ask(budgets=(spent,), month="2026-12"))).allowed

    run(home, tmp_path, body)


def test_admit_is_all_or_nothing(home: str, tmp_path: Path) -> None:
    window, budget = Window("app:1", rpm=1), Budget("app:1", 100)

    async def body(make: Make) -> None:
        counters = make()
        await counters.seed(MONTH, {"app:1": 100})
        refused = await counters.admit(ask(window, budgets=(budget,)))
        assert refused.refused == "budget:app:1" and refused.windows[0].requests_remaining == 1
        assert (await counters.admit(ask(window))).allowed  # the refused call did not count
        other = Budget("llm:1", 100)
        assert (await counters.admit(ask(window, budgets=(other,), reserve=100))).refused == "rpm:app:1"
        assert (await counters.admit(ask(budgets=(other,), reserve=100))).allowed  # nothing was reserved
        assert not (await counters.admit(ask(budgets=(other,), reserve=100))).allowed

    run(home, tmp_path, body)


def test_clients_share_one_state(home: str, tmp_path: Path) -> None:
    window, budget = Window("app:1", rpm=2, tpm=50), Budget("app:1", 100)

    async def body(make: Make) -> None:
        one, two = make(), make()
        first = ask(window, budgets=(budget,), reserve=10)
        assert (await one.admit(first)).allowed
        await one.settle(settle_of(first, tokens=20, cost=95))
        state = (await two.admit(ask(window))).windows[0]
        assert (state.requests_remaining, state.tokens_remaining) == (0, 30)
        assert (await two.admit(ask(window))).refused == "rpm:app:1"
        assert (await two.admit(ask(budgets=(budget,), reserve=10))).allowed  # 95 spent
        assert not (await one.admit(ask(budgets=(budget,)))).allowed  # 95 spent + 10 reserved

    run(home, tmp_path, body)


# ---- LocalCounters


def test_local_clock_never_goes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    counters = LocalCounters()
    wall = [1_000_000 * 10**9]
    monkeypatch.setattr(time, "time_ns", lambda: wall[0])
    assert counters.now_ms() == 1_000_000_000
    wall[0] -= 10 * 10**9
    assert counters.now_ms() == 1_000_000_000
    wall[0] += 10**9
    assert counters.now_ms() == 1_000_001_000  # time resumes from the last reading


def test_local_drops_idle_windows() -> None:
    counters = LocalCounters(window_ms=100)
    counters.admit_now(ask(Window("app:1", rpm=5)))
    time.sleep(0.25)
    counters.admit_now(ask(Window("app:2", rpm=5)))
    assert list(counters._windows) == ["app:2"]


def test_local_settled_holds_do_not_pile_up() -> None:
    counters = LocalCounters()
    for _ in range(5000):
        sent = ask(budgets=(Budget("app:1", 10**12),), reserve=10, hold_ms=3_600_000)
        counters.admit_now(sent)
        counters.settle_now(settle_of(sent, cost=1))
    assert counters._queued <= 1025 and not counters._holds


# ---- HostCounters


def test_host_unreachable_fails_fast(tmp_path: Path) -> None:
    async def main() -> None:
        counters = HostCounters(str(tmp_path / "none.sock"))
        started = time.monotonic()
        with pytest.raises(CountersUnavailable):
            await counters.admit(ask(Window("app:1", rpm=1)))
        assert time.monotonic() - started < 0.5

    uvloop.run(main())


def test_host_server_gone_then_back(tmp_path: Path) -> None:
    path = str(tmp_path / "counters.sock")

    async def main() -> None:
        server = CounterServer(path)
        await server.start()
        counters = HostCounters(path)
        assert (await counters.admit(ask(Window("app:1", rpm=1)))).allowed
        await server.close()
        started = time.monotonic()
        with pytest.raises(CountersUnavailable):
            await counters.admit(ask(Window("app:1", rpm=1)))
        assert time.monotonic() - started < 0.5
        server = CounterServer(path)
        await server.start()
        assert (await counters.admit(ask(Window("app:1", rpm=1)))).allowed  # a new server, new counts
        await counters.close()
        await server.close()

    uvloop.run(main())


def test_host_connection_dropped_while_pending(tmp_path: Path) -> None:
    path = str(tmp_path / "dropper.sock")

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_unix_server(drop, path)
        counters = HostCounters(path)
        started = time.monotonic()
        calls = [counters.admit(ask(Window("app:1", rpm=1))) for _ in range(10)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, CountersUnavailable) for r in results)
        assert time.monotonic() - started < 0.5
        await counters.close()
        server.close()

    uvloop.run(main())


def test_host_silent_server_times_out(tmp_path: Path) -> None:
    path = str(tmp_path / "silent.sock")

    async def main() -> None:
        server = await asyncio.start_unix_server(silent, path)
        await timed_out(HostCounters(path))
        server.close()

    uvloop.run(main())


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server that reads and never answers."""
    while await reader.read(65536):
        pass
    writer.close()


async def timed_out(counters: Counters) -> None:
    started = time.monotonic()
    with pytest.raises(CountersUnavailable):
        await counters.admit(ask(Window("app:1", rpm=1)))
    assert 0.9 < time.monotonic() - started < 1.6
    await counters.close()


# ---- RedisCounters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redis_unreachable_fails_fast() -> None:
    async def main() -> None:
        counters = RedisCounters(f"redis://127.0.0.1:{free_port()}/0")
        started = time.monotonic()
        with pytest.raises(CountersUnavailable):
            await counters.admit(ask(Window("app:1", rpm=1)))
        assert time.monotonic() - started < 0.5
        await counters.close()

    uvloop.run(main())


async def ttls(counters: RedisCounters, prefix: str) -> dict[str, int]:
    """Each key under the prefix with its time to live, in days for budgets and seconds for windows."""
    found = {}
    for key in await counters.redis.call(b"KEYS", "{" + prefix + "}*"):
        ms = await counters.redis.call(b"PTTL", key)
        name = key.decode().split("}", 1)[1]
        found[name] = math.ceil(ms / (86_400_000 if name[0] in "bh" else 1000))
    return found


def test_redis_silent_server_times_out() -> None:
    async def main() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        await timed_out(RedisCounters(f"redis://127.0.0.1:{port}/0"))
        server.close()

    uvloop.run(main())


def test_redis_keys_expire_and_scripts_reload() -> None:
    needs_redis()
    prefix = f"test-{uuid.uuid4().hex[:12]}:"

    async def main() -> None:
        counters = RedisCounters("redis://127.0.0.1:6379/0", prefix)
        sent = ask(Window("app:1", rpm=5, tpm=100), budgets=(Budget("app:1", 100),), reserve=10)
        assert (await counters.admit(sent)).allowed
        # an rpm log lives a window and a lease (leased requests count until a window after the lease)
        assert await ttls(counters, prefix) == {f"b:{MONTH}:app:1": 40, f"h:{MONTH}:app:1": 40, "r:app:1": 61}
        await counters.settle(settle_of(sent, tokens=10, cost=5))  # the reservation left: h is empty
        assert await ttls(counters, prefix) == {f"b:{MONTH}:app:1": 40, "r:app:1": 61, "t:app:1": 61}
        unknown = Script(f"return '{uuid.uuid4().hex}'")  # not in the script cache: NOSCRIPT, then EVAL
        assert await counters._run(unknown, [], []) == await counters._run(unknown, [], [])
        await counters.close()
        await delete_keys("{" + prefix + "}")

    uvloop.run(main())


def test_redis_auth_error_is_unavailable() -> None:
    needs_redis()

    async def main() -> None:
        counters = RedisCounters("redis://:wrong@127.0.0.1:6379/0")
        with pytest.raises(CountersUnavailable):
            await counters.admit(ask(Window("app:1", rpm=1)))

    uvloop.run(main())


class Proxy:
    """A TCP proxy to Redis that can be stopped (dropping its connections) and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*REDIS)
        self.writers += (writer, up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
    finally:
        writer.transport.abort()


def test_failover_to_local_and_back() -> None:
    needs_redis()
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    changes: list[bool] = []
    window = Window("app:1", rpm=20)  # too small for a lease: every admit asks Redis

    async def main() -> None:
        proxy = Proxy(free_port())
        primary = RedisCounters(f"redis://127.0.0.1:{proxy.port}/0", prefix)
        counters = FailoverCounters(primary, LocalCounters(), retry_s=0.2, on_change=changes.append)
        assert (await counters.admit(ask(window))).allowed  # the port is closed: local answers
        assert (counters.degraded, counters.name, counters.failovers, changes) == (True, "local", 1, [True])
        await proxy.start()
        await counters.admit(ask(window))
        assert counters.degraded  # within retry_s nothing tries Redis
        await asyncio.sleep(0.25)
        answer = await counters.admit(ask(window))
        assert (counters.degraded, counters.name, changes) == (False, "redis", [True, False])
        assert answer.windows[0].requests_remaining == 19  # Redis counted only this one
        await proxy.stop()
        await counters.admit(ask(window))
        assert (counters.degraded, counters.failovers) == (True, 2)
        await proxy.start()
        await asyncio.sleep(0.25)
        await counters.settle(settle_of(ask(window)))
        assert not counters.degraded
        await counters.close()
        await proxy.stop()
        await delete_keys("{" + prefix + "}")

    uvloop.run(main())


class Dead:
    """A primary that is never reachable, counting how often it is tried."""

    name = "redis"

    def __init__(self) -> None:
        self.calls = 0

    async def admit(self, ask: Ask) -> Answer:
        self.calls += 1
        raise CountersUnavailable("nowhere")

    async def settle(self, settle: Settle) -> None:
        self.calls += 1
        raise CountersUnavailable("nowhere")

    async def seed(self, month: str, spent: dict[str, int]) -> None:
        self.calls += 1
        raise CountersUnavailable("nowhere")

    async def close(self) -> None:
        pass


def test_failover_tries_a_dead_primary_once_per_retry() -> None:
    async def main() -> None:
        dead, local = Dead(), LocalCounters()
        counters = FailoverCounters(dead, local, retry_s=0.1)
        await counters.seed(MONTH, {"app:1": 100})  # seed goes to both
        assert not local.admit_now(ask(budgets=(Budget("app:1", 100),))).allowed
        answers = await admit_all(counters, [ask(Window("app:1", rpm=100)) for _ in range(50)])
        assert all(a.allowed for a in answers) and dead.calls == 1
        await asyncio.sleep(0.15)
        await admit_all(counters, [ask(Window("app:1", rpm=100)) for _ in range(50)])
        assert dead.calls == 2 and counters.failovers == 1 and counters.degraded

    uvloop.run(main())


def test_settlements_redis_cannot_take_are_booked_on_the_fallback() -> None:
    """A settlement deferred for Redis, which went away meanwhile, lands in the fallback's budget."""

    async def main() -> None:
        primary = RedisCounters(f"redis://127.0.0.1:{free_port()}/0", "nowhere:")  # nothing listens
        local = LocalCounters()
        FailoverCounters(primary, local)
        budget = Budget("app:1", 1_000)
        sent = ask(budgets=(budget,), reserve=10)
        assert (await local.admit(sent)).allowed
        primary.defer_settle(settle_of(sent, cost=1_000))  # connection not open: deferred, then fails
        await asyncio.sleep(0.6)
        refused = await local.admit(ask(budgets=(budget,), reserve=10))
        assert refused.refused == "budget:app:1"  # the 1,000 nano-USD were booked locally
        await primary.close()

    uvloop.run(main())
