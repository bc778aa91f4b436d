"""Counters in this process: the single-process gateway, the host server's store, and the fallback.

rpm is a sliding log (one timestamp per admitted request, at most `rpm` in any window); tpm sums 60
buckets of `window_ms / 60` (one second by default) filled by `settle`. A budget holds the month's spend
and the reservations in flight; a reservation never settled is released `hold_ms` after it was made.
Everything runs synchronously on the caller's thread, so every check-and-count is atomic.
"""

from __future__ import annotations

import time
from collections import deque

from pipeline.counters.base import WINDOW_MS, Answer, Ask, Settle, Window, WindowState

BUCKETS = 60  # tpm: the window is summed over this many buckets
BUDGET_TTL_MS = 40 * 24 * 3600 * 1000  # a month's budget state is dropped this long after its last write
_NEVER = 1 << 62


class _Window:
    __slots__ = ("buckets", "log", "tokens")

    def __init__(self) -> None:
        self.log: deque[int] = deque()  # admission times (ms), oldest first
        self.buckets: deque[list[int]] = deque()  # [bucket, tokens], oldest first
        self.tokens = 0  # sum of the buckets


class _Budget:
    __slots__ = ("reserved", "spent", "touched")

    def __init__(self, spent: int, now: int) -> None:
        self.spent = spent
        self.reserved = 0
        self.touched = now


class _Hold:
    __slots__ = ("amount", "budgets", "expires", "reservation")

    def __init__(self, reservation: str, amount: int, expires: int, budgets: list[_Budget]) -> None:
        self.reservation = reservation
        self.amount = amount
        self.expires = expires
        self.budgets = budgets


