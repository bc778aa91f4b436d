"""Routes (issue 7): a virtual LLM balanced over targets, with retries, failover, tiers, fallbacks and
cool-downs, against three real mock upstreams, through the OpenAI SDK and raw HTTP where the wire matters."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from mocks.openai import MockOpenAI
from mocks.server import ThreadedServer
from tests.conftest import StartGateway
from tests.support import UPSTREAM_KEY, Gateway, base_config, free_port

ROUTE_KEY = "tg-route-app-key-0001"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def mocks() -> Iterator[dict[str, tuple[ThreadedServer, MockOpenAI]]]:
    servers: dict[str, tuple[ThreadedServer, MockOpenAI]] = {}
    for name in ("a", "b", "c"):
        app = MockOpenAI(api_key=UPSTREAM_KEY)
        server = ThreadedServer(app)
        server.start()
        servers[name] = (server, app)
    yield servers
    for server, _ in servers.values():
        server.stop()


@pytest.fixture
def upstreams(mocks: dict[str, tuple[ThreadedServer, MockOpenAI]]) -> Iterator[dict[str, MockOpenAI]]:
    apps = {name: app for name, (_, app) in mocks.items()}
    for app in apps.values():
        app.reset()
    yield apps
    for app in apps.values():
        app.reset()


def route_config(
    mocks: dict[str, tuple[ThreadedServer, MockOpenAI]],
    timeouts: dict[str, float] | None = None,
    **route: Any,
) -> dict[str, Any]:
    config = base_config(mocks["a"][0].url)
    config["llms"] += [
        {"slug": name, "vendor": "openai", "api_base": server.url + "/v1", "api_key": "$SECRET/UPSTREAM",
         "default_model": "gpt-4o-mini"}
        for name, (server, _) in mocks.items()
    ]  # fmt: skip
    config["llms"].append(
        {"slug": "dead", "vendor": "openai", "api_base": f"http://127.0.0.1:{free_port()}/v1",
         "api_key": "$SECRET/UPSTREAM", "default_model": "gpt-4o-mini"}
    )  # fmt: skip
    for llm in config["llms"]:
        if llm["slug"] in (timeouts or {}):
            llm["timeout_s"] = (timeouts or {})[llm["slug"]]
    config["routes"] = [{"slug": "smart", **route}]
    config["users"].append({"email": "root@example.com", "role": "admin"})
    config["apps"].append(
        {"name": "router", "owner": "root@example.com", "api_key": ROUTE_KEY, "llms": ["smart"]}
    )
    return config


def client(gateway: Gateway, slug: str = "smart") -> openai.OpenAI:
    return gateway.openai(key=ROUTE_KEY, llm=slug)


def call(gateway: Gateway, **kwargs: Any) -> tuple[str, str, Any]:
    """(x-tollgate-target, x-tollgate-attempts, the parsed answer) of one chat call to the route."""
    raw = client(gateway).chat.completions.with_raw_response.create(model="smart", messages=HELLO, **kwargs)
    return raw.headers["x-tollgate-target"], raw.headers["x-tollgate-attempts"], raw.parse()


@pytest.fixture
def start_route(
    start_gateway: StartGateway, mocks: dict[str, tuple[ThreadedServer, MockOpenAI]], upstreams: Any
) -> Any:
    def start(timeouts: dict[str, float] | None = None, **route: Any) -> Gateway:
        return start_gateway(route_config(mocks, timeouts, **route))

    return start


TARGETS = [{"llm": "a", "weight": 3}, {"llm": "b", "weight": 1}]
RETRY = {"attempts": 2, "backoff_ms": 10}


def test_weighted_is_smooth_and_exact(start_route: Any) -> None:
    """3:1 is 3:1 over every 4 calls (smooth weighted round robin), and each answer names its target."""
    gateway = start_route(strategy="weighted", targets=TARGETS)
    picks = [call(gateway)[0] for _ in range(12)]
    for start in range(0, 12, 4):
        assert Counter(picks[start : start + 4]) == {"a": 3, "b": 1}, picks
    assert picks == ["a", "a", "b", "a"] * 3  # interleaved, the same way every time
    records = gateway.records(expect=12)
    assert {(r["route"], r["attempt"], r["status_code"]) for r in records} == {("smart", 1, 200)}
    assert Counter(r["llm_slug"] for r in records) == {"a": 9, "b": 3}


def test_round_robin_and_least_busy_spread_the_calls(
    start_route: Any, start_gateway: Any, mocks: Any
) -> None:
    gateway = start_route(strategy="round_robin", targets=[{"llm": "a"}, {"llm": "b"}, {"llm": "c"}])
    assert Counter(call(gateway)[0] for _ in range(9)) == {"a": 3, "b": 3, "c": 3}
    idle = start_gateway(route_config(mocks, strategy="least_busy", targets=[{"llm": "a"}, {"llm": "b"}]))
    assert set(call(idle)[0] for _ in range(6)) == {"a", "b"}  # one at a time: none is busier


def test_a_failing_target_fails_over_and_each_attempt_is_recorded(
    start_route: Any, upstreams: dict[str, MockOpenAI]
) -> None:
    """A 500 from the chosen target moves to the next; the client sees one answer, the analytics two
    records (the failed attempt and the answer), both with the route and their attempt number."""
    gateway = start_route(strategy="weighted", targets=TARGETS, retry=RETRY)
    upstreams["a"].fail_status = 500
    target, attempts, answer = call(gateway)
    assert (target, attempts) == ("b", "2")
    assert answer.choices[0].message.content
    records = sorted(gateway.records(expect=2), key=lambda r: r["attempt"])
    assert [(r["llm_slug"], r["attempt"], r["status_code"], r["route"]) for r in records] == [
        ("a", 1, 500, "smart"),
        ("b", 2, 200, "smart"),
    ]
    assert records[0]["request_id"] == records[1]["request_id"]
    assert records[1]["cost"] > 0 and records[0]["cost"] == 0


def test_client_errors_are_never_retried(start_route: Any, upstreams: dict[str, MockOpenAI]) -> None:
    gateway = start_route(strategy="weighted", targets=TARGETS, retry={**RETRY, "on": [400, 500]})
    upstreams["a"].fail_status = 400
    with pytest.raises(openai.BadRequestError):
        client(gateway).chat.completions.create(model="smart", messages=HELLO)
    assert len(upstreams["b"].requests) == 0
    assert len(upstreams["a"].requests) == 1


def test_tiers_are_tried_in_order(start_route: Any, upstreams: dict[str, MockOpenAI]) -> None:
    """A tier-1 target answers only when every tier-0 target failed."""
    targets = [{"llm": "a"}, {"llm": "b"}, {"llm": "c", "priority": 1}]
    gateway = start_route(strategy="priority", targets=targets, retry=RETRY)
    assert {call(gateway)[0] for _ in range(4)} == {"a", "b"}
    assert len(upstreams["c"].requests) == 0
    upstreams["a"].fail_status = upstreams["b"].fail_status = 503
    assert call(gateway)[:2] == ("c", "3")


def test_targets_cool_down_and_come_back(start_route: Any, upstreams: dict[str, MockOpenAI]) -> None:
    """At its `fails`-th failure a target is skipped for `duration_s`; when every target cools down the
    answer is 503 no_healthy_targets with Retry-After; after the duration the target is tried again."""
    cooldown = {"fails": 2, "window_s": 60, "duration_s": 2}
    gateway = start_route(
        strategy="round_robin", targets=[{"llm": "a"}, {"llm": "b"}], retry=RETRY, cooldown=cooldown
    )
    upstreams["a"].fail_status = 500
    for _ in range(4):
        assert call(gateway)[0] == "b"
    tried_a = len(upstreams["a"].requests)
    assert tried_a == 2  # twice, then it cooled down
    for _ in range(3):
        assert call(gateway)[:2] == ("b", "1")
    assert len(upstreams["a"].requests) == tried_a
    upstreams["b"].fail_status = 500
    failing = [call_status(gateway) for _ in range(3)]
    assert failing[-1][0] == 503 and failing[-1][1]["error"]["code"] == "no_healthy_targets"
    assert int(failing[-1][2]["retry-after"]) >= 1
    upstreams["a"].reset()
    upstreams["b"].reset()
    time.sleep(2.2)
    assert call(gateway)[0] in ("a", "b")
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'tollgate_route_attempts_total{outcome="failed",route="smart",target="a"}' in metrics
    assert "tollgate_route_failovers_total" in metrics and "tollgate_route_target_healthy" in metrics


def call_status(gateway: Gateway) -> tuple[int, Any, httpx.Headers]:
    response = httpx.post(
        f"{gateway.url}/openai/smart/v1/chat/completions",
        json={"model": "smart", "messages": HELLO},
        headers={"authorization": f"Bearer {ROUTE_KEY}"},
        timeout=10,
    )
    return response.status_code, response.json(), response.headers


def stream_text(gateway: Gateway) -> tuple[httpx.Headers, str]:
    with httpx.stream(
        "POST",
        f"{gateway.url}/openai/smart/v1/chat/completions",
        json={"model": "smart", "messages": HELLO, "stream": True},
        headers={"authorization": f"Bearer {ROUTE_KEY}"},
        timeout=10,
    ) as response:
        return response.headers, response.read().decode()


def test_a_stream_fails_over_only_before_its_first_chunk(
    start_route: Any, upstreams: dict[str, MockOpenAI]
) -> None:
    """Broken before its first event, a stream is retried on the next target and the client sees a whole
    stream; broken after, the client's stream ends with an SSE error event and no [DONE]."""
    gateway = start_route(strategy="round_robin", targets=[{"llm": "a"}, {"llm": "b"}], retry=RETRY)
    upstreams["a"].break_after_events = 0  # the connection drops right after the headers
    seen = [stream_text(gateway) for _ in range(2)]
    for headers, text in seen:
        assert headers["x-tollgate-target"] == "b" and text.rstrip().endswith("data: [DONE]")
    assert any(h["x-tollgate-attempts"] == "2" for h, _ in seen)

    upstreams["a"].break_after_events = 2
    upstreams["b"].break_after_events = 2
    headers, text = stream_text(gateway)
    assert "event: error" in text and "[DONE]" not in text
    assert headers["x-tollgate-attempts"] == "1"


