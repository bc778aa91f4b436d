"""Routes: which target serves the next attempt, and which targets are cooling down.

A route's `Target`s are compiled into the snapshot; what changes per request (smooth weighted round robin
state, requests in flight, time-to-first-byte averages, recent failures, cool-downs) lives in a
`RouteState` per route, kept by the process's `Routing` across snapshots. Tiers come first: a target of
priority 1 is chosen only when every tier-0 target has been tried or cools down. Nothing here does I/O.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.errors import UpstreamStatus, UpstreamTimeout, UpstreamUnavailable

if TYPE_CHECKING:
    from gateway.errors import TollgateError

EXPLORE = 0.1  # `latency`: the share of picks that try another target than the fastest
EWMA_WEIGHT = 0.3  # `latency`: the weight of the newest time to first byte
NEVER_RETRIED = frozenset({400, 401, 403, 404, 422})


class Target(msgspec.Struct, frozen=True):
    index: int  # its place in the route's list
    llm: str
    model: str
    weight: int
    priority: int


class TargetHealth:
    __slots__ = ("cooled_until", "current", "ewma_s", "failures", "inflight")

    def __init__(self) -> None:
        self.current = 0  # smooth weighted round robin
        self.inflight = 0
        self.ewma_s: float | None = None
        self.failures: deque[float] = deque()
        self.cooled_until = 0.0


class RouteState:
    """One route's targets as this process has seen them."""

    def __init__(self) -> None:
        self.targets: dict[int, TargetHealth] = {}
        self.turn = 0  # round_robin
        self.children: dict[tuple[str, str], Any] = {}  # the metrics' labelled children, made once

    def of(self, target: Target) -> TargetHealth:
        health = self.targets.get(target.index)
        if health is None:
            health = self.targets[target.index] = TargetHealth()
        return health

    def pick(
        self, strategy: str, targets: Iterable[Target], tried: set[int], now: float, rng: random.Random
    ) -> Target | None:
        """The next target: untried, not cooling down, lowest tier first; None when there is none."""
        ready = [t for t in targets if t.index not in tried and self.of(t).cooled_until <= now]
        if not ready:
            return None
        tier = min(t.priority for t in ready)
        ready = [t for t in ready if t.priority == tier]
        if len(ready) == 1:
            return ready[0]
        if strategy == "round_robin":
            chosen = ready[self.turn % len(ready)]
            self.turn += 1
            return chosen
        if strategy == "least_busy":
            fewest = min(self.of(t).inflight for t in ready)
            return self._weighted([t for t in ready if self.of(t).inflight == fewest])
        if strategy == "latency":
            unmeasured = [t for t in ready if self.of(t).ewma_s is None]
            if unmeasured:
                return unmeasured[0]
            if rng.random() < EXPLORE:
                return rng.choice(ready)
            return min(ready, key=lambda t: self.of(t).ewma_s or 0.0)
        return self._weighted(ready)  # weighted, and priority within a tier

    def _weighted(self, ready: list[Target]) -> Target:
        """Smooth weighted round robin (nginx's): 3:1 is 3:1 over every 4 picks, interleaved."""
        total = 0
        best: Target | None = None
        for target in ready:
            health = self.of(target)
            weight = max(target.weight, 0)
            health.current += weight
            total += weight
            if best is None or health.current > self.of(best).current:
                best = target
        assert best is not None
        self.of(best).current -= total
        return best

    def succeeded(self, target: Target, first_byte_s: float) -> None:
        health = self.of(target)
        health.failures.clear()
        health.ewma_s = (
            first_byte_s
            if health.ewma_s is None
            else EWMA_WEIGHT * first_byte_s + (1 - EWMA_WEIGHT) * health.ewma_s
        )

    def failed(self, target: Target, now: float, fails: int, window_s: float, duration_s: float) -> bool:
        """Count a failure; True when it makes the target cool down (its `fails`-th within `window_s`)."""
        failures = self.of(target).failures
        failures.append(now)
        while failures and failures[0] <= now - window_s:
            failures.popleft()
        if len(failures) >= fails:
            failures.clear()
            self.of(target).cooled_until = now + duration_s
            return True
        return False

    def next_ready(self, targets: Iterable[Target], now: float) -> float:
        """Seconds until the first cooling target is back."""
        return max(0.0, min((self.of(t).cooled_until - now for t in targets), default=0.0))


class Routing:
    """Every route's state in this process (outlives snapshots; a route is known by its slug)."""

    def __init__(self, seed: int | None = None) -> None:
        self.routes: dict[str, RouteState] = {}
        self.rng = random.Random(seed)

    def state(self, slug: str) -> RouteState:
        state = self.routes.get(slug)
        if state is None:
            state = self.routes[slug] = RouteState()
        return state


def failure(error: TollgateError) -> int | str:
    """What an upstream failure is for `retry.on` and `fallback.on`: `timeout`, `connect`,
    `context_length`, `content_filter`, or the HTTP status."""
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamUnavailable):
        return "connect"
    if isinstance(error, UpstreamStatus):
        text = error.message.lower()
        code = (error.code or "").lower()
        if code == "context_length_exceeded" or "prompt is too long" in text or _gemini_tokens(code, text):
            return "context_length"
        if code in ("content_filter", "content_policy_violation") or "content management policy" in text:
            return "content_filter"
        return error.status
    return error.status


def _gemini_tokens(code: str, text: str) -> bool:
    """Gemini's context-window refusal: INVALID_ARGUMENT about the input's token count."""
    return ("invalid_argument" in code or "invalid_argument" in text) and "token" in text
