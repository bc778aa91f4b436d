"""Prometheus metrics, kept off the hot path.

A request adds its numbers to plain per-(llm, app, status) accumulators (a dict lookup, a bisect and a
few additions); `flush` moves them into prometheus-client, once a second and before every scrape. Calling
prometheus-client for each request (locks, label lookups, a Python loop over the buckets) cost 6% of the
gateway's instructions per request (bench/README.md).

With several workers prometheus-client runs in multiprocess mode (its files live in
PROMETHEUS_MULTIPROC_DIR, set by the supervisor), and any worker's /metrics shows the sum of all; the
other workers' last second may not be in it yet.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from providers.base import Usage

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)
_LABELS = ("llm", "app", "status")


class _Pending:
    """What the requests of one (llm, app, status) added since the last flush."""

    __slots__ = ("buckets", "cache_read", "cache_write", "cost", "count", "prompt", "response", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.prompt = self.response = self.cache_read = self.cache_write = 0
        self.cost = 0.0


class _PendingUpstream:
    __slots__ = ("buckets", "seconds")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("tollgate_requests", "Requests answered", _LABELS, registry=r)
        self.latency = Histogram(
            "tollgate_request_duration_seconds", "Time to the end of the answer", _LABELS,
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_latency = Histogram(
            "tollgate_upstream_duration_seconds", "Time to the upstream's response headers", ("llm",),
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "tollgate_tokens", "Tokens, as the upstream reported them", ("llm", "app", "kind"), registry=r
        )
        self.cost = Counter("tollgate_cost_usd", "Cost in USD", ("llm", "app"), registry=r)
        self.analytics_queue = Gauge(
            "tollgate_analytics_queue_depth", "Records waiting to be written", registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.analytics_written = Counter("tollgate_analytics_written", "Records written", registry=r)
        self.analytics_dropped = Counter(
            "tollgate_analytics_dropped", "Records dropped (should stay 0)", registry=r
        )
        self.snapshot_version = Gauge(
            "tollgate_snapshot_version", "Config version being served", registry=r, multiprocess_mode="max"
        )
        self.snapshot_age = Gauge(
            "tollgate_snapshot_age_seconds",
            "Seconds since the served snapshot was built",
            registry=r,
            multiprocess_mode="max",
        )
        self.store_up = Gauge(
            "tollgate_store_up",
            "1 when the store answered the last config poll",
            registry=r,
            multiprocess_mode="min",
        )
        self.counters_degraded = Gauge(
            "tollgate_counters_degraded",
            "1 while Redis is configured but unreachable: limits and budgets use this host's counters",
            registry=r, multiprocess_mode="max",
        )  # fmt: skip
        self.cache_lookups = Counter(
            "tollgate_cache_lookups", "Response cache lookups by outcome", ("outcome",), registry=r
        )
        self.cache_errors = Counter(
            "tollgate_cache_errors",
            "Response cache lookups and stores that failed (served as misses)",
            registry=r,
        )
        self.route_attempts = Counter(
            "tollgate_route_attempts",
            "Upstream attempts of calls to routes, by target and outcome",
            ("route", "target", "outcome"),
            registry=r,
        )
        self.route_failovers = Counter(
            "tollgate_route_failovers", "Route calls that moved to another attempt", ("route",), registry=r
        )
        self.route_cooldowns = Counter(
            "tollgate_route_cooldowns",
            "Times a route's target started to cool down",
            ("route", "target"),
            registry=r,
        )
        self.route_target_healthy = Gauge(
            "tollgate_route_target_healthy",
            "1 when a route's target is not cooling down (as this process sees it)",
            ("route", "target"),
            registry=r,
            multiprocess_mode="min",
        )
        self.counters_failovers = Counter(
            "tollgate_counters_failovers",
            "Times the counters fell back from Redis to this host's",
            registry=r,
        )
        self.counters_leased = Counter(
            "tollgate_counters_leased",
            "Requests admitted on a lease of the Redis counters, without a round trip to Redis",
            registry=r,
        )
        self.leased: Callable[[], int] | None = None  # the Redis counters' own count, read at each flush
        self._leased = 0
        self.blocked = Counter(
            "tollgate_filter_blocks", "Requests and answers blocked, by filter", ("llm", "filter"), registry=r
        )
        self.plugin_restarts = Gauge(
            "tollgate_plugin_restarts", "Times a plugin process was restarted", ("plugin",), registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.plugin_failures = Gauge(
            "tollgate_plugin_failures", "Plugin calls that failed or passed their deadline", ("plugin",),
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self._pending: dict[tuple[str, str, int], _Pending] = {}
        self._pending_upstream: dict[str, _PendingUpstream] = {}

    def observe(
        self, llm: str, app: str, status: int, seconds: float, usage: Usage | None, cost: float
    ) -> None:
        key = (llm, app, status)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
        pending.count += 1
        pending.seconds += seconds
        pending.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        if usage is not None:
            pending.prompt += usage.input_tokens
            pending.response += usage.output_tokens
            pending.cache_read += usage.cache_read_tokens
            pending.cache_write += usage.cache_write_tokens
        pending.cost += cost

    def observe_upstream(self, llm: str, seconds: float) -> None:
        pending = self._pending_upstream.get(llm)
        if pending is None:
            pending = self._pending_upstream[llm] = _PendingUpstream()
        pending.seconds += seconds
        pending.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def flush(self) -> None:
        """Move what the requests added into prometheus-client."""
        pending, self._pending = self._pending, {}
        for (llm, app, status), p in pending.items():
            self.requests.labels(llm, app, str(status)).inc(p.count)
            _add_observations(self.latency.labels(llm, app, str(status)), p.buckets, p.seconds)
            for kind, tokens in (
                ("prompt", p.prompt), ("response", p.response),
                ("cache_read", p.cache_read), ("cache_write", p.cache_write),
            ):  # fmt: skip
                if tokens:
                    self.tokens.labels(llm, app, kind).inc(tokens)
            if p.cost:
                self.cost.labels(llm, app).inc(p.cost)
        upstream, self._pending_upstream = self._pending_upstream, {}
        for llm, u in upstream.items():
            _add_observations(self.upstream_latency.labels(llm), u.buckets, u.seconds)
        if self.leased is not None:
            leased = self.leased()
            self.counters_leased.inc(leased - self._leased)
            self._leased = leased

    def render(self) -> tuple[bytes, str]:
        self.flush()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _add_observations(histogram: Histogram, buckets: list[int], seconds: float) -> None:
    """Add many observations at once: what `observe` does per value, with counts.

    prometheus-client has no public call for it; its Histogram keeps one (non-cumulative) value per
    bucket and one for the sum. tests/gateway/test_metrics.py checks the exposition against `observe`.
    """
    histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
    histogram._sum.inc(seconds)
    for i, count in enumerate(buckets):
        if count:
            histogram._buckets[i].inc(count)
