"""`/proxy/{llm}/{path}`: the vendor's native API passed through untouched, with the gateway's auth,
policies and accounting. Here with the OpenAI SDK pointed at the proxy (its native format)."""

from __future__ import annotations

import httpx
import openai
import pytest

from mocks.openai import MockOpenAI
from tests.support import APP_KEY, OTHER_KEY, UPSTREAM_KEY, Gateway

MESSAGES = [{"role": "user", "content": "Proxy me"}]


def native(gateway: Gateway, key: str = APP_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/proxy/gpt", api_key=key, max_retries=0)


def test_native_chat_is_passed_through_and_accounted(gateway: Gateway, upstream: MockOpenAI) -> None:
    answer = native(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Mock answer to: Proxy me"
    (request,) = upstream.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert request.headers["x-stainless-lang"] == "python"  # the client's own headers go through
    (record,) = gateway.records(expect=1)
    assert record["interaction_type"] == "proxy" and record["model_name"] == "gpt-4o-mini"
    assert answer.usage is not None and record["prompt_tokens"] == answer.usage.prompt_tokens
    assert record["cost"] > 0


def test_native_stream_is_passed_through_untouched(gateway: Gateway, upstream: MockOpenAI) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST",
        gateway.url + "/proxy/gpt/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {APP_KEY}"},
    ) as response:
        relayed = b"".join(response.iter_bytes())
    assert response.status_code == 200
    assert b'"choices":[]' in relayed.replace(b" ", b"") and relayed.endswith(b"data: [DONE]\n\n")
    assert upstream.requests[0].json() == body  # no stream_options added on the native path
    (record,) = gateway.records(expect=1)
    assert record["stream"] is True and record["prompt_tokens"] > 0 and record["response_tokens"] > 0


def test_native_stream_without_usage_is_not_changed(gateway: Gateway, upstream: MockOpenAI) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    stream = native(gateway).chat.completions.create(**body)  # type: ignore[call-overload]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "stream_options" not in upstream.requests[0].json()


def test_get_with_query_string(gateway: Gateway, upstream: MockOpenAI) -> None:
    response = httpx.get(
        gateway.url + "/proxy/gpt/models/gpt-4o?x=1", headers={"authorization": f"Bearer {APP_KEY}"}
    )
    assert response.status_code == 200 and response.json()["id"] == "gpt-4o"
    assert (upstream.requests[0].path, upstream.requests[0].query_string) == ("/v1/models/gpt-4o", "x=1")


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"x-api-key": APP_KEY}, ""),
        ({"x-goog-api-key": APP_KEY}, ""),
        ({"api-key": APP_KEY}, ""),
        ({}, f"key={APP_KEY}&alt=sse"),
    ],
    ids=["anthropic sdk header", "google sdk header", "azure sdk header", "google sdk query"],
)
def test_vendor_sdk_credentials_are_accepted_and_not_forwarded(
    gateway: Gateway, upstream: MockOpenAI, headers: dict[str, str], query: str
) -> None:
    url = gateway.url + "/proxy/gpt/chat/completions" + (f"?{query}" if query else "")
    response = httpx.post(url, headers=headers, json={"model": "gpt-4o-mini", "messages": MESSAGES})
    assert response.status_code == 200, response.text
    (request,) = upstream.requests
    assert APP_KEY not in str(request.headers) and APP_KEY not in request.query_string
    assert not {"x-api-key", "x-goog-api-key", "api-key"} & set(request.headers)
    if query:
        assert request.query_string == "alt=sse"


def test_proxy_applies_the_same_policies(gateway: Gateway, upstream: MockOpenAI) -> None:
    def call(key: str, model: str) -> int:
        return (
            native(gateway, key)
            .chat.completions.with_raw_response.create(
                model=model,
                messages=MESSAGES,  # type: ignore[arg-type]
            )
            .http_response.status_code
        )

    with pytest.raises(openai.PermissionDeniedError):
        call(OTHER_KEY, "gpt-4o-mini")
    with pytest.raises(openai.PermissionDeniedError):
        call(APP_KEY, "o3-mini")
    with pytest.raises(openai.AuthenticationError):
        call("tg-nope", "gpt-4o-mini")
    assert upstream.requests == []
    assert [r["status_code"] for r in gateway.records(expect=3)] == [401, 403, 403]


def test_native_upstream_errors_pass_through(gateway: Gateway, upstream: MockOpenAI) -> None:
    response = httpx.post(
        gateway.url + "/proxy/gpt/chat/completions",
        headers={"authorization": f"Bearer {APP_KEY}"},
        json={"model": "gpt-4o-mini", "messages": []},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"  # the vendor's own error, as it was
    assert gateway.records(expect=1)[0]["status_code"] == 400
