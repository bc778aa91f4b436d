"""Shared counters behind rate limits and budgets: one interface, three homes.

- `LocalCounters` (local.py): in this process; the single-process gateway, and the fallback.
- `HostCounters` (host.py): a `LocalCounters` served by the supervisor over a Unix socket, so the
  workers of one `serve --workers N` share one set of counters without Redis.
- `RedisCounters` (redis.py): Lua scripts on a Redis server, one round trip per check, shared by every
  worker of every gateway using that Redis.

`admit` is the one atomic step before a call: every rate window and budget of the request is checked
and, only when all admit, the request is counted and its budget reservation booked. `settle` books what
the call used once its answer has ended (tokens for tpm, the real cost, the reservation released).

Money is integer nano-USD (1e-9 USD) so every home adds exactly. Time is the counter home's own clock
(Redis TIME on Redis), so gateways with skewed clocks still share one window.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

NANO_USD = 1_000_000_000
WINDOW_MS = 60_000


class Window(msgspec.Struct, frozen=True, array_like=True):
    """A rate limit: at most `rpm` requests and `tpm` tokens in any 60-second window."""

    key: str  # e.g. "app:12", "llm:3"
    rpm: int = 0  # 0: no request limit
    tpm: int = 0  # 0: no token limit


class Budget(msgspec.Struct, frozen=True, array_like=True):
    key: str  # e.g. "app:12", "llm:3"
    limit: int  # nano-USD per calendar month (UTC)


class Ask(msgspec.Struct, frozen=True, array_like=True):
    windows: tuple[Window, ...]
    budgets: tuple[Budget, ...]
    month: str  # "2026-11": the budgets' month (UTC)
    reserve: int  # nano-USD reserved against each budget until settled
    reservation: str  # unique per request
    hold_ms: int  # a reservation never settled (its gateway died) is released after this


class WindowState(msgspec.Struct, frozen=True, array_like=True):
    """One window after the check: what is left and when the oldest counted use leaves the window."""

    requests_remaining: int  # after this request; meaningless when rpm is 0
    requests_reset_ms: int
    tokens_remaining: int  # meaningless when tpm is 0
    tokens_reset_ms: int


class Answer(msgspec.Struct, frozen=True, array_like=True):
    allowed: bool
    refused: str  # "" when allowed; else "rpm:<key>", "tpm:<key>" or "budget:<key>"
    retry_after_ms: int  # when refused by a window: until it admits again; 0 for budgets
    windows: tuple[WindowState, ...]  # one per Ask.windows, in order


class Settle(msgspec.Struct, frozen=True, array_like=True):
    windows: tuple[str, ...]  # keys of the windows with a tpm, to count `tokens` in
    tokens: int
    budgets: tuple[str, ...]  # keys of the budgets reserved by `admit`
    month: str
    reservation: str
    cost: int  # nano-USD the call really cost
    reserved: int = 0  # nano-USD `admit` reserved under `reservation` (Ask.reserve)


class Counters(Protocol):
    name: str  # "local", "host", "redis": shown in /metrics and logs

    async def admit(self, ask: Ask) -> Answer: ...

    async def settle(self, settle: Settle) -> None: ...

    def defer_settle(self, settle: Settle) -> None:
        """`settle` without waiting (a request's settlement must happen even when it was cancelled): at
        once in the process, else sent in the background; never raises. What a shared home cannot take goes
        to its `on_unsent`, when it has one (FailoverCounters books it on its fallback)."""

    async def seed(self, month: str, spent: dict[str, int]) -> None:
        """Budget spend so far this month, from the analytics, for keys that have no state yet (a restart
        of a gateway keeps what other gateways booked in Redis)."""

    async def close(self) -> None: ...


class CountersUnavailable(Exception):
    """The counter home cannot be reached (Redis down, supervisor gone): the caller falls back."""
