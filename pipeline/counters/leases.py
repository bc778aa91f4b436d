"""Leases: the part of a Redis limit a gateway may spend without a round trip.

A request far from every limit it is under should not wait for Redis. So an admit in Redis, when plenty is
left, also grants its gateway a lease (pipeline/counters/lua.py does the counting):

- on an rpm window, `n` requests, each counted in Redis as made at the lease's end. The gateway spends
  them only before that moment (by its own clock, from when it sent the admit), so every leased request is
  counted for at least a whole window after it was really made: the window never holds more than its rpm.
  What is not spent by the end is given back (removed from the log).
- on a budget, a block of nano-USD reserved like a request's reservation. Requests reserve from it
  locally; their real cost is booked in Redis as they settle; the block is released once it has ended and
  no request it admitted is still in flight (or by Redis `hold_ms` later, if its gateway died).
- on a tpm window there is nothing to reserve (tokens are known after the call, in Redis too): a request
  is admitted locally while the last count seen, less what this gateway has settled since, leaves more
  than a HEADROOMth of the tpm.

A request is admitted locally only when every window and budget it is under has a live lease covering it;
else it asks Redis, which also renews the leases. Redis grants a lease only when it covers at least
MIN_UNITS requests and at most a HEADROOMth of what is left: under small limits, and near the end of any,
every request asks Redis, one at a time, as without leases. A lease is sized to twice what this gateway
spent of the previous one, from MIN_UNITS requests up to MAX_UNITS.
"""

from __future__ import annotations

import time
from collections import deque

from pipeline.counters.base import Answer, Ask, Settle, Window, WindowState
from pipeline.counters.lua import HEADROOM, MIN_UNITS

LEASE_MS = 1_000  # a lease is spent within this long of its admit being sent
MAX_UNITS = 512
RELEASE_CHUNK = 1_000


def now_ms() -> int:
    """The leases' clock: monotonic ms."""
    return time.monotonic_ns() // 1_000_000


class WindowLease:
    """One window's lease: requests to spend (rpm) and the token count last seen (tpm)."""

    __slots__ = (
        "ends", "pending", "reset", "rpm_left", "seen_at", "spent", "tokens_left", "tokens_reset", "units",
        "want",
    )  # fmt: skip

    def __init__(self) -> None:
        self.units: deque[tuple[int, str]] = deque()  # (end ms, member in the rpm log), oldest first
        self.ends = 0  # the tpm view is good until then
        self.rpm_left = 0  # free in Redis when it last answered (the units here not included)
        self.reset = 0  # ms after seen_at
        self.tokens_left = 0
        self.tokens_reset = 0
        self.seen_at = 0
        self.spent = 0  # units spent since the last ask: sizes the next
        self.want = MIN_UNITS  # the size of the next lease asked for
        self.pending = 0  # requests asked for and not answered yet


class BudgetLease:
    """A block of a budget reserved in Redis, spent by requests' reservations here."""

    __slots__ = (
        "admitted", "available", "ends", "granted", "in_flight", "key", "month", "reservation",
    )  # fmt: skip

    def __init__(self, key: str, month: str, reservation: str, granted: int, ends: int) -> None:
        self.key = key
        self.month = month
        self.reservation = reservation  # its reservation in Redis: "<member>#b"
        self.granted = granted
        self.available = granted
        self.ends = ends
        self.in_flight = 0
        self.admitted = 0  # requests that reserved from it: sizes the next block


class Release:
    """Leased requests not spent: members to remove from an rpm log."""

    __slots__ = ("key", "members")

    def __init__(self, key: str, members: list[str]) -> None:
        self.key = key
        self.members = members