class LocalCounters:
    name = "local"

    def __init__(self, *, window_ms: int = WINDOW_MS) -> None:
        self.window_ms = window_ms
        self.bucket_ms = max(1, window_ms // BUCKETS)
        self._windows: dict[str, _Window] = {}
        self._months: dict[str, dict[str, _Budget]] = {}
        self._holds: dict[str, _Hold] = {}  # reservations in flight
        # Holds in the order they expire, one queue per hold_ms (a handful: one per LLM setting);
        # settled ones linger until they reach the front or the queues are compacted.
        self._expiry: dict[int, deque[_Hold]] = {}
        self._queued = 0
        self._next_expiry = _NEVER
        self._last = 0
        self._skew = 0  # added to time.time() since the clock last stepped back
        self._sweep_at = 0

    def now_ms(self) -> int:
        """Wall-clock ms that never goes back: after a step back, time resumes from the last reading."""
        wall = time.time_ns() // 1_000_000 + self._skew
        if wall < self._last:
            self._skew += self._last - wall
            wall = self._last
        self._last = wall
        return wall

    async def admit(self, ask: Ask) -> Answer:
        return self.admit_now(ask)

    async def settle(self, settle: Settle) -> None:
        self.settle_now(settle)

    def defer_settle(self, settle: Settle) -> None:
        self.settle_now(settle)

    async def seed(self, month: str, spent: dict[str, int]) -> None:
        self.seed_now(month, spent)

    async def close(self) -> None:
        pass

    def admit_now(self, ask: Ask) -> Answer:
        # The hot path of every limited request: inlined rather than split into helpers (a few µs).
        now = self.now_ms()
        if now >= self._sweep_at:
            self._sweep(now)
        if now >= self._next_expiry:
            self._expire(now)
        refused = ""
        retry = 0
        windows = self._windows
        window_ms = self.window_ms
        start = now - window_ms
        first = now // self.bucket_ms - BUCKETS
        found: list[tuple[Window, _Window]] = []
        for window in ask.windows:
            counted = windows.get(window.key)
            if counted is None:
                counted = windows[window.key] = _Window()
            found.append((window, counted))
            rpm = window.rpm
            if rpm:
                log = counted.log
                while log and log[0] <= start:
                    log.popleft()
                if len(log) >= rpm:
                    refused = refused or "rpm:" + window.key
                    retry = max(retry, log[len(log) - rpm] + window_ms - now)
            tpm = window.tpm
            if tpm:
                buckets = counted.buckets
                while buckets and buckets[0][0] <= first:
                    counted.tokens -= buckets.popleft()[1]
                if counted.tokens >= tpm:
                    refused = refused or "tpm:" + window.key
                    retry = max(retry, self._tokens_free_at(counted, tpm) - now)
        if not refused and ask.budgets:
            refused = self._book(ask, now)
        states = []
        for window, counted in found:
            rpm, tpm = window.rpm, window.tpm
            log, buckets = counted.log, counted.buckets
            if rpm and not refused:
                log.append(now)
            states.append(
                WindowState(
                    max(0, rpm - len(log)) if rpm else 0,
                    log[0] + window_ms - now if rpm and log else 0,
                    max(0, tpm - counted.tokens) if tpm else 0,
                    (buckets[0][0] + BUCKETS) * self.bucket_ms - now if tpm and buckets else 0,
                )
            )
        return Answer(not refused, refused, retry, tuple(states))

    def _book(self, ask: Ask, now: int) -> str:
        """Check every budget; when all admit, reserve on each. Returns the refusal, if any."""
        month = self._months.get(ask.month)
        if month is None:
            month = self._months[ask.month] = {}
        budgets = []
        for budget in ask.budgets:
            state = month.get(budget.key)
            if state is None:
                state = month[budget.key] = _Budget(0, now)
            if state.spent + state.reserved >= budget.limit:
                return "budget:" + budget.key
            budgets.append(state)
        reserve = ask.reserve
        if reserve:
            old = self._holds.get(ask.reservation)
            if old is not None:  # the same reservation admitted twice: the later one replaces it
                self._release(old)
            hold = self._holds[ask.reservation] = _Hold(ask.reservation, reserve, now + ask.hold_ms, budgets)
            queue = self._expiry.get(ask.hold_ms)
            if queue is None:
                queue = self._expiry[ask.hold_ms] = deque()
            queue.append(hold)
            self._queued += 1
            if hold.expires < self._next_expiry:
                self._next_expiry = hold.expires
            for state in budgets:
                state.reserved += reserve
                state.touched = now
        return ""

    def settle_now(self, settle: Settle) -> None:
        now = self.now_ms()
        if settle.tokens:
            bucket = now // self.bucket_ms
            for key in settle.windows:
                counted = self._window(key, now)
                last = counted.buckets[-1] if counted.buckets else None
                if last is not None and last[0] >= bucket:
                    last[1] += settle.tokens
                else:
                    counted.buckets.append([bucket, settle.tokens])
                counted.tokens += settle.tokens
        hold = self._holds.pop(settle.reservation, None)
        if hold is not None:
            self._release(hold)
            if self._queued > 2 * len(self._holds) + 1024:
                self._compact()
        month = self._months.get(settle.month)
        if month is None:
            month = self._months[settle.month] = {}
        for key in settle.budgets:
            state = month.get(key)
            if state is None:
                state = month[key] = _Budget(0, now)
            state.spent += settle.cost
            state.touched = now

    def seed_now(self, month: str, spent: dict[str, int]) -> None:
        now = self.now_ms()
        states = self._months.setdefault(month, {})
        for key, amount in spent.items():
            if key not in states:
                states[key] = _Budget(amount, now)

    def _window(self, key: str, now: int) -> _Window:
        """The key's window with what has left it dropped."""
        counted = self._windows.get(key)
        if counted is None:
            counted = self._windows[key] = _Window()
            return counted
        log = counted.log
        start = now - self.window_ms
        while log and log[0] <= start:
            log.popleft()
        buckets = counted.buckets
        first = now // self.bucket_ms - BUCKETS
        while buckets and buckets[0][0] <= first:
            counted.tokens -= buckets.popleft()[1]
        return counted

    def _tokens_free_at(self, counted: _Window, tpm: int) -> int:
        """When enough buckets will have left for the tokens counted to be under `tpm`."""
        left = counted.tokens
        for bucket, tokens in counted.buckets:
            left -= tokens
            if left < tpm:
                return (bucket + BUCKETS) * self.bucket_ms
        return 0  # unreachable: the sum of all buckets is `counted.tokens`

    def _release(self, hold: _Hold) -> None:
        for state in hold.budgets:
            state.reserved -= hold.amount
        hold.budgets = []  # released: lingers in its queue as an empty shell

    def _expire(self, now: int) -> None:
        holds = self._holds
        upcoming = _NEVER
        for queue in self._expiry.values():
            while queue and queue[0].expires <= now:
                hold = queue.popleft()
                self._queued -= 1
                if holds.get(hold.reservation) is hold:
                    del holds[hold.reservation]
                    self._release(hold)
            if queue and queue[0].expires < upcoming:
                upcoming = queue[0].expires
        self._next_expiry = upcoming

    def _compact(self) -> None:
        """Drop settled holds from the expiry queues (they would otherwise linger for hold_ms)."""
        for queue in self._expiry.values():
            live = [hold for hold in queue if hold.budgets]
            queue.clear()
            queue.extend(live)
        self._queued = sum(len(queue) for queue in self._expiry.values())

    def _sweep(self, now: int) -> None:
        """Drop idle windows and budgets untouched for BUDGET_TTL_MS (runs once per window)."""
        self._sweep_at = now + self.window_ms
        for key in list(self._windows):
            counted = self._window(key, now)
            if not counted.log and not counted.buckets:
                del self._windows[key]
        stale = now - BUDGET_TTL_MS
        for month, states in list(self._months.items()):
            for key in [k for k, s in states.items() if s.touched < stale and not s.reserved]:
                del states[key]
            if not states:
                del self._months[month]