def test_fallback_on_context_length(start_route: Any, upstreams: dict[str, MockOpenAI]) -> None:
    """An error listed in fallback.on skips the route's other targets and goes to fallback.to."""
    fallback = {"on": ["context_length"], "to": "c"}
    gateway = start_route(strategy="weighted", targets=TARGETS, retry=RETRY, fallback=fallback)
    upstreams["a"].fail_status = 400
    upstreams["a"].fail_code = "context_length_exceeded"
    upstreams["a"].fail_message = "This model's maximum context length is 128000 tokens."
    target, attempts, _ = call(gateway)
    assert (target, attempts) == ("c", "2")
    assert len(upstreams["b"].requests) == 0


def test_retry_after_is_honoured_on_a_single_target(
    start_route: Any, upstreams: dict[str, MockOpenAI]
) -> None:
    gateway = start_route(targets=[{"llm": "a"}], retry={**RETRY, "max_retry_after_s": 5})
    upstreams["a"].fail_status = 429
    upstreams["a"].fail_retry_after = "1"
    upstreams["a"].fail_times = 1
    started = time.monotonic()
    assert call(gateway)[:2] == ("a", "2")
    assert time.monotonic() - started >= 1.0
    upstreams["a"].fail_times = 1
    upstreams["a"].fail_retry_after = "60"  # longer than max_retry_after_s: the 429 is the answer
    status, _body, headers = call_status(gateway)
    assert status == 429 and headers["retry-after"] == "60"


