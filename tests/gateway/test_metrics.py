"""Metrics are aggregated per request and moved into prometheus-client in bulk: the exposition must be
exactly what per-request prometheus-client calls would have produced."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.metrics import LATENCY_BUCKETS, Metrics
from providers.base import Usage
from tests.support import Gateway

SECONDS = [0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.2, 0.25, 7.0, 119.0, 500.0]


def _samples(text: bytes, prefix: str) -> list[str]:
    return [line for line in text.decode().splitlines() if line.startswith(prefix) and "_created" not in line]


def test_bulk_observations_equal_one_by_one() -> None:
    metrics = Metrics()
    reference = CollectorRegistry()
    latency = Histogram(
        "tollgate_request_duration_seconds", "", ("llm", "app", "status"), buckets=LATENCY_BUCKETS,
        registry=reference,
    )  # fmt: skip
    requests = Counter("tollgate_requests", "", ("llm", "app", "status"), registry=reference)
    tokens = Counter("tollgate_tokens", "", ("llm", "app", "kind"), registry=reference)
    for i, seconds in enumerate(SECONDS):
        status = 200 if i % 3 else 429
        usage = Usage(10 + i, i) if status == 200 else None
        metrics.observe("gpt", "app", status, seconds, usage, 0.0)
        if i == 4:
            metrics.flush()  # flushes in between change nothing
        latency.labels("gpt", "app", str(status)).observe(seconds)
        requests.labels("gpt", "app", str(status)).inc()
        if usage:
            tokens.labels("gpt", "app", "prompt").inc(usage.input_tokens)
            tokens.labels("gpt", "app", "response").inc(usage.output_tokens)
    ours, expected = metrics.render()[0], generate_latest(reference)
    for prefix in ("tollgate_request_duration_seconds", "tollgate_requests_total", "tollgate_tokens_total"):
        assert _samples(ours, prefix) == _samples(expected, prefix)
    assert _samples(ours, "tollgate_request_duration_seconds_count")  # not vacuous


def test_metrics_endpoint_counts_requests_tokens_and_cost(gateway: Gateway) -> None:
    client = gateway.openai()
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    text = httpx.get(gateway.url + "/metrics").text
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"
    }
    assert lines['tollgate_requests_total{app="app-one",llm="gpt",status="200"}'] == 3
    assert lines['tollgate_request_duration_seconds_count{app="app-one",llm="gpt",status="200"}'] == 3
    assert lines['tollgate_upstream_duration_seconds_count{llm="gpt"}'] == 3
    assert lines['tollgate_tokens_total{app="app-one",kind="prompt",llm="gpt"}'] > 0
    assert lines['tollgate_cost_usd_total{app="app-one",llm="gpt"}'] > 0
    assert lines["tollgate_snapshot_version"] >= 1
