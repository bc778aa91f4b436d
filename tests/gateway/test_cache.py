"""The response cache, exact mode (issue 7): hits and misses through the OpenAI SDK, streams stored and
replayed either way, scopes, Cache-Control, filters before the cache, Redis shared by two gateways, and a
failing store that is only a miss."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
import redis

from mocks.openai import MockOpenAI
from tests.conftest import StartGateway
from tests.support import APP_KEY, OTHER_KEY, Gateway, base_config, free_port

HELLO = [{"role": "user", "content": "What is the capital of France?"}]


def cached_config(upstream_url: str, **cache: Any) -> dict[str, Any]:
    config = base_config(upstream_url)
    config["llms"][0]["cache"] = {"mode": "exact", "ttl_s": 60, **cache}
    config["apps"][1]["llms"] = ["gpt"]  # a second app granted the same LLM
    return config


def ask(gateway: Gateway, key: str = APP_KEY, **kwargs: Any) -> tuple[str, Any]:
    raw = gateway.openai(key=key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=kwargs.pop("messages", HELLO), **kwargs
    )
    return raw.headers["x-tollgate-cache"], raw.parse()


def ask_stream(gateway: Gateway, headers: dict[str, str] | None = None) -> tuple[str, str]:
    with httpx.stream(
        "POST",
        f"{gateway.url}/openai/gpt/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": HELLO, "stream": True},
        headers={"authorization": f"Bearer {APP_KEY}", **(headers or {})},
        timeout=10,
    ) as response:
        return response.headers["x-tollgate-cache"], response.read().decode()


def content_of(stream: str) -> str:
    import orjson

    text = []
    for line in stream.splitlines():
        if line.startswith("data: {"):
            for choice in orjson.loads(line[6:])["choices"]:
                text.append(choice["delta"].get("content") or "")
    return "".join(text)


@pytest.fixture
def cached(start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str) -> Gateway:
    gateway: Gateway = start_gateway(cached_config(upstream_url))
    return gateway


def test_the_same_question_is_paid_once(cached: Gateway, upstream: MockOpenAI) -> None:
    """A second identical call is a HIT: no upstream call, the same answer, recorded at cost 0."""
    first, answer = ask(cached)
    second, again = ask(cached)
    assert (first, second) == ("MISS", "HIT")
    assert again.choices[0].message.content == answer.choices[0].message.content
    assert len(upstream.requests) == 1
    records = sorted(cached.records(expect=2), key=lambda r: r["timestamp"])
    assert [(r["cache_status"], r["status_code"]) for r in records] == [("MISS", 200), ("HIT", 200)]
    assert records[0]["cost"] > 0 and records[1]["cost"] == 0
    assert ask(cached, user="someone-else")[0] == "HIT"  # `user` is not in the key
    assert ask(cached, temperature=0.2)[0] == "MISS"  # sampling parameters are


def test_a_stream_is_stored_when_it_ends_and_replayed_either_way(
    cached: Gateway, upstream: MockOpenAI
) -> None:
    status, stream = ask_stream(cached)
    assert status == "MISS" and stream.rstrip().endswith("data: [DONE]")
    replayed_status, answer = ask(cached)  # the stream, replayed as JSON
    assert replayed_status == "HIT"
    assert answer.choices[0].message.content == content_of(stream)
    again_status, again = ask_stream(cached)  # and as a stream again
    assert again_status == "HIT" and content_of(again) == content_of(stream)
    assert again.rstrip().endswith("data: [DONE]")
    assert len(upstream.requests) == 1

    with cached.openai().chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True) as sdk:
        assert "".join(c.choices[0].delta.content or "" for c in sdk if c.choices) == content_of(stream)


def test_entries_are_scoped_to_the_app_unless_global(
    start_gateway: StartGateway, cached: Gateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    assert ask(cached)[0] == "MISS"
    assert ask(cached, key=OTHER_KEY)[0] == "MISS"  # another tenant: never another's answer
    assert ask(cached, key=OTHER_KEY)[0] == "HIT"
    shared = start_gateway(cached_config(upstream_url, scope="global"))
    assert (ask(shared)[0], ask(shared, key=OTHER_KEY)[0]) == ("MISS", "HIT")


def test_cache_control_no_cache_and_no_store(cached: Gateway, upstream: MockOpenAI) -> None:
    client = cached.openai()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, extra_headers={"Cache-Control": "no-store"}
    )
    assert raw.headers["x-tollgate-cache"] == "MISS"
    assert ask(cached)[0] == "MISS"  # nothing was stored
    assert ask(cached)[0] == "HIT"
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, extra_headers={"Cache-Control": "no-cache"}
    )
    assert raw.headers["x-tollgate-cache"] == "BYPASS"
    assert len(upstream.requests) == 3


def test_only_whole_successful_answers_are_stored(cached: Gateway, upstream: MockOpenAI) -> None:
    upstream.fail_status = 500
    with pytest.raises(openai.InternalServerError):
        ask(cached)
    upstream.fail_status = None
    upstream.break_after_events = 2
    status, broken = ask_stream(cached)
    assert status == "MISS" and "[DONE]" not in broken
    upstream.break_after_events = None
    assert ask(cached)[0] == "MISS"


def test_request_filters_run_before_the_cache(cached: Gateway, upstream: MockOpenAI) -> None:
    """A prompt cached before a filter blocked it is refused, never answered from the cache."""
    assert ask(cached)[0] == "MISS"
    spec = {
        "name": "no-france",
        "phase": "pre_auth",
        "kind": "regex_block",
        "config": {"keywords": ["france"]},
    }
    spec["global"] = True
    assert cached.admin("POST", "/api/v1/filters", json=spec).status_code == 201
    time.sleep(0.3)
    with pytest.raises(openai.BadRequestError) as blocked:
        ask(cached)
    assert blocked.value.code == "content_blocked"


def test_redis_is_shared_and_a_failing_store_is_a_miss(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for key in client.scan_iter("{tollgate:}cache:*"):
        client.delete(key)
    config = {**cached_config(upstream_url), "cache": {"backend": "redis"}}
    one = start_gateway(config, "--redis", "redis://127.0.0.1:6379/0")
    two = start_gateway(config, "--redis", "redis://127.0.0.1:6379/0")
    assert (ask(one)[0], ask(two)[0]) == ("MISS", "HIT")
    assert len(upstream.requests) == 1

    dead = f"redis://127.0.0.1:{free_port()}/0"
    broken = start_gateway(config, "--redis", dead)
    assert (ask(broken)[0], ask(broken)[0]) == ("MISS", "MISS")  # answered, uncached
    metrics = httpx.get(broken.url + "/metrics").text
    assert "tollgate_cache_errors_total" in metrics
    assert "response cache lookup failed" in broken.output()


def test_a_route_answers_from_the_cache(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    config = base_config(upstream_url)
    config["routes"] = [{"slug": "smart", "targets": [{"llm": "gpt"}], "cache": {"mode": "exact"}}]
    config["apps"][0]["llms"] = ["gpt", "smart"]
    config["groups"][0]["llms"] = ["gpt", "smart"]
    gateway = start_gateway(config)
    client = gateway.openai(llm="smart")
    statuses = [
        client.chat.completions.with_raw_response.create(model="smart", messages=HELLO).headers[
            "x-tollgate-cache"
        ]
        for _ in range(2)
    ]
    assert statuses == ["MISS", "HIT"]
    assert len(upstream.requests) == 1


def test_entries_expire_after_their_ttl(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    gateway = start_gateway(cached_config(upstream_url, ttl_s=1))
    assert (ask(gateway)[0], ask(gateway)[0]) == ("MISS", "HIT")
    time.sleep(1.2)
    assert ask(gateway)[0] == "MISS"
