"""Every row of INTERFACE.md's error table that the gateway produces, as the client sees it, plus proof
from the mock that a refused request never reached the upstream and the app key never did."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from mocks.openai import MockOpenAI
from tests.conftest import StartGateway
from tests.support import APP_KEY, OTHER_KEY, UPSTREAM_KEY, Gateway, base_config, free_port

CHAT = "/openai/gpt/v1/chat/completions"
HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def post(gateway: Gateway, path: str, key: str | None = APP_KEY, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        gateway.url + path, headers={**headers, **kwargs.pop("headers", {})}, timeout=30, **kwargs
    )


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"] and "type" in error
    return error


REFUSALS = [
    ("not json", dict(content=b"{nope"), 400, "invalid_request"),
    ("not an object", dict(json=["messages"]), 400, "invalid_request"),
    ("no messages", dict(json={"model": "gpt-4o-mini"}), 400, "invalid_request"),
    ("empty messages", dict(json={"model": "gpt-4o-mini", "messages": []}), 400, "invalid_request"),
    ("messages wrong type", dict(json={"model": "gpt-4o-mini", "messages": "hi"}), 400, "invalid_request"),
    ("model wrong type", dict(json={**HELLO, "model": 4}), 400, "invalid_request"),
    ("stream wrong type", dict(json={**HELLO, "stream": "yes"}), 400, "invalid_request"),
    ("missing key", dict(json=HELLO, key=None), 401, "invalid_api_key"),
    ("unknown key", dict(json=HELLO, key="tg-nope"), 401, "invalid_api_key"),
    (
        "basic auth",
        dict(json=HELLO, key=None, headers={"authorization": "Basic dGc6eA=="}),
        401,
        "invalid_api_key",
    ),
    ("llm not granted", dict(json=HELLO, key=OTHER_KEY), 403, "model_not_allowed"),
    ("model not allowed", dict(json={**HELLO, "model": "o3-mini"}), 403, "model_not_allowed"),
    ("unknown llm", dict(json=HELLO, path="/openai/nope/v1/chat/completions"), 404, "llm_not_found"),
    (
        "unknown llm beats grants",
        dict(json=HELLO, key=OTHER_KEY, path="/openai/nope/v1/chat/completions"),
        404,
        "llm_not_found",
    ),
    ("unknown endpoint", dict(json=HELLO, path="/openai/gpt/v1/completions"), 404, "not_found"),
    ("too large", dict(content=b'{"x": "' + b"a" * (10 * 1024 * 1024) + b'"}'), 413, "request_too_large"),
    (
        "embeddings without input",
        dict(json={"model": "text-embedding-3-small"}, path="/openai/gpt/v1/embeddings"),
        400,
        "invalid_request",
    ),
]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusals(
    gateway: Gateway, upstream: MockOpenAI, request_kwargs: dict[str, Any], status: int, code: str
) -> None:
    kwargs = dict(request_kwargs)
    path = kwargs.pop("path", CHAT)
    key = kwargs.pop("key", APP_KEY)
    assert_error(post(gateway, path, key, **kwargs), status, code)
    assert upstream.requests == []  # nothing was sent upstream
    if code != "not_found":  # every interaction is recorded, refusals included
        (record,) = gateway.records(expect=1)
        assert (record["status_code"], record["error_code"]) == (status, code)


def test_wrong_method(gateway: Gateway) -> None:
    response = httpx.get(gateway.url + CHAT, headers={"authorization": f"Bearer {APP_KEY}"})
    assert_error(response, 405, "method_not_allowed")


def test_sdk_sees_openai_errors(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        gateway.openai(key="tg-wrong").chat.completions.create(
            model="gpt-4o-mini", messages=HELLO["messages"]
        )  # type: ignore[arg-type]
    assert auth.value.code == "invalid_api_key"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        gateway.openai().chat.completions.create(model="o3-mini", messages=HELLO["messages"])  # type: ignore[arg-type]
    assert denied.value.code == "model_not_allowed"
    with pytest.raises(openai.NotFoundError):
        gateway.openai(llm="nope").chat.completions.create(model="gpt-4o-mini", messages=HELLO["messages"])  # type: ignore[arg-type]


def test_upstream_errors_pass_through_with_their_status(gateway: Gateway, upstream: MockOpenAI) -> None:
    unknown = post(gateway, CHAT, json={**HELLO, "model": "gpt-4o-nonexistent"})
    assert_error(unknown, 404, "model_not_found")
    upstream.fail_status, upstream.fail_retry_after = 429, "7"
    limited = post(gateway, CHAT, json=HELLO)
    assert_error(limited, 429, "rate_limit_exceeded")
    assert limited.headers["retry-after"] == "7"
    upstream.fail_status, upstream.fail_retry_after = 503, None
    assert assert_error(post(gateway, CHAT, json=HELLO), 503, "upstream_error")["type"] == "server_error"
    statuses = [r["status_code"] for r in gateway.records(expect=3)]
    assert statuses == [503, 429, 404]


def test_upstream_rejecting_the_gateways_key_is_not_leaked(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    config = base_config(upstream_url, secrets={"UPSTREAM": "sk-wrong-key-abcdefghijklmnop"})
    gateway = start_gateway(config)
    response = post(gateway, CHAT, json=HELLO)
    error = assert_error(response, 401, "upstream_auth_error")
    assert "sk-" not in response.text and "upstream" in error["message"]
    assert "sk-wrong-key" not in gateway.output()


def test_upstream_unreachable(start_gateway: StartGateway, upstream_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = base_config(upstream_url)
    config["llms"][0]["api_base"] = dead
    gateway = start_gateway(config)
    assert_error(post(gateway, CHAT, json=HELLO), 502, "upstream_error")
    assert gateway.records(expect=1)[0]["status_code"] == 502


def test_upstream_timeout(start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str) -> None:
    config = base_config(upstream_url)
    config["llms"][0]["timeout_s"] = 0.5
    gateway = start_gateway(config)
    upstream.first_byte_delay_s = 2
    started = time.monotonic()
    assert_error(post(gateway, CHAT, json=HELLO), 504, "upstream_timeout")
    assert time.monotonic() - started < 1.8
    assert gateway.records(expect=1)[0]["status_code"] == 504


def test_the_app_key_never_reaches_the_upstream(gateway: Gateway, upstream: MockOpenAI) -> None:
    post(gateway, CHAT, json=HELLO)
    post(gateway, "/proxy/gpt/chat/completions", json=HELLO)
    post(gateway, "/proxy/gpt/chat/completions", key=None, json=HELLO, headers={"x-api-key": APP_KEY})
    assert len(upstream.requests) == 3
    for request in upstream.requests:
        assert APP_KEY not in str(request.headers) and APP_KEY.encode() not in request.body
        assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