def test_a_route_is_granted_and_counted_once(start_gateway: StartGateway, mocks: Any, upstreams: Any) -> None:
    """An app needs the route's slug in its llms; a call that fails over counts once against its rpm; a
    request naming another model is refused; the route lists itself as its model."""
    config = route_config(mocks, strategy="weighted", targets=TARGETS, retry=RETRY)
    config["apps"][-1]["rate_limit"] = {"rpm": 5}
    gateway = start_gateway(config)
    upstreams["a"].fail_status = 500
    raw = client(gateway).chat.completions.with_raw_response.create(model="smart", messages=HELLO)
    assert raw.headers["x-tollgate-attempts"] == "2"
    assert raw.headers["x-ratelimit-remaining-requests"] == "4"
    with pytest.raises(openai.PermissionDeniedError):
        gateway.openai(llm="smart").chat.completions.create(model="smart", messages=HELLO)
    with pytest.raises(openai.BadRequestError):
        client(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert [m.id for m in client(gateway).models.list()] == ["smart"]
    assert "routes are not served" not in httpx.get(gateway.url + "/readyz").text


def test_a_client_that_leaves_cancels_the_attempts(
    start_route: Any, upstreams: dict[str, MockOpenAI]
) -> None:
    """Gone during the backoff after a failed attempt, the client gets no further attempt made for it:
    the failed attempt and a 499 are recorded, and the next target never sees the call."""
    gateway = start_route(
        strategy="round_robin",
        targets=[{"llm": "a"}, {"llm": "b"}],
        retry={"attempts": 2, "backoff_ms": 1500},
    )
    upstreams["a"].fail_status = upstreams["b"].fail_status = 500
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.url}/openai/smart/v1/chat/completions",
            json={"model": "smart", "messages": HELLO},
            headers={"authorization": f"Bearer {ROUTE_KEY}"},
            timeout=0.5,
        )
    time.sleep(2.5)
    assert len(upstreams["a"].requests) + len(upstreams["b"].requests) == 1
    records = sorted(gateway.records(expect=2), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status_code"]) for r in records] == [(1, 500), (2, 499)]


def test_weights_hold_over_a_thousand_calls(start_route: Any) -> None:
    gateway = start_route(strategy="weighted", targets=TARGETS)
    with httpx.Client(timeout=10) as http:
        targets = Counter(
            http.post(
                f"{gateway.url}/openai/smart/v1/chat/completions",
                json={"model": "smart", "messages": HELLO},
                headers={"authorization": f"Bearer {ROUTE_KEY}"},
            ).headers["x-tollgate-target"]
            for _ in range(1000)
        )
    assert targets == {"a": 750, "b": 250}


def test_a_refused_connection_and_a_slow_first_byte_fail_over(
    start_route: Any, upstreams: dict[str, MockOpenAI]
) -> None:
    """`connect`: nothing listens where the first target is; `timeout`: the next one answers too late."""
    targets = [{"llm": "dead"}, {"llm": "a", "priority": 1}, {"llm": "b", "priority": 2}]
    gateway = start_route(
        strategy="priority", targets=targets, retry={"attempts": 2, "backoff_ms": 10}, timeouts={"a": 1}
    )
    upstreams["a"].first_byte_delay_s = 2
    started = time.monotonic()
    assert call(gateway)[:2] == ("b", "3")
    assert time.monotonic() - started < 5
    records = sorted(gateway.records(expect=3), key=lambda r: r["attempt"])
    assert [(r["llm_slug"], r["status_code"]) for r in records] == [("dead", 502), ("a", 504), ("b", 200)]


def test_three_failures_cool_a_target_down(start_route: Any, upstreams: dict[str, MockOpenAI]) -> None:
    """The default cool-down: three failures within 60 s."""
    targets = [{"llm": "a"}, {"llm": "b", "priority": 1}]
    gateway = start_route(strategy="priority", targets=targets, retry=RETRY)
    upstreams["a"].fail_status = 502
    assert [call(gateway)[:2] for _ in range(5)] == [("b", "2")] * 3 + [("b", "1")] * 2
    assert len(upstreams["a"].requests) == 3


def test_a_stream_cut_after_its_first_chunk_is_not_retried(
    start_route: Any, upstreams: dict[str, MockOpenAI]
) -> None:
    targets = [{"llm": "a"}, {"llm": "b", "priority": 1}]
    gateway = start_route(strategy="priority", targets=targets, retry=RETRY)
    upstreams["a"].break_after_events = 1
    headers, text = stream_text(gateway)
    assert "event: error" in text and "[DONE]" not in text and text.count("data: {") >= 2
    assert headers["x-tollgate-target"] == "a"
    assert len(upstreams["b"].requests) == 0


def test_cool_downs_are_shared_through_redis(
    start_gateway: StartGateway, mocks: Any, upstreams: dict[str, MockOpenAI]
) -> None:
    """With --redis, a target that cooled down behind one gateway is skipped by another within a second."""
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for key in client.scan_iter("{tollgate:}cool:*"):
        client.delete(key)
    targets = [{"llm": "a"}, {"llm": "b", "priority": 1}]
    config = route_config(
        mocks, strategy="priority", targets=targets, retry=RETRY, cooldown={"duration_s": 30}
    )
    one = start_gateway(config, "--redis", "redis://127.0.0.1:6379/0")
    two = start_gateway(config, "--redis", "redis://127.0.0.1:6379/0")
    upstreams["a"].fail_status = 503
    assert [call(one)[:2] for _ in range(3)] == [("b", "2")] * 3  # the third failure cools a down
    time.sleep(1.2)  # the other gateway reads the cool-downs twice a second
    assert call(two)[:2] == ("b", "1")
    assert len(upstreams["a"].requests) == 3


def test_each_attempt_runs_its_targets_own_request_filters(
    start_gateway: StartGateway, mocks: Any, upstreams: dict[str, MockOpenAI]
) -> None:
    """A route runs the global filters once and, on each attempt, the target LLM's own request filters on
    that attempt's copy: a's pii mask reaches only a, b's keyword block refuses only what goes to b."""
    config = route_config(mocks, strategy="round_robin", targets=[{"llm": "a"}, {"llm": "b"}])
    config["filters"] = [
        {"name": "pii", "phase": "post_auth", "kind": "pii_redact"},
        {
            "name": "no-project-x",
            "phase": "pre_auth",
            "kind": "regex_block",
            "config": {"keywords": ["project-x"]},
        },
    ]
    for llm in config["llms"]:
        llm["filters"] = {"a": ["pii"], "b": ["no-project-x"]}.get(llm["slug"], [])
    gateway = start_gateway(config)
    ask = [{"role": "user", "content": "mail bob@example.com about project-x"}]

    def sent(name: str) -> str:
        content: str = upstreams[name].requests[-1].json()["messages"][0]["content"]
        return content

    raw = client(gateway).chat.completions.with_raw_response.create(model="smart", messages=ask)
    assert raw.headers["x-tollgate-target"] == "a"
    assert sent("a") == "mail [REDACTED:EMAIL] about project-x"
    with pytest.raises(openai.BadRequestError) as caught:  # to b: its own block, b never called
        client(gateway).chat.completions.create(model="smart", messages=ask)
    assert caught.value.body["code"] == "content_blocked" and "no-project-x" in caught.value.body["message"]
    assert upstreams["b"].requests == []
    clean = [{"role": "user", "content": "mail bob@example.com"}]
    assert call(gateway)[0] == "a"  # round robin goes on
    raw = client(gateway).chat.completions.with_raw_response.create(model="smart", messages=clean)
    assert raw.headers["x-tollgate-target"] == "b" and sent("b") == "mail bob@example.com"  # b has no pii
    records = gateway.records(expect=4)
    assert [r["blocked_by"] for r in records if r["status_code"] == 400] == ["no-project-x"]


def test_a_target_at_its_own_limit_is_passed_over(
    start_gateway: StartGateway, mocks: Any, upstreams: dict[str, MockOpenAI]
) -> None:
    """The target LLMs' own rate limits and budgets hold through routes: a target at its rpm is passed
    over for the next (no call made to it, nothing recorded for it), and when every target is at its
    limit the answer is that limit's refusal. Calls made to the LLM directly share the same count."""
    config = route_config(mocks, strategy="round_robin", targets=[{"llm": "a"}, {"llm": "b"}])
    for llm in config["llms"]:
        if llm["slug"] in ("a", "b"):
            llm["rate_limit"] = {"rpm": 2}
    config["apps"][-1]["llms"] = ["smart", "a"]
    gateway = start_gateway(config)
    assert "rate_limit" not in httpx.get(gateway.url + "/readyz").text  # no warning: they are enforced
    direct = client(gateway, "a").chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert direct.choices[0].message.content
    picks = [call(gateway)[:2] for _ in range(3)]  # a has one call left, b two
    assert sorted(picks) == [("a", "1"), ("b", "1"), ("b", "1")]
    with pytest.raises(openai.RateLimitError) as caught:
        call(gateway)
    assert caught.value.body["code"] == "rate_limit_exceeded"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert (len(upstreams["a"].requests), len(upstreams["b"].requests)) == (2, 2)
    records = gateway.records(expect=5)
    assert sorted((r["llm_slug"], r["status_code"]) for r in records if r["status_code"] == 200) == [
        ("a", 200), ("a", 200), ("b", 200), ("b", 200),
    ]  # fmt: skip


def test_a_target_budget_is_booked_per_attempt(
    start_gateway: StartGateway, mocks: Any, upstreams: dict[str, MockOpenAI]
) -> None:
    """A target's monthly budget counts what each attempt on it cost: once spent, the route answers 402."""
    config = route_config(mocks, targets=[{"llm": "a"}])
    config["prices"] = [
        {"vendor": "openai", "model": "gpt-4o-mini", "input_per_1m": 1_000, "output_per_1m": 1_000}
    ]
    for llm in config["llms"]:
        if llm["slug"] == "a":
            llm["monthly_budget_usd"] = 0.01  # one call of a few tokens at $1,000 per million spends it
    gateway = start_gateway(config)
    assert call(gateway)[0] == "a"
    with pytest.raises(openai.APIStatusError) as caught:
        call(gateway)
    assert caught.value.status_code == 402 and caught.value.body["code"] == "budget_exceeded"
    assert len(upstreams["a"].requests) == 1
