"""Target choice (pipeline/routing.py) without sockets: strategies, tiers, cool-downs, failure kinds."""

from __future__ import annotations

import random
from collections import Counter

from gateway.errors import UpstreamStatus, UpstreamTimeout, UpstreamUnavailable
from pipeline.routing import RouteState, Target, failure

A, B, C = Target(0, "a", "m", 1, 0), Target(1, "b", "m", 1, 0), Target(2, "c", "m", 1, 1)
RNG = random.Random(7)


def test_latency_tries_every_target_then_prefers_the_fastest_and_still_explores() -> None:
    state = RouteState()
    first = [state.pick("latency", (A, B), set(), 0.0, RNG) for _ in range(1)]
    assert first == [A]  # unmeasured targets go first
    state.succeeded(A, 0.050)
    assert state.pick("latency", (A, B), set(), 0.0, RNG) is B
    state.succeeded(B, 0.010)
    picks = Counter(state.pick("latency", (A, B), set(), 0.0, RNG) for _ in range(1000))
    assert 850 < picks[B] < 990 and picks[A] > 10  # mostly the fastest, ~5% exploring the other


def test_least_busy_picks_the_fewest_in_flight() -> None:
    state = RouteState()
    state.of(A).inflight = 3
    state.of(B).inflight = 1
    assert state.pick("least_busy", (A, B), set(), 0.0, RNG) is B
    state.of(B).inflight = 3
    assert {state.pick("least_busy", (A, B), set(), 0.0, RNG) for _ in range(4)} == {A, B}  # ties: both


def test_tiers_cool_downs_and_what_was_tried() -> None:
    state = RouteState()
    assert state.pick("weighted", (A, B, C), {0, 1}, 0.0, RNG) is C  # tier 1 once tier 0 is tried
    assert state.failed(A, 10.0, 2, 60, 30) is False
    assert state.failed(A, 11.0, 2, 60, 30) is True  # the second failure within the window
    assert state.pick("weighted", (A, B), set(), 12.0, RNG) is B
    assert state.next_ready((A, B, C), 12.0) == 0.0
    assert state.pick("weighted", (A,), set(), 40.0, RNG) is None  # still cooling at 40 s
    assert state.pick("weighted", (A,), set(), 41.5, RNG) is A
    assert state.failed(B, 0.0, 2, 5, 30) is False
    assert state.failed(B, 6.0, 2, 5, 30) is False  # the first one left the window


def test_failures_are_named_as_retry_on_and_fallback_on_name_them() -> None:
    assert failure(UpstreamTimeout("t")) == "timeout"
    assert failure(UpstreamUnavailable("u")) == "connect"
    assert failure(UpstreamStatus(503, "busy")) == 503
    assert failure(UpstreamStatus(400, "x", code="context_length_exceeded")) == "context_length"
    assert (
        failure(UpstreamStatus(400, "prompt is too long: 210000 tokens > 200000 maximum")) == "context_length"
    )
    gemini = UpstreamStatus(
        400, "The input token count (1200000) exceeds the maximum", code="INVALID_ARGUMENT"
    )
    assert failure(gemini) == "context_length"
    assert failure(UpstreamStatus(400, "flagged", code="content_filter")) == "content_filter"
