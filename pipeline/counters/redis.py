"""Counters in Redis, shared by every worker of every gateway: admit, settle and seed are one Lua script
call each (one round trip), timed by Redis's own clock (TIME in the script).

Keys (all under one hash tag `{<prefix>}` so a script's keys share a cluster slot):
  r:<window>          sorted set, the rpm log: one member per admitted request, scored by its ms
  t:<window>          hash, tpm buckets: bucket number (ms // bucket_ms) → tokens
  b:<month>:<budget>  hash: s = spent, r = reserved, h:<reservation> = its amount
  h:<month>:<budget>  sorted set: reservation → the ms it expires at
Every write sets a PEXPIRE: windows vanish once idle, a month's budget BUDGET_TTL_MS after its last write.

The client is a minimal pipelined RESP connection (asyncio.Protocol + hiredis.Reader), opened lazily and
again after a failure; a refused connection, a timeout or an error reply raise `CountersUnavailable`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

from pipeline.counters.base import WINDOW_MS, Answer, Ask, CountersUnavailable, Settle, WindowState
from pipeline.counters.local import BUCKETS, BUDGET_TTL_MS

log = logging.getLogger("tollgate.counters")

CONNECT_TIMEOUT_S = 0.25
CALL_TIMEOUT_S = 1.0
_WATCH_S = 0.25

_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: r, t per window, then b, h per budget. ARGV: window_ms, bucket_ms, windows, (rpm, tpm) per
# window, limit per budget, reserve, hold_ms, ttl_ms, reservation. Returns {allowed, kind (1 rpm,
# 2 tpm, 3 budget), index of the refusing window or budget, retry_after_ms, 4 numbers per window}.
_ADMIT = (
    _CLOCK
    + """
local window, bucket_ms, nw = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local first = math.floor(now / bucket_ms) - $BUCKETS
local kind, index, retry, out, counts = 0, 0, 0, {}, {}
local function refuse(k, i, ms)
  if kind == 0 then kind, index = k, i end
  if ms > retry then retry = ms end
