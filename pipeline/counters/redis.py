"""Counters in Redis, shared by every worker of every gateway: admit, settle and seed are one Lua script
call each (one round trip), timed by Redis's own clock (pipeline/counters/lua.py has the scripts and the
keys). A settlement goes at once when the connection is idle, else it rides with the next admit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import hiredis

from pipeline.counters.base import WINDOW_MS, Answer, Ask, CountersUnavailable, Settle, WindowState
from pipeline.counters.local import BUCKETS, BUDGET_TTL_MS
from pipeline.counters.lua import SCRIPTS, Script
from pipeline.counters.resp import RedisConnection

log = logging.getLogger("tollgate.counters")

SETTLE_DELAY_S = 0.002  # a deferred settlement waits this long for an admit to travel with
_REFUSALS = ("", "rpm:", "tpm:", "budget:")


class RedisCounters:
    name = "redis"

    def __init__(self, url: str, prefix: str = "tollgate:", *, window_ms: int = WINDOW_MS) -> None:
        self.redis = RedisConnection(url)
        self.prefix = "{" + prefix + "}"
        self.window_ms = window_ms
        self.bucket_ms = max(1, window_ms // BUCKETS)
        self._deferred: list[Settle] = []  # settlements not sent yet
        self._timer: asyncio.TimerHandle | None = None
        # Settlements Redis could not take (it went away): FailoverCounters books them on its fallback.
        self.on_unsent: Callable[[list[Settle]], None] | None = None

    def defer_settle(self, settle: Settle) -> None:
        """Book `settle` without waiting. On an idle connection it is sent at once (Redis runs it before
        the next request arrives, off that request's path); while calls are in flight it waits for the
        next admit to travel with, or SETTLE_DELAY_S: under load, half the round trips and script calls.
        Settlements that cannot be sent (Redis gone) go to `on_unsent`."""
        protocol = self.redis.idle()
        if protocol is not None and not self._deferred:
            keys, args = self._settle_op(settle)
            script = SCRIPTS["settle"]
            sent = protocol.call(hiredis.pack_command((b"EVALSHA", script.sha, len(keys), *keys, *args)))
            sent.add_done_callback(lambda done: self._settled(done, settle))
            return
        self._defer(settle)

    def _defer(self, settle: Settle) -> None:
        self._deferred.append(settle)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SETTLE_DELAY_S, self._send_deferred)

    def _send_deferred(self) -> None:
        self._timer = None
        if self._deferred:
            settles = self._take_deferred()
            task = asyncio.ensure_future(self._batch(settles, None))
            task.add_done_callback(lambda done: self._sent(done, settles))

    def _take_deferred(self) -> list[Settle]:
        settles, self._deferred = self._deferred, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return settles

    def _settled(self, done: asyncio.Future[Any], settle: Settle) -> None:
        """A settlement sent on its own: an unknown script (Redis restarted) goes again with the next
        batch, which loads it; a lost connection hands it to `on_unsent`."""
        if done.cancelled():
            return
        error = done.exception()
        reply = None if error is not None else done.result()
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            load = asyncio.ensure_future(self.redis.call(b"SCRIPT", b"LOAD", SCRIPTS["settle"].source))
            load.add_done_callback(lambda done: self._sent(done, []))
            self._defer(settle)
        elif error is not None or isinstance(reply, hiredis.ReplyError):
            self._unsent([settle], error or reply)

    def _sent(self, task: asyncio.Future[Any], settles: list[Settle]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._unsent(settles, task.exception())

    def _unsent(self, settles: list[Settle], why: object) -> None:
        if self.on_unsent is not None and settles:
            self.on_unsent(settles)
        else:
            log.error("settling usage in Redis failed (%d settlements): %s", len(settles), why)

    async def _batch(self, settles: list[Settle], admit: tuple[list[str], list[Any]] | None) -> Any:
        keys: list[str] = []
        args: list[Any] = [len(settles) + (admit is not None)]
        for settle in settles:
            op_keys, op_args = self._settle_op(settle)
            keys += op_keys
            args += ("s", len(op_keys), len(op_args), *op_args)
        if admit is not None:
            keys += admit[0]
            args += ("a", len(admit[0]), len(admit[1]), *admit[1])
        return await self._run(SCRIPTS["batch"], keys, args)

    async def admit(self, ask: Ask) -> Answer:
        p = self.prefix
        keys: list[str] = []
        args: list[str | int] = [self.window_ms, self.bucket_ms, len(ask.windows)]
        for window in ask.windows:
            keys += (p + "r:" + window.key, p + "t:" + window.key)
            args += (window.rpm, window.tpm)
        for budget in ask.budgets:
            keys += (p + "b:" + ask.month + ":" + budget.key, p + "h:" + ask.month + ":" + budget.key)
            args.append(budget.limit)
        args += (ask.reserve, ask.hold_ms, BUDGET_TTL_MS, ask.reservation)
        if self._deferred:  # the settlements waiting travel with this admit, applied first
            settles = self._take_deferred()
            try:
                reply = await self._batch(settles, (keys, args))
            except CountersUnavailable as exc:
                self._unsent(settles, exc)
                raise
        else:
            reply = await self._run(SCRIPTS["admit"], keys, args)
        kind, index = reply[1], reply[2] - 1
        refused = ""
        if kind:
            refused = _REFUSALS[kind] + (ask.budgets[index].key if kind == 3 else ask.windows[index].key)
        states = tuple(WindowState(*reply[at : at + 4]) for at in range(4, len(reply), 4))
        return Answer(reply[0] == 1, refused, reply[3], states)

    async def settle(self, settle: Settle) -> None:
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