class LeaseBook:
    """The leases this process holds, and what their ends give back (`Release`s and block settlements,
    drained by `take_returns`)."""

    def __init__(self) -> None:
        self.windows: dict[str, WindowLease] = {}
        self.budgets: dict[tuple[str, str], BudgetLease] = {}  # (month, key)
        self.asking: set[tuple[str, str]] = set()  # budgets with a block asked for and not answered yet
        self.holds: dict[str, list[BudgetLease]] = {}  # reservation → the blocks it reserved from
        self.reserved: dict[str, int] = {}  # reservation → the amount it reserved from each block
        self.returns: list[Settle | Release] = []
        self.next_sweep = 1 << 62
        self.local = 0  # requests admitted here, without Redis (for tests and metrics)

    # --- the hot path ------------------------------------------------------------------------------------

    def admit(self, ask: Ask) -> Answer | None:
        """Admit `ask` on leases alone, or None when one of its windows or budgets has none to spend."""
        now = now_ms()
        if now >= self.next_sweep:
            self.sweep(now)
        windows = self.windows
        for window in ask.windows:
            lease = windows.get(window.key)
            if lease is None:
                return None
            if window.rpm:
                units = lease.units
                if units and units[0][0] <= now:
                    self._give_back(window.key, lease, now)
                if not units:
                    return None
            if window.tpm and (lease.ends <= now or lease.tokens_left <= window.tpm // HEADROOM):
                return None
        blocks: list[BudgetLease] = []
        reserve = ask.reserve
        for budget in ask.budgets:
            block = self.budgets.get((ask.month, budget.key))
            if block is None or block.ends <= now or block.available < max(reserve, 1):
                return None
            blocks.append(block)
        # Everything is covered: spend.
        states = []
        for window in ask.windows:
            lease = windows[window.key]
            if window.rpm:
                lease.units.popleft()
                lease.spent += 1
            states.append(self.state(window, lease, now))
        if blocks:
            for block in blocks:
                block.available -= reserve
                block.in_flight += 1
                block.admitted += 1
            self.holds[ask.reservation] = blocks
            self.reserved[ask.reservation] = reserve
        self.local += 1
        return Answer(True, "", 0, tuple(states))

    @staticmethod
    def state(window: Window, lease: WindowLease, now: int) -> WindowState:
        """The window as this process sees it: Redis's last answer, with the requests it holds to spend."""
        elapsed = now - lease.seen_at
        return WindowState(
            lease.rpm_left + len(lease.units) if window.rpm else 0,
            max(0, lease.reset - elapsed) if window.rpm else 0,
            max(0, lease.tokens_left) if window.tpm else 0,
            max(0, lease.tokens_reset - elapsed) if window.tpm else 0,
        )

    def settle(self, settle: Settle) -> Settle:
        """What `settle` changes here (tpm views, blocks); returns the settlement Redis must book."""
        for key in settle.windows:
            lease = self.windows.get(key)
            if lease is not None:
                lease.tokens_left -= settle.tokens
        blocks = self.holds.pop(settle.reservation, None)
        if blocks is None:
            return settle
        reserved = self.reserved.pop(settle.reservation)
        for block in blocks:
            block.available += reserved - settle.cost
            block.in_flight -= 1
            if block.in_flight == 0 and block.ends <= now_ms():
                self._close(block)
        # Reserved from blocks, not in Redis: Redis books the cost (and the tokens) and holds nothing.
        return Settle(settle.windows, settle.tokens, settle.budgets, settle.month, settle.reservation,
                      settle.cost, 0)  # fmt: skip

    # --- grants and ends ---------------------------------------------------------------------------------

    def wants(self, ask: Ask) -> list[int]:
        """The leases to ask Redis for with `ask` (requests per window, then nano-USD per budget): for what
        has less than half a lease left here, counting what earlier asks may still bring. Hand the list
        back to `granted` or `ungranted`."""
        wanted = []
        for window in ask.windows:
            lease = self.windows.get(window.key)
            if lease is None:
                lease = self.windows[window.key] = WindowLease()
            want = 0
            if window.rpm and 2 * (len(lease.units) + lease.pending) < lease.want:
                want = lease.want = min(MAX_UNITS, max(MIN_UNITS, 2 * lease.spent))
                lease.spent = 0
                lease.pending += want
            wanted.append(want)
        now = now_ms()
        for budget in ask.budgets:
            at = (ask.month, budget.key)
            block = self.budgets.get(at)
            want = 0
            low = block is None or block.ends <= now or 2 * block.available < block.granted
            if low and at not in self.asking:
                requests = MIN_UNITS if block is None else min(MAX_UNITS, max(MIN_UNITS, 2 * block.admitted))
                want = max(ask.reserve, 1) * requests
                self.asking.add(at)
            wanted.append(want)
        return wanted

    def ungranted(self, ask: Ask, wanted: list[int]) -> None:
        """The asks of `wanted` were answered with nothing (refused, or Redis failed)."""
        self.granted(ask, wanted, 0, None, "", [0] * len(wanted))

    def granted(
        self,
        ask: Ask,
        wanted: list[int],
        sent_at: int,
        states: tuple[WindowState, ...] | None,
        member: str,
        grants: list[int],
    ) -> None:
        """Record what Redis granted with the admit of `ask` (sent at `sent_at`, by our clock), and the
        window counts it answered (`states`: None when it admitted nothing)."""
        ends = sent_at + LEASE_MS
        now = now_ms()
        for i, window in enumerate(ask.windows):
            lease = self.windows.get(window.key)
            if lease is None:
                lease = self.windows[window.key] = WindowLease()
            lease.pending = max(0, lease.pending - wanted[i])
            grant = grants[i]
            if grant:
                lease.units.extend((ends, f"{member}#{k}") for k in range(1, grant + 1))
            if states is not None:
                state = states[i]
                lease.rpm_left = state.requests_remaining
                lease.reset = state.requests_reset_ms
                lease.tokens_left = state.tokens_remaining
                lease.tokens_reset = state.tokens_reset_ms
                lease.seen_at = now
                lease.ends = ends
        for j, budget in enumerate(ask.budgets):
            at = (ask.month, budget.key)
            if wanted[len(ask.windows) + j]:
                self.asking.discard(at)
            grant = grants[len(ask.windows) + j]
            if grant:
                old = self.budgets.get(at)
                block = BudgetLease(budget.key, ask.month, member + "#b", grant, ends)
                if old is not None:
                    old.ends = 0
                    if old.in_flight == 0:
                        self._close(old)
                self.budgets[at] = block
        if any(grants):
            self.next_sweep = min(self.next_sweep, ends)

    def sweep(self, now: int) -> None:
        """Give back what has ended: unspent requests, and blocks with nothing in flight."""
        upcoming = 1 << 62
        for key, lease in list(self.windows.items()):
            units = lease.units
            while units and units[0][0] <= now:
                self._give_back(key, lease, now)
            if units:
                upcoming = min(upcoming, units[0][0])
            elif lease.ends <= now - LEASE_MS:
                del self.windows[key]  # idle: its tpm view is stale too
            else:
                upcoming = min(upcoming, max(lease.ends, now) + LEASE_MS)
        for at, block in list(self.budgets.items()):
            if block.ends <= now:
                del self.budgets[at]
                block.ends = 0
                if block.in_flight == 0:
                    self._close(block)
            else:
                upcoming = min(upcoming, block.ends)
        self.next_sweep = upcoming

    def _give_back(self, key: str, lease: WindowLease, now: int) -> None:
        """The units of `key` that have ended (the oldest ones, which end first): removed from the log."""
        units = lease.units
        members = []
        while units and units[0][0] <= now:
            members.append(units.popleft()[1])
        lease.rpm_left += len(members)  # free in Redis again
        self._release(key, members)

    def _release(self, key: str, members: list[str]) -> None:
        for at in range(0, len(members), RELEASE_CHUNK):  # a script unpacks at most ~8,000 arguments
            self.returns.append(Release(key, members[at : at + RELEASE_CHUNK]))

    def _close(self, block: BudgetLease) -> None:
        self.returns.append(Settle((), 0, (block.key,), block.month, block.reservation, 0, block.granted))

    def close(self) -> None:
        """Give back every lease (the process is stopping; its requests have ended or never will)."""
        for key, lease in self.windows.items():
            if lease.units:
                self._release(key, [member for _, member in lease.units])
        self.windows.clear()
        blocks = {id(b): b for b in self.budgets.values()}
        blocks.update((id(b), b) for held in self.holds.values() for b in held)
        for block in blocks.values():
            self._close(block)
        self.budgets.clear()
        self.holds.clear()
        self.reserved.clear()

    def take_returns(self) -> list[Settle | Release]:
        returns, self.returns = self.returns, []
        return returns