end
for i = 1, nw do
  local rpm, tpm = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  local rkey, tkey = KEYS[2 * i - 1], KEYS[2 * i]
  local left, reset, tleft, treset = 0, 0, 0, 0
  if rpm > 0 then
    redis.call('ZREMRANGEBYSCORE', rkey, '-inf', now - window)
    local n = redis.call('ZCARD', rkey)
    counts[i] = n
    left = math.max(0, rpm - n)
    if n > 0 then
      reset = tonumber(redis.call('ZRANGE', rkey, 0, 0, 'WITHSCORES')[2]) + window - now
    end
    if n >= rpm then
      refuse(1, i, tonumber(redis.call('ZRANGE', rkey, n - rpm, n - rpm, 'WITHSCORES')[2]) + window - now)
    end
  end
  if tpm > 0 then
    local all, stale, live, used = redis.call('HGETALL', tkey), {}, {}, 0
    for j = 1, #all, 2 do
      local b = tonumber(all[j])
      if b <= first then
        stale[#stale + 1] = all[j]
      else
        live[#live + 1] = {b, tonumber(all[j + 1])}
        used = used + live[#live][2]
      end
    end
    if #stale > 0 then redis.call('HDEL', tkey, unpack(stale)) end
    table.sort(live, function(a, b) return a[1] < b[1] end)
    tleft = math.max(0, tpm - used)
    if #live > 0 then treset = (live[1][1] + $BUCKETS) * bucket_ms - now end
    if used >= tpm then
      for _, bucket in ipairs(live) do
        used = used - bucket[2]
        if used < tpm then
          refuse(2, i, (bucket[1] + $BUCKETS) * bucket_ms - now)
          break
        end
      end
    end
  end
  out[i] = {left, reset, tleft, treset}
end
local nb = (#KEYS - 2 * nw) / 2
local base = 4 + 2 * nw
local reserve, hold_ms = tonumber(ARGV[base + nb]), tonumber(ARGV[base + nb + 1])
local ttl, id = ARGV[base + nb + 2], ARGV[base + nb + 3]
local fresh = {}
if kind == 0 then
  for j = 1, nb do
    local b, h = KEYS[2 * nw + 2 * j - 1], KEYS[2 * nw + 2 * j]
    local state = redis.call('HMGET', b, 's', 'r')
    fresh[j] = not state[1] and not state[2]
    local spent, reserved = tonumber(state[1]) or 0, tonumber(state[2]) or 0
    local limit = tonumber(ARGV[base + j - 1])
    if spent + reserved >= limit then
      -- before refusing: release reservations never settled (their gateway died), then look again
      local gone = redis.call('ZRANGEBYSCORE', h, '-inf', now)
      if #gone > 0 then
        local amount = 0
        for _, member in ipairs(gone) do amount = amount + tonumber(string.match(member, ':(%d+)$')) end
        redis.call('HINCRBY', b, 'r', -amount)
        redis.call('ZREMRANGEBYSCORE', h, '-inf', now)
        reserved = reserved - amount
      end
      if spent + reserved >= limit then
        kind, index = 3, j
        break
      end
    end
  end
end
if kind == 0 then
  local member = t[1] .. '.' .. t[2] .. ':' .. id
  for i = 1, nw do
    if tonumber(ARGV[2 + 2 * i]) > 0 then
      redis.call('ZADD', KEYS[2 * i - 1], now, member)
      redis.call('PEXPIRE', KEYS[2 * i - 1], window)
      out[i][1] = out[i][1] - 1
      if counts[i] == 0 then out[i][2] = window end
    end
  end
  if reserve > 0 then
    for j = 1, nb do
      local b, h = KEYS[2 * nw + 2 * j - 1], KEYS[2 * nw + 2 * j]
      -- a reservation is the member "<id>:<amount>", scored by when it expires
      if redis.call('ZADD', h, 'NX', now + hold_ms, id .. ':' .. reserve) == 1 then
        redis.call('HINCRBY', b, 'r', reserve)
      end
      if fresh[j] then  -- a month's budget keys live 40 days from their first use
        redis.call('PEXPIRE', b, ttl)
        redis.call('PEXPIRE', h, ttl)
      end
    end
  end
end
local reply = {kind == 0 and 1 or 0, kind, index, retry}
for i = 1, nw do
  for k = 1, 4 do reply[#reply + 1] = math.max(0, out[i][k]) end
end
return reply
"""
).replace("$BUCKETS", str(BUCKETS))

# KEYS: t per window, then b, h per budget. ARGV: bucket_ms, windows, tokens, reservation, cost, ttl_ms,
# reserved.
_SETTLE = (
    _CLOCK
    + """
local bucket_ms, nw, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local id, cost, ttl, reserved = ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
if tokens > 0 then
  local bucket = math.floor(now / bucket_ms)
  for i = 1, nw do
    redis.call('HINCRBY', KEYS[i], bucket, tokens)
    if redis.call('HLEN', KEYS[i]) > $BUCKETS then
      local all, stale = redis.call('HKEYS', KEYS[i]), {}
      for _, b in ipairs(all) do
        if tonumber(b) <= bucket - $BUCKETS then stale[#stale + 1] = b end
      end
      if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
    end
    redis.call('PEXPIRE', KEYS[i], ($BUCKETS + 1) * bucket_ms)
  end
end
for j = nw + 1, #KEYS, 2 do
  local b, h = KEYS[j], KEYS[j + 1]
  if reserved > 0 and redis.call('ZREM', h, id .. ':' .. reserved) == 1 then
    redis.call('HINCRBY', b, 'r', -reserved)
  end
  if redis.call('HINCRBY', b, 's', cost) == cost then  -- the month's first booking
    redis.call('PEXPIRE', b, ttl)
  end
end
return 0
"""
).replace("$BUCKETS", str(BUCKETS))

# KEYS: b per budget. ARGV: ttl_ms, then the spend per budget.
_SEED = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 's', ARGV[i + 1], 'r', 0)
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  end
end
return 0
"""


class _Script:
    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


# Settlements deferred by `defer_settle` travel with the next admit (or alone after SETTLE_DELAY_S): one
# script call runs them in order. ARGV: the number of ops, then per op its kind ("s" or "a"), its number
# of keys and of args, and its args; KEYS: every op's keys in order. Returns the admit's reply, else 0.
_BATCH = f"""
local function settle(KEYS, ARGV)
{_SETTLE}
end
local function admit(KEYS, ARGV)
{_ADMIT}
end
local ki, ai, reply = 1, 2, 0
for _ = 1, tonumber(ARGV[1]) do
  local kind, nk, na = ARGV[ai], tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2])
  ai = ai + 3
  local keys, args = {{}}, {{}}
  for x = 1, nk do keys[x] = KEYS[ki]; ki = ki + 1 end
  for x = 1, na do args[x] = ARGV[ai]; ai = ai + 1 end
  if kind == 'a' then reply = admit(keys, args) else settle(keys, args) end
end
return reply
"""

_SCRIPTS = {
    name: _Script(source)
    for name, source in (("admit", _ADMIT), ("settle", _SETTLE), ("seed", _SEED), ("batch", _BATCH))
}
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
            script = _SCRIPTS["settle"]
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
            load = asyncio.ensure_future(self.redis.call(b"SCRIPT", b"LOAD", _SCRIPTS["settle"].source))
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
        return await self._run(_SCRIPTS["batch"], keys, args)

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
            reply = await self._run(_SCRIPTS["admit"], keys, args)
        kind, index = reply[1], reply[2] - 1
        refused = ""
        if kind:
            refused = _REFUSALS[kind] + (ask.budgets[index].key if kind == 3 else ask.windows[index].key)
        states = tuple(WindowState(*reply[at : at + 4]) for at in range(4, len(reply), 4))
        return Answer(reply[0] == 1, refused, reply[3], states)

    async def settle(self, settle: Settle) -> None:
        keys, args = self._settle_op(settle)
        await self._run(_SCRIPTS["settle"], keys, args)

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
            await self._run(_SCRIPTS["seed"], keys, [BUDGET_TTL_MS, *spent.values()])

    async def close(self) -> None:
        if self._deferred:
            settles = self._take_deferred()
            try:
                await self._batch(settles, None)
            except CountersUnavailable as exc:
                self._unsent(settles, exc)
        self.redis.close()

    async def _run(self, script: _Script, keys: list[str], args: Any) -> Any:
        reply = await self.redis.call(b"EVALSHA", script.sha, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self.redis.call(b"EVAL", script.source, len(keys), *keys, *args)  # caches it too
        if isinstance(reply, hiredis.ReplyError):
            raise CountersUnavailable(f"{self.redis.address} ({reply})")
        return reply


class RedisConnection:
    """One lazily opened, pipelined connection to `redis://[[user]:password@]host[:port][/db]`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"a Redis URL starts with redis:// (got {url!r})")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.db = int(parts.path.strip("/") or 0)
        self.address = f"{self.host}:{self.port}/{self.db}"
        self._hello: list[tuple[Any, ...]] = []
        if parts.password is not None:
            user = unquote(parts.username or "")
            self._hello.append(
                (b"AUTH", user, unquote(parts.password)) if user else (b"AUTH", unquote(parts.password))
            )
        if self.db:
            self._hello.append((b"SELECT", self.db))
        self._protocol: _Resp | None = None
        self._connecting: asyncio.Task[_Resp] | None = None

    async def call(self, *args: Any) -> Any:
        """The reply to one command; an error reply is returned as a `hiredis.ReplyError`."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        return await protocol.call(hiredis.pack_command(args))

    def idle(self) -> _Resp | None:
        """The connection when it is open with no call in flight, else None."""
        protocol = self._protocol
        if protocol is None or protocol.closed or protocol.pending:
            return None
        return protocol

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None

    async def _connect(self) -> _Resp:
        if self._connecting is None:  # concurrent callers share one attempt
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(_retrieve)
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Resp:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, protocol = await loop.create_connection(lambda: _Resp(self.address), self.host, self.port)
            replies = await asyncio.gather(*(protocol.call(hiredis.pack_command(c)) for c in self._hello))
        except (OSError, TimeoutError) as exc:
            raise CountersUnavailable(f"{self.address} ({str(exc) or 'connect timed out'})") from exc
        finally:
            self._connecting = None
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                protocol.close()
                raise CountersUnavailable(f"{self.address} ({reply})")
        self._protocol = protocol
        return protocol


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Marks a shared task's failure as seen even when every caller waiting on it was cancelled."""
    if not task.cancelled():
        task.exception()


class _Resp(asyncio.Protocol):
    """Replies come in the order of the commands: pending calls are a queue; writes are batched per loop
    iteration, and a connection whose oldest call is past its deadline is dropped."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.closed = False
        self.reader = hiredis.Reader()
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.out: list[bytes] = []
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport
        self.watch = self.loop.call_later(_WATCH_S, self._check_deadline)

    def call(self, command: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        if self.closed:
            future.set_exception(CountersUnavailable(f"{self.address} (connection lost)"))
            return future
        if self.out:
            self.out.append(command)
        elif self.pending:  # calls in flight: more may come in this loop iteration, send them together
            self.out.append(command)
            self.loop.call_soon(self._flush)
        elif self.transport is not None:
            self.transport.write(command)
        self.pending.append((future, self.loop.time() + CALL_TIMEOUT_S))
        return future

    def _flush(self) -> None:
        out, self.out = self.out, []
        if not self.closed and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def data_received(self, data: bytes) -> None:
        reader, pending = self.reader, self.pending
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                future = pending.popleft()[0]
                if not future.done():
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            log.error("redis at %s: unexpected data (%s); reconnecting", self.address, exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.watch is not None:
            self.watch.cancel()
        pending, self.pending = self.pending, deque()
        for future, _ in pending:
            if not future.done():
                future.set_exception(CountersUnavailable(f"{self.address} (connection lost)"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _check_deadline(self) -> None:
        if self.pending and self.pending[0][1] < self.loop.time():
            log.warning("redis at %s did not answer within %.1f s", self.address, CALL_TIMEOUT_S)
            self.close()
            return
        self.watch = self.loop.call_later(_WATCH_S, self._check_deadline)
