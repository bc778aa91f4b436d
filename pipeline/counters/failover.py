"""Counters that fall back to another home while the primary (Redis) cannot be reached.

On `CountersUnavailable` the call is answered by the fallback, and so is every call for the next
`retry_s`; then one call tries the primary again (the others keep using the fallback until it answers),
so no call waits on a dead primary more than once per `retry_s`. Counts made in the fallback stay there:
while degraded, each gateway enforces its limits on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipeline.counters.base import Answer, Ask, Counters, CountersUnavailable, Settle

log = logging.getLogger("tollgate.counters")


class FailoverCounters:
    def __init__(
        self,
        primary: Counters,
        fallback: Counters,
        *,
        retry_s: float = 1.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.retry_s = retry_s
        self.on_change = on_change
        self.name = primary.name
        self.degraded = False
        self.failovers = 0
        self._retry_at = 0.0
        if hasattr(primary, "on_unsent"):  # settlements the primary took but could not book: ours
            primary.on_unsent = self._book_on_fallback

    async def admit(self, ask: Ask) -> Answer:
        if self._use_fallback():
            return await self.fallback.admit(ask)
        try:
            answer = await self.primary.admit(ask)
        except CountersUnavailable as exc:
            self._failed(exc)
            return await self.fallback.admit(ask)
        self._answered()
        return answer

    async def settle(self, settle: Settle) -> None:
        if self._use_fallback():
            return await self.fallback.settle(settle)
        try:
            await self.primary.settle(settle)
        except CountersUnavailable as exc:
            self._failed(exc)
            return await self.fallback.settle(settle)
        self._answered()

    def _book_on_fallback(self, settles: list[Settle]) -> None:
        log.warning(
            "%d settlements could not reach %s; booked on %s",
            len(settles),
            self.primary.name,
            self.fallback.name,
        )
        # A request admitted on a lease makes no call that could fail: a lost settlement is how a
        # primary gone away shows first.
        self._failed(CountersUnavailable(f"{len(settles)} settlements not sent"))
        for settle in settles:
            self.fallback.defer_settle(settle)

    def defer_settle(self, settle: Settle) -> None:
        """Settle without waiting, through the primary's own deferral while it is up (what it cannot take
        comes back through its `on_unsent`)."""
        (self.fallback if self._use_fallback() else self.primary).defer_settle(settle)

    async def seed(self, month: str, spent: dict[str, int]) -> None:
        await self.fallback.seed(month, spent)
        if self._use_fallback():
            return
        try:
            await self.primary.seed(month, spent)
        except CountersUnavailable as exc:
            self._failed(exc)
            return
        self._answered()

    async def close(self) -> None:
        try:
            await self.primary.close()
        finally:
            await self.fallback.close()

    def _use_fallback(self) -> bool:
        """While degraded: True until `retry_s` has passed, then False for one call (the probe)."""
        if not self.degraded:
            return False
        now = time.monotonic()
        if now < self._retry_at:
            return True
        self._retry_at = now + self.retry_s
        return False

    def _failed(self, exc: CountersUnavailable) -> None:
        self._retry_at = time.monotonic() + self.retry_s
        if self.degraded:
            return
        self.degraded = True
        self.failovers += 1
        self.name = self.fallback.name
        log.warning(
            "%s unavailable at %s; limits and budgets use %s counters until it is back",
            self.primary.name,
            exc,
            self.fallback.name,
        )
        if self.on_change is not None:
            self.on_change(True)

    def _answered(self) -> None:
        if not self.degraded:
            return
        self.degraded = False
        self.name = self.primary.name
        log.info("%s is back; limits and budgets use it again", self.primary.name)
        if self.on_change is not None:
            self.on_change(False)
