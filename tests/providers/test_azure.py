"""The Azure OpenAI adapter alone: URLs, headers and bodies; usage; the stream relay; errors; models."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.errors import UpstreamStatus, UpstreamUnavailable
from providers.azure import AzureOpenAI
from providers.base import Call, Operation, Usage
from sync.model import Llm

SECRET = "azure-secret-0123456789"
ENDPOINT = "https://res.openai.azure.com"
VERSION = "api-version=2024-10-21"


def provider(**fields: Any) -> AzureOpenAI:
    values: dict[str, Any] = {"api_base": ENDPOINT + "/", "deployments": {"gpt-4o": "prod-4o"}, **fields}
    return AzureOpenAI(Llm(slug="az", vendor="azure_openai", **values), SECRET)


def call(op: Operation, body: dict[str, Any] | bytes, **fields: Any) -> Call:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Call(op=op, body=raw, **fields)


REQUESTS = [
    (
        "chat to the model's deployment",
        call(Operation.CHAT, {"model": "gpt-4o", "messages": []}, model="gpt-4o"),
        {},
        f"{ENDPOINT}/openai/deployments/prod-4o/chat/completions?{VERSION}",
        {"model": "gpt-4o", "messages": []},
    ),
    (
        "no mapping: the deployment is named after the model",
        call(Operation.CHAT, {"model": "gpt-4o-mini", "messages": []}, model="gpt-4o-mini"),
        {},
        f"{ENDPOINT}/openai/deployments/gpt-4o-mini/chat/completions?{VERSION}",
        {"model": "gpt-4o-mini", "messages": []},
    ),
    (
        "deployment names are escaped",
        call(Operation.CHAT, {"model": "a/b c", "messages": []}, model="a/b c"),
        {},
        f"{ENDPOINT}/openai/deployments/a%2Fb%20c/chat/completions?{VERSION}",
        {"model": "a/b c", "messages": []},
    ),
    (
        "default model added",
        call(Operation.CHAT, {"messages": []}, model="gpt-4o", model_in_body=False, model_key=False),
        {},
        f"{ENDPOINT}/openai/deployments/prod-4o/chat/completions?{VERSION}",
        {"model": "gpt-4o", "messages": []},
    ),
    (
        "stream asks for the usage chunk",
        call(Operation.CHAT, {"model": "gpt-4o", "stream": True}, model="gpt-4o", stream=True),
        {},
        f"{ENDPOINT}/openai/deployments/prod-4o/chat/completions?{VERSION}",
        {"stream_options": {"include_usage": True}, "model": "gpt-4o", "stream": True},
    ),
    (
        "before 2024-08-01-preview there are no stream_options",
        call(Operation.CHAT, {"model": "gpt-4o", "stream": True}, model="gpt-4o", stream=True),
        {"api_version": "2024-06-01"},
        f"{ENDPOINT}/openai/deployments/prod-4o/chat/completions?api-version=2024-06-01",
        {"model": "gpt-4o", "stream": True},
    ),
    (
        "a preview version that has them",
        call(Operation.CHAT, {"model": "gpt-4o", "stream": True}, model="gpt-4o", stream=True),
        {"api_version": "2024-08-01-preview"},
        f"{ENDPOINT}/openai/deployments/prod-4o/chat/completions?api-version=2024-08-01-preview",
        {"stream_options": {"include_usage": True}, "model": "gpt-4o", "stream": True},
    ),
    (
        "embeddings",
        call(
            Operation.EMBEDDINGS,
            {"model": "text-embedding-3-small", "input": "x"},
            model="text-embedding-3-small",
        ),
        {"deployments": {"text-embedding-3-small": "embed"}},
        f"{ENDPOINT}/openai/deployments/embed/embeddings?{VERSION}",
        {"model": "text-embedding-3-small", "input": "x"},
    ),
]


@pytest.mark.parametrize(
    ("sent", "fields", "url", "body"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS]
)
def test_request(sent: Call, fields: dict[str, Any], url: str, body: dict[str, Any]) -> None:
    request = asyncio.run(provider(**fields).request(sent))
    assert (request.method, request.url) == ("POST", url)
    assert request.headers == {"content-type": "application/json", "api-key": SECRET}
    assert request.body is not None and orjson.loads(request.body) == body


def test_unchanged_body_is_forwarded_byte_for_byte() -> None:
    raw = b'{"model": "gpt-4o",  "messages": [{"role": "user", "content": "hi"}]}'
    request = asyncio.run(provider().request(Call(op=Operation.CHAT, body=raw, model="gpt-4o")))
    assert request.body is raw


def test_models_and_proxy_requests() -> None:
    models = asyncio.run(provider().request(Call(op=Operation.MODELS, body=b"", method="GET")))
    assert (models.method, models.url, models.headers) == (
        "GET",
        f"{ENDPOINT}/openai/models?{VERSION}",
        {"api-key": SECRET},
    )
    proxied = asyncio.run(
        provider().request(
            call(
                Operation.PROXY,
                b'{"x":1}',
                path="openai/deployments/prod-4o/chat/completions",
                query=VERSION,
                headers={"x-trace": "t"},
            )
        )
    )
    assert proxied.url == f"{ENDPOINT}/openai/deployments/prod-4o/chat/completions?{VERSION}"
    assert proxied.headers == {"x-trace": "t", "api-key": SECRET} and proxied.body == b'{"x":1}'


def test_an_llm_without_endpoint_fails_clearly() -> None:
    with pytest.raises(UpstreamUnavailable, match="resource endpoint"):
        asyncio.run(provider(api_base=None).request(call(Operation.CHAT, {}, model="gpt-4o")))


# --- answers and streams --------------------------------------------------------------------------------

FILTER_RESULTS = {"hate": {"filtered": False, "severity": "safe"}}
ANSWER = {
    "id": "chatcmpl-1",
    "model": "gpt-4o-2024-08-06",
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTER_RESULTS}],
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi"},
            "finish_reason": "stop",
            "content_filter_results": FILTER_RESULTS,
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 8}},
}


def test_usage_with_cached_tokens() -> None:
    body = orjson.dumps(ANSWER)
    reply = provider().response(call(Operation.CHAT, {}), body, {})
    assert reply.body == body  # Azure's answer is OpenAI's format already
    assert reply.usage == Usage(20, 2, cache_read_tokens=8)
    assert reply.model == "gpt-4o-2024-08-06"


def sse(*payloads: object) -> bytes:
    return b"".join(b"data: " + (p if isinstance(p, bytes) else orjson.dumps(p)) + b"\n\n" for p in payloads)


PROMPT_FILTER = {"choices": [], "id": "", "model": "", "object": "", "prompt_filter_results": []}
TEXT = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}], "model": "gpt-4o"}
CUT = {"choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}], "model": "gpt-4o"}
USAGE = {"choices": [], "model": "gpt-4o-2024-08-06", "usage": {"prompt_tokens": 9, "completion_tokens": 1}}
STREAM = sse(PROMPT_FILTER, TEXT, CUT, USAGE, b"[DONE]")


@pytest.mark.parametrize("size", [1, 5, 17, 4096])
def test_stream_drops_the_prompt_filter_chunk_and_the_unasked_usage(size: int) -> None:
    relay = provider().stream(call(Operation.CHAT, {}, stream=True))
    out = b""
    for start in range(0, len(STREAM), size):
        piece = relay.feed(STREAM[start : start + size])
        assert piece == b"" or piece.endswith(b"\n\n")
        out += piece
    out += relay.finish()
    assert out == sse(TEXT, CUT, b"[DONE]")  # the content filter's finish reason is OpenAI's too
    assert relay.usage == Usage(9, 1) and relay.model == "gpt-4o-2024-08-06"
    assert relay.completion_text() == "Hi"


def test_stream_keeps_the_usage_the_client_asked_for() -> None:
    relay = provider().stream(call(Operation.CHAT, {}, stream=True, include_usage=True))
    assert relay.feed(STREAM) + relay.finish() == sse(TEXT, CUT, USAGE, b"[DONE]")


def test_native_stream_is_untouched() -> None:
    relay = provider().stream(call(Operation.PROXY, b"", stream=True))
    assert relay.feed(STREAM) + relay.finish() == STREAM
    assert relay.usage == Usage(9, 1)


# --- errors ---------------------------------------------------------------------------------------------

CONTENT_FILTER = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {}},
    }
}
ERRORS = [
    ("prompt refused by the content filter", 400, CONTENT_FILTER, {}, "content_filter", None),
    (
        "rate limit with its code as a number",
        429,
        {"error": {"code": "429", "message": "Please retry after 6 seconds."}},
        {"retry-after": "6"},
        "rate_limit_exceeded",
        "6",
    ),
    ("server error", 500, {"error": {"code": "500", "message": "boom"}}, {}, "upstream_error", None),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "code", "wait"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors(
    status: int, body: dict[str, Any], headers: dict[str, str], code: str, wait: str | None
) -> None:
    error = provider().error(call(Operation.CHAT, {}, model="gpt-4o"), status, orjson.dumps(body), headers)
    assert isinstance(error, UpstreamStatus)
    assert (error.status, error.code, error.headers.get("retry-after")) == (status, code, wait)
    assert orjson.loads(error.body())["error"]["message"] == body["error"]["message"]


def test_deployment_not_found_names_the_deployment() -> None:
    body = {
        "error": {
            "code": "DeploymentNotFound",
            "message": "The API deployment for this resource does not exist.",
        }
    }
    error = provider().error(call(Operation.CHAT, {}, model="gpt-4o"), 404, orjson.dumps(body), {})
    assert error.code == "DeploymentNotFound" and "'prod-4o'" in error.message and "'gpt-4o'" in error.message


def test_auth_errors_and_native_errors() -> None:
    body = orjson.dumps({"error": {"code": "401", "message": f"Access denied for key {SECRET}"}})
    denied = provider().error(call(Operation.CHAT, {}), 401, body, {})
    assert denied.code == "upstream_auth_error" and SECRET not in denied.body().decode()
    native = provider().error(call(Operation.PROXY, b""), 404, orjson.dumps({"error": {"code": "404"}}), {})
    assert native.status == 404 and orjson.loads(native.body()) == {"error": {"code": "404"}}


# --- models ---------------------------------------------------------------------------------------------

LISTED = {
    "data": [
        {"id": "gpt-4o", "capabilities": {"inference": True, "chat_completion": True}, "created_at": 1},
        {"id": "babbage-002", "capabilities": {"inference": False, "fine_tune": True}, "created_at": 2},
        {"id": "text-embedding-3-small", "created_at": 3},
    ],
    "object": "list",
}


def test_models_are_the_deployments_when_configured_else_the_resources_callable_ones() -> None:
    body = orjson.dumps(LISTED)
    configured = provider(deployments={"gpt-4o": "prod", "gpt-4o-mini": "mini"}).models(body)
    assert [m["id"] for m in configured] == ["gpt-4o", "gpt-4o-mini"]
    assert [m["id"] for m in provider(deployments=None).models(body)] == ["gpt-4o", "text-embedding-3-small"]
    assert configured[0]["object"] == "model"
    with pytest.raises(UpstreamUnavailable):
        provider(deployments=None).models(b"<html>")


@pytest.mark.parametrize(
    ("path", "body", "model"),
    [
        ("openai/deployments/prod-4o/chat/completions", b'{"model": "x"}', "gpt-4o"),
        ("openai/deployments/other%20one/embeddings", b"{}", "other one"),
        ("openai/models", b"", ""),
        ("openai/responses", b'{"model": "gpt-4o-mini"}', "gpt-4o-mini"),
    ],
    ids=["mapped deployment", "unmapped deployment", "no model", "model in the body"],
)
def test_proxy_model(path: str, body: bytes, model: str) -> None:
    assert provider().proxy_model(path, body) == model
