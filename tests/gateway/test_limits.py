"""Rate limits and budgets through real gateways: exact under 200 concurrent requests, in one process,
across four workers, and across two gateways sharing the real Redis of this machine."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from tests.support import APP_KEY, OTHER_KEY, base_config, free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
PRICE_IN, PRICE_OUT = 0.15e-6, 0.60e-6  # base_config's gpt-4o-mini, USD per token


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


needs_redis = pytest.mark.skipif(
    not _redis_up() and not os.environ.get("CI"), reason="no Redis at 127.0.0.1:6379 (CI starts one)"
)


def _config(upstream_url: str, **app: Any) -> dict[str, Any]:
    config = base_config(upstream_url)
    config["apps"][0].update(app)
    return config


def _body(text: str = "hello", max_tokens: int = 20) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}


async def _fire(
    urls: list[str], n: int, key: str = APP_KEY, body: dict[str, Any] | None = None
) -> list[httpx.Response]:
    """`n` chat requests at once, spread over `urls` round robin."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        calls = [
            client.post(
                f"{urls[i % len(urls)]}/openai/gpt/v1/chat/completions",
                json=body or _body(f"question {i}"),
                headers={"authorization": f"Bearer {key}"},
            )
            for i in range(n)
        ]
        return list(await asyncio.gather(*calls))


def fire(urls: list[str], n: int, **kwargs: Any) -> list[httpx.Response]:
    return asyncio.run(_fire(urls, n, **kwargs))


