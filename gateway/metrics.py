"""Prometheus metrics. With several workers prometheus-client runs in multiprocess mode (its files live in
PROMETHEUS_MULTIPROC_DIR, set by the supervisor), and any worker's /metrics shows the sum of all."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from providers.base import Usage

_LATENCY_BUCKETS = (
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
_Children = tuple[Counter, Histogram, Counter, Counter, Counter, Counter, Counter]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ("llm", "app", "status")
        self.requests = Counter("tollgate_requests", "Requests answered", labels, registry=r)
        self.latency = Histogram(
            "tollgate_request_duration_seconds",
            "Time to the end of the answer",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "tollgate_upstream_duration_seconds",
            "Time to the upstream's response headers",
            ("llm",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "tollgate_tokens", "Tokens, as the upstream reported them", ("llm", "app", "kind"), registry=r
        )
        self.cost = Counter("tollgate_cost_usd", "Cost in USD", ("llm", "app"), registry=r)
        self.analytics_queue = Gauge(
            "tollgate_analytics_queue_depth",
            "Records waiting to be written",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.analytics_written = Counter("tollgate_analytics_written", "Records written", registry=r)
        self.analytics_dropped = Counter(
            "tollgate_analytics_dropped", "Records dropped (should stay 0)", registry=r
        )
        self.snapshot_version = Gauge(
            "tollgate_snapshot_version", "Config version being served", registry=r, multiprocess_mode="max"
        )
        self.unpriced = Counter(
            "tollgate_unpriced", "Answers with usage but no price", ("llm", "model"), registry=r
        )
        # label lookups cost microseconds each; requests reuse the children of their (llm, app, status)
        self._children: dict[tuple[str, str, int], _Children] = {}
        self._upstream: dict[str, Histogram] = {}

    def observe(
        self, llm: str, app: str, status: int, seconds: float, usage: Usage | None, cost: float
    ) -> None:
        key = (llm, app, status)
        children = self._children.get(key) or self._make_children(key)
        requests, latency, prompt, response, cache_read, cache_write, spent = children
        requests.inc()
        latency.observe(seconds)
        if usage is not None:
            prompt.inc(usage.input_tokens)
            response.inc(usage.output_tokens)
            if usage.cache_read_tokens:
                cache_read.inc(usage.cache_read_tokens)
            if usage.cache_write_tokens:
                cache_write.inc(usage.cache_write_tokens)
        if cost:
            spent.inc(cost)

    def observe_upstream(self, llm: str, seconds: float) -> None:
        child = self._upstream.get(llm)
        if child is None:
            child = self._upstream[llm] = self.upstream_latency.labels(llm)
        child.observe(seconds)

    def _make_children(self, key: tuple[str, str, int]) -> _Children:
        llm, app, status = key
        tokens = self.tokens
        children: _Children = (
            self.requests.labels(llm, app, str(status)),
            self.latency.labels(llm, app, str(status)),
            tokens.labels(llm, app, "prompt"),
            tokens.labels(llm, app, "response"),
            tokens.labels(llm, app, "cache_read"),
            tokens.labels(llm, app, "cache_write"),
            self.cost.labels(llm, app),
        )
        if len(self._children) < 100_000:
            self._children[key] = children
        return children

    def render(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
