"""Counters in Redis, shared by every worker of every gateway: admit, settle and seed are one Lua script
call each (one round trip), timed by Redis's own clock (pipeline/counters/lua.py has the scripts and the
keys). Settlements are sent in batches, every SETTLE_DELAY_S or with the next admit.

Far from its limits a request makes no round trip at all: it spends a lease (pipeline/counters/leases.py)
that an earlier admit brought back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import hiredis

from pipeline.counters.base import WINDOW_MS, Answer, Ask, CountersUnavailable, Settle, WindowState
from pipeline.counters.leases import LEASE_MS, LeaseBook, Release, now_ms
from pipeline.counters.local import BUCKETS, BUDGET_TTL_MS
from pipeline.counters.lua import SCRIPTS, Script
from pipeline.counters.resp import RedisConnection

log = logging.getLogger("tollgate.counters")

SETTLE_DELAY_S = 0.005  # deferred settlements are sent together after this long (or with an admit)
_REFUSALS = ("", "rpm:", "tpm:", "budget:")


class RedisCounters:
    name = "redis"

    def __init__(self, url: str, prefix: str = "tollgate:", *, window_ms: int = WINDOW_MS) -> None:
        self.redis = RedisConnection(url)
        self.prefix = "{" + prefix + "}"
        self.window_ms = window_ms
        self.bucket_ms = max(1, window_ms // BUCKETS)
        self._deferred: list[Settle | Release] = []  # settlements (and leases given back) not sent yet
        self._timer: asyncio.TimerHandle | None = None
        self.leases = LeaseBook()
        self._sweep_timer: asyncio.TimerHandle | None = None
        # Settlements Redis could not take (it went away): FailoverCounters books them on its fallback.
        self.on_unsent: Callable[[list[Settle]], None] | None = None

    def defer_settle(self, settle: Settle) -> None:
        """Book `settle` without waiting: it waits SETTLE_DELAY_S, or for the next admit, to travel with the
        others (one script call for all). Settlements that cannot be sent (Redis gone) go to `on_unsent`."""
        self._defer(self.leases.settle(settle))
        if self.leases.returns:
            self._take_returns()

    def _defer(self, op: Settle | Release) -> None:
        self._deferred.append(op)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SETTLE_DELAY_S, self._send_deferred)

    def _take_returns(self) -> None:
        """What ended leases give back goes with the deferred settlements."""
        for op in self.leases.take_returns():
            self._defer(op)

    def _sweep(self) -> None:
        """Leases end even when no request comes: a timer gives back what they hold."""
        self._sweep_timer = None
        self.leases.sweep(now_ms())
        self._take_returns()
        self._arm_sweep()

    def _arm_sweep(self) -> None:
        if self._sweep_timer is None and self.leases.next_sweep < 1 << 62:
            delay = max(0.0, (self.leases.next_sweep - now_ms()) / 1000) + 0.01
            self._sweep_timer = asyncio.get_running_loop().call_later(delay, self._sweep)

    def _send_deferred(self) -> None:
        self._timer = None
        if self._deferred:
            settles = self._take_deferred()
            task = asyncio.ensure_future(self._batch(settles, None))
            task.add_done_callback(lambda done: self._sent(done, settles))

    def _take_deferred(self) -> list[Settle | Release]:
        settles, self._deferred = self._deferred, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return settles

    def _sent(self, task: asyncio.Future[Any], ops: list[Settle | Release]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._unsent(ops, task.exception())

    def _unsent(self, ops: list[Settle | Release], why: object) -> None:
        # Leased requests that could not be given back stay counted until the window passes them.
        settles = [op for op in ops if isinstance(op, Settle)]
        if self.on_unsent is not None and settles:
            self.on_unsent(settles)
        elif settles:
            log.error("settling usage in Redis failed (%d settlements): %s", len(settles), why)

    async def _batch(self, ops: list[Settle | Release], admit: tuple[list[str], list[Any]] | None) -> Any:
        keys: list[str] = []
        args: list[Any] = [len(ops) + (admit is not None)]
        for op in ops:
            if isinstance(op, Release):
                keys.append(self.prefix + "r:" + op.key)
                args += ("z", 1, len(op.members), *op.members)
                continue
            op_keys, op_args = self._settle_op(op)
            keys += op_keys
            args += ("s", len(op_keys), len(op_args), *op_args)
        if admit is not None:
            keys += admit[0]
            args += ("a", len(admit[0]), len(admit[1]), *admit[1])
        return await self._run(SCRIPTS["batch"], keys, args)

    async def admit(self, ask: Ask) -> Answer:
        leases = self.leases
        answer = leases.admit(ask)
        if answer is not None:
            if leases.returns:
                self._take_returns()
            return answer
        p = self.prefix
        keys: list[str] = []
        args: list[str | int] = [self.window_ms, self.bucket_ms, len(ask.windows)]
        for window in ask.windows:
            keys += (p + "r:" + window.key, p + "t:" + window.key)
            args += (window.rpm, window.tpm)
        for budget in ask.budgets:
            keys += (p + "b:" + ask.month + ":" + budget.key, p + "h:" + ask.month + ":" + budget.key)
            args.append(budget.limit)
        wanted = leases.wants(ask)
        args += (ask.reserve, ask.hold_ms, BUDGET_TTL_MS, ask.reservation, LEASE_MS, *wanted)
        sent_at = now_ms()
        call = asyncio.ensure_future(self._send_admit(keys, args))
        try:
            # Shielded: a caller cancelled meanwhile (a deadline, a shutdown) must not lose the leases
            # Redis grants with the answer, which would stay counted there with nobody to spend them.
            reply = await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(lambda done: self._late(done, ask, wanted, sent_at))
            raise
        except BaseException:
            leases.ungranted(ask, wanted)
            raise
        states = self._granted(ask, wanted, sent_at, reply)
        kind, index = reply[1], reply[2] - 1
        if kind:
            # Refused in Redis: the leases of earlier answers (of requests sent with this one) may cover it.
            answer = leases.admit(ask)
            if answer is not None:
                return answer
            refused = _REFUSALS[kind] + (ask.budgets[index].key if kind == 3 else ask.windows[index].key)
            return Answer(False, refused, reply[3], states)
        now = now_ms()
        states = tuple(leases.state(w, leases.windows[w.key], now) for w in ask.windows)
        return Answer(True, "", 0, states)

    async def _send_admit(self, keys: list[str], args: list[Any]) -> Any:
        if self._deferred:  # the settlements waiting travel with this admit, applied first
            settles = self._take_deferred()
            try:
                return await self._batch(settles, (keys, args))
            except CountersUnavailable as exc:
                self._unsent(settles, exc)
                raise
        return await self._run(SCRIPTS["admit"], keys, args)

    def _granted(self, ask: Ask, wanted: list[int], sent_at: int, reply: Any) -> tuple[WindowState, ...]:
        """Record the leases an admit's `reply` granted (none when it refused); the windows it answered."""
        granted = 5 + 4 * len(ask.windows)
        states = tuple(WindowState(*reply[at : at + 4]) for at in range(5, granted, 4))
        if reply[1]:
            self.leases.ungranted(ask, wanted)
            return states
        grants = reply[granted:]
        self.leases.granted(ask, wanted, sent_at, states, reply[4].decode(), grants)
        if any(grants):
            self._arm_sweep()
        return states

    def _late(self, done: asyncio.Future[Any], ask: Ask, wanted: list[int], sent_at: int) -> None:
        """The answer of an admit whose caller was cancelled: its leases are kept, to spend or give back."""
        if done.cancelled() or done.exception() is not None:
            self.leases.ungranted(ask, wanted)
        else:
            self._granted(ask, wanted, sent_at, done.result())

    async def settle(self, settle: Settle) -> None:
        settle = self.leases.settle(settle)
        if self.leases.returns:
            self._take_returns()
        keys, args = self._settle_op(settle)
        await self._run(SCRIPTS["settle"], keys, args)

    def _settle_op(self, settle: Settle) -> tuple[list[str], tuple[Any, ...]]:
        p = self.prefix
        keys = [p + "t:" + key for key in settle.windows]
        for key in settle.budgets:
            keys += (p + "b:" + settle.month + ":" + key, p + "h:" + settle.month + ":" + key)
        args = (
            self.bucket_ms,
            len(settle.windows),
            settle.tokens,
            settle.reservation,
            settle.cost,
            BUDGET_TTL_MS,
            settle.reserved,
        )
        return keys, args

    async def seed(self, month: str, spent: dict[str, int]) -> None:
        if spent:
            keys = [self.prefix + "b:" + month + ":" + key for key in spent]
            await self._run(SCRIPTS["seed"], keys, [BUDGET_TTL_MS, *spent.values()])

    async def close(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        self.leases.close()
        self._deferred += self.leases.take_returns()
        if self._deferred:
            settles = self._take_deferred()
            try:
                await self._batch(settles, None)
            except CountersUnavailable as exc:
                self._unsent(settles, exc)
        self.redis.close()

    async def _run(self, script: Script, keys: list[str], args: Any) -> Any:
        reply = await self.redis.call(b"EVALSHA", script.sha, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self.redis.call(b"EVAL", script.source, len(keys), *keys, *args)  # caches it too
        if isinstance(reply, hiredis.ReplyError):
            raise CountersUnavailable(f"{self.redis.address} ({reply})")
        return reply
