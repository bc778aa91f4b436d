"""Route targets' cool-downs shared by every gateway on one Redis (`--redis`).

Each process counts its own failures (pipeline/routing.py) and cools a target down by itself; with Redis,
it also reports each failure to a script that counts them on Redis's clock, across gateways, and sets a
key that expires when the cool-down ends. Twice a second the runtime reads the remaining time of every
route target's key (one script call), so a target that cooled down anywhere is skipped everywhere within
half a second. Redis unreachable: each process goes on with its own counts, and says so once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pipeline.counters.resp import RedisConnection

log = logging.getLogger("tollgate.routes")

PREFIX = "{tollgate:}cool:"

# KEYS: failures (sorted set), cooling (string). ARGV: fails, window ms, duration ms, a unique member.
_FAILED = b"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], now + tonumber(ARGV[3]), 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return tonumber(ARGV[3])
end
return 0
"""
# KEYS: cooling keys. Returns each one's remaining milliseconds (negative: not cooling).
_COOLING = b"""
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('PTTL', key) end
return out
"""


class SharedCooldowns:
    def __init__(self, url: str) -> None:
        self.redis = RedisConnection(url)
        self._reports: set[asyncio.Task[None]] = set()
        self._down = False

    @staticmethod
    def keys(route: str, llm: str) -> tuple[bytes, bytes]:
        return f"{PREFIX}fails:{route}:{llm}".encode(), f"{PREFIX}until:{route}:{llm}".encode()

    def report(
        self, route: str, llm: str, fails: int, window_s: float, duration_s: float, member: str
    ) -> None:
        """Count one failure at Redis, in the background (the request does not wait for it)."""
        task = asyncio.create_task(self._report(route, llm, fails, window_s, duration_s, member))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _report(
        self, route: str, llm: str, fails: int, window_s: float, duration_s: float, member: str
    ) -> None:
        failures, cooling = self.keys(route, llm)
        args = (fails, int(window_s * 1000), int(duration_s * 1000), member)
        try:
            await self.redis.call(b"EVAL", _FAILED, 2, failures, cooling, *args)
            self._up()
        except Exception as exc:
            self._failed(exc)

    async def cooling(self, targets: Sequence[tuple[str, str]]) -> list[float]:
        """Seconds each (route, llm) still cools down (0 when it does not); zeros when Redis fails."""
        if not targets:
            return []
        keys = [self.keys(route, llm)[1] for route, llm in targets]
        try:
            reply = await self.redis.call(b"EVAL", _COOLING, len(keys), *keys)
            self._up()
        except Exception as exc:
            self._failed(exc)
            return [0.0] * len(targets)
        return [max(0, int(ms)) / 1000 for ms in reply]

    def _failed(self, exc: BaseException) -> None:
        if not self._down:
            log.warning("route cool-downs are not shared while Redis is unreachable (%s)", exc)
        self._down = True

    def _up(self) -> None:
        if self._down:
            log.info("route cool-downs are shared through Redis again")
        self._down = False

    async def close(self) -> None:
        if self._reports:
            await asyncio.gather(*self._reports, return_exceptions=True)
        self.redis.close()