def _statuses(responses: list[httpx.Response]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in responses:
        out[r.status_code] = out.get(r.status_code, 0) + 1
    return out


def _assert_exactly_30_of_200(responses: list[httpx.Response]) -> None:
    assert _statuses(responses) == {200: 30, 429: 170}
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-limit-requests"] == "30"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def _redis_prefix_flush() -> None:
    """Each test's gateways use fresh app ids in a fresh db, but Redis outlives them: start clean."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter("{tollgate:}*"):
        client.delete(key)
    client.close()


# --- rate limits ------------------------------------------------------------------------------------------


def test_rpm_admits_exactly_its_limit_under_200_concurrent(start_gateway, upstream, upstream_url):
    gw = start_gateway(_config(upstream_url, rate_limit={"rpm": 30}))
    _assert_exactly_30_of_200(fire([gw.url], 200))
    assert len(upstream.requests) == 30
    ok = gw.records(expect=200)
    assert sum(1 for r in ok if r["status_code"] == 429) == 170


def test_rpm_is_exact_across_four_workers(start_gateway, upstream, upstream_url):
    gw = start_gateway(_config(upstream_url, rate_limit={"rpm": 30}), "--workers", "4")
    _assert_exactly_30_of_200(fire([gw.url], 200))
    assert len(upstream.requests) == 30


@needs_redis
def test_rpm_is_exact_across_two_gateways_sharing_redis(start_gateway, upstream, upstream_url):
    _redis_prefix_flush()
    config = _config(upstream_url, rate_limit={"rpm": 30})
    one = start_gateway(config, "--redis", REDIS_URL)
    two = start_gateway(config, "--redis", REDIS_URL, "--workers", "2")
    _assert_exactly_30_of_200(fire([one.url, two.url], 200))
    assert len(upstream.requests) == 30
    assert httpx.get(f"{one.url}/readyz").json()["counters"] == "redis"


def test_every_answer_carries_the_rate_limit_headers(start_gateway, upstream, upstream_url):
    gw = start_gateway(_config(upstream_url, rate_limit={"rpm": 5, "tpm": 100000}))
    response = httpx.post(
        f"{gw.url}/openai/gpt/v1/chat/completions",
        json=_body(),
        headers={"authorization": f"Bearer {APP_KEY}"},
    )
    assert response.status_code == 200
    h = response.headers
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("5", "4")
    assert h["x-ratelimit-limit-tokens"] == "100000" and h["x-ratelimit-remaining-tokens"] == "100000"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    with httpx.stream(
        "POST",
        f"{gw.url}/openai/gpt/v1/chat/completions",
        json={**_body(), "stream": True},
        headers={"authorization": f"Bearer {APP_KEY}"},
    ) as streamed:
        assert streamed.headers["x-ratelimit-remaining-requests"] == "3"
        streamed.read()


def test_tpm_refuses_once_the_window_holds_its_tokens(start_gateway, upstream, upstream_url):
    gw = start_gateway(_config(upstream_url, rate_limit={"tpm": 20}))
    first = fire([gw.url], 1, body=_body("a question with some words in it"))[0]
    assert first.status_code == 200 and first.json()["usage"]["total_tokens"] >= 20
    time.sleep(0.2)  # the first call's tokens are booked when its answer has ended
    second = fire([gw.url], 1)[0]
    assert second.status_code == 429
    assert "tokens per minute" in second.json()["error"]["message"]
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"


def test_an_llm_rate_limit_counts_every_app(start_gateway, upstream, upstream_url):
    config = base_config(upstream_url)
    config["llms"][0]["rate_limit"] = {"rpm": 3}
    config["apps"][1]["llms"] = ["gpt"]
    gw = start_gateway(config)
    statuses = [r.status_code for r in fire([gw.url], 2)] + [
        r.status_code for r in fire([gw.url], 2, key=OTHER_KEY)
    ]
    assert sorted(statuses) == [200, 200, 200, 429]
    refused = next(r for r in fire([gw.url], 1, key=OTHER_KEY))
    assert "LLM 'gpt'" in refused.json()["error"]["message"]


# --- budgets ----------------------------------------------------------------------------------------------


def _reservation(body: dict[str, Any]) -> float:
    """The most one request reserves (pipeline/limits.py: body bytes + max_tokens, at the model's rates)."""
    import orjson

    return len(orjson.dumps(body)) * PRICE_IN + body["max_tokens"] * PRICE_OUT


def _check_budget(gw_urls: list[str], records_of: list[Any], budget: float) -> None:
    """Waves of 200 concurrent calls until the budget refuses every call of a wave: the spend then has
    reached the budget and passed it by one reservation at most."""
    body = _body("a question of a few words", max_tokens=16)
    sent = 0
    for _ in range(20):
        responses = fire(gw_urls, 200, body=body)
        sent += 200
        statuses = _statuses(responses)
        assert set(statuses) <= {200, 402}, statuses
        if 200 not in statuses:
            break
        time.sleep(0.2)  # the wave's calls settle: their real cost is booked, reservations released
    else:
        raise AssertionError("the budget never refused a whole wave")
    assert responses[0].json()["error"]["code"] == "budget_exceeded"
    time.sleep(0.5)
    records = [r for gw in records_of for r in gw.records(expect=None)]
    assert len(records) == min(sent, 10000 * len(records_of))
    spent = sum(r["cost"] for r in records)
    assert budget <= spent <= budget + _reservation(body), (spent, budget)


def test_a_budget_is_never_overshot_by_more_than_one_reservation(start_gateway, upstream, upstream_url):
    budget = 0.0002
    gw = start_gateway(_config(upstream_url, monthly_budget_usd=budget))
    _check_budget([gw.url], [gw], budget)


def test_a_budget_holds_across_four_workers(start_gateway, upstream, upstream_url):
    budget = 0.0002
    gw = start_gateway(_config(upstream_url, monthly_budget_usd=budget), "--workers", "4")
    _check_budget([gw.url], [gw], budget)


@needs_redis
def test_a_budget_holds_across_two_gateways_sharing_redis(start_gateway, upstream, upstream_url):
    _redis_prefix_flush()
    budget = 0.0002
    config = _config(upstream_url, monthly_budget_usd=budget)
    one = start_gateway(config, "--redis", REDIS_URL)
    two = start_gateway(config, "--redis", REDIS_URL)
    _check_budget([one.url, two.url], [one, two], budget)


def test_the_first_call_goes_through_even_when_its_estimate_exceeds_the_budget(
    start_gateway, upstream, upstream_url
):
    gw = start_gateway(_config(upstream_url, monthly_budget_usd=0.000001))
    first = fire([gw.url], 1, body=_body(max_tokens=4000))[0]
    assert first.status_code == 200
    time.sleep(0.2)
    assert fire([gw.url], 1)[0].status_code == 402


def test_an_llm_budget_and_its_state_survive_a_restart(start_gateway, upstream, upstream_url, tmp_path):
    config = base_config(upstream_url)
    config["llms"][0]["monthly_budget_usd"] = 0.000005
    gw = start_gateway(config)
    assert fire([gw.url], 1)[0].status_code == 200
    time.sleep(0.2)
    refused = fire([gw.url], 1)[0]
    assert refused.status_code == 402 and "LLM 'gpt'" in refused.json()["error"]["message"]
    assert gw.stop() == 0
    again = start_gateway(None, "--db", gw.db_url)  # same database, no bootstrap
    assert fire([again.url], 1)[0].status_code == 402


# --- Redis going away --------------------------------------------------------------------------------------


def test_without_redis_the_gateway_serves_on_local_counters_and_says_so(
    start_gateway, upstream, upstream_url
):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens here once the socket is closed
    gw = start_gateway(_config(upstream_url, rate_limit={"rpm": 3}), "--redis", f"redis://127.0.0.1:{dead}/0")
    assert _statuses(fire([gw.url], 5)) == {200: 3, 429: 2}
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert "tollgate_counters_degraded 1.0" in metrics
    assert "redis unavailable" in gw.output().lower()
    ready = httpx.get(f"{gw.url}/readyz").json()
    assert ready["counters"] == "local" and any("Redis is unreachable" in w for w in ready["warnings"])


class RedisProxy:
    """A TCP proxy to the real Redis, on its own event loop thread, that can be cut and restored."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.transports: list[asyncio.BaseTransport] = []

    def _do(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(5)

    def start(self) -> None:
        self.server = self._do(asyncio.start_server(self._serve, "127.0.0.1", self.port))

    def cut(self) -> None:
        async def cut() -> None:
            assert self.server is not None
            self.server.close()
            for transport in self.transports:
                transport.abort()
            self.transports.clear()

        self._do(cut())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self.transports += (writer.transport, up_writer.transport)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@needs_redis
def test_redis_going_away_mid_traffic_degrades_to_local_counters_and_back(
    start_gateway, upstream, upstream_url
):
    _redis_prefix_flush()
    proxy = RedisProxy()
    proxy.start()
    try:
        gw = start_gateway(
            _config(upstream_url, rate_limit={"rpm": 1000}), "--redis", f"redis://127.0.0.1:{proxy.port}/0"
        )
        assert _statuses(fire([gw.url], 20)) == {200: 20}
        assert httpx.get(f"{gw.url}/readyz").json()["counters"] == "redis"
        # rpm 1000 is far away: the first admits brought back leases, which the next requests spend
        assert [fire([gw.url], 1)[0].status_code for _ in range(3)] == [200] * 3
        metrics = httpx.get(f"{gw.url}/metrics").text
        leased = re.search(r"^tollgate_counters_leased_total (\S+)$", metrics, re.MULTILINE)
        assert leased is not None and float(leased.group(1)) > 0
        proxy.cut()
        assert _statuses(fire([gw.url], 20)) == {200: 20}  # no request fails because Redis went away
        assert httpx.get(f"{gw.url}/readyz").json()["counters"] == "local"
        assert "tollgate_counters_degraded 1.0" in httpx.get(f"{gw.url}/metrics").text
        proxy.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the next call after the retry interval tries Redis again
            assert fire([gw.url], 1)[0].status_code == 200
            if httpx.get(f"{gw.url}/readyz").json()["counters"] == "redis":
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the gateway did not go back to Redis")
        assert "tollgate_counters_degraded 0.0" in httpx.get(f"{gw.url}/metrics").text
        assert "is back" in gw.output()
    finally:
        proxy.close()


def test_listing_models_costs_no_quota(start_gateway, upstream, upstream_url):
    gw = start_gateway(_config(upstream_url, rate_limit={"rpm": 1}))
    client = gw.openai()
    for _ in range(3):
        assert client.models.list().data
    assert fire([gw.url], 1)[0].status_code == 200
