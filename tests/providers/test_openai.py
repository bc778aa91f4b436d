"""The OpenAI adapter in isolation: request edits, usage extraction, stream relay, error mapping."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from gateway.errors import UpstreamStatus
from providers.base import Call, Operation, Usage
from providers.openai import OpenAI
from sync.model import Llm

SECRET = "sk-secret-0123456789"


def provider(**fields: object) -> OpenAI:
    return OpenAI(Llm(slug="gpt", vendor="openai", api_base="http://up.test/v1", **fields), SECRET)  # type: ignore[arg-type]


def chat(body: dict[str, object], **fields: object) -> Call:
    return Call(op=Operation.CHAT, body=orjson.dumps(body), **fields)  # type: ignore[arg-type]


REQUESTS = [
    ("untouched", {"model": "m", "messages": []}, {}, {"model": "m", "messages": []}),
    (
        "default model added",
        {"messages": []},
        {"model": "d", "model_in_body": False, "model_key": False},
        {"model": "d", "messages": []},
    ),
    (
        "null model replaced",
        {"model": None, "messages": []},
        {"model": "d", "model_in_body": False, "model_key": True},
        {"model": "d", "messages": []},
    ),
    (
        "stream asks for usage",
        {"model": "m", "stream": True},
        {"stream": True},
        {"model": "m", "stream": True, "stream_options": {"include_usage": True}},
    ),
    (
        "stream options kept",
        {"model": "m", "stream": True, "stream_options": {"include_obfuscation": False}},
        {"stream": True, "has_stream_options": True},
        {
            "model": "m",
            "stream": True,
            "stream_options": {"include_obfuscation": False, "include_usage": True},
        },
    ),
    (
        "client asked for usage already",
        {"model": "m", "stream": True, "stream_options": {"include_usage": True}},
        {"stream": True, "include_usage": True, "has_stream_options": True},
        {"model": "m", "stream": True, "stream_options": {"include_usage": True}},
    ),
]


@pytest.mark.parametrize(
    ("body", "fields", "expected"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS]
)
def test_chat_request(
    body: dict[str, object], fields: dict[str, object], expected: dict[str, object]
) -> None:
    request = asyncio.run(provider().request(chat(body, **fields)))
    assert request.url == "http://up.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.body is not None and orjson.loads(request.body) == expected


def test_unchanged_body_is_forwarded_byte_for_byte() -> None:
    raw = b'{"model": "m",   "messages": [{"role": "user", "content": "hi"}]}'
    request = asyncio.run(provider().request(Call(op=Operation.CHAT, body=raw, model="m")))
    assert request.body is raw


def test_proxy_request_keeps_path_query_and_headers_but_no_client_credentials() -> None:
    call = Call(
        op=Operation.PROXY,
        body=b"",
        method="GET",
        path="models/gpt-4o",
        query="a=1",
        headers={"x-trace": "t"},
    )
    request = asyncio.run(provider(organization="org-1").request(call))
    assert request.url == "http://up.test/v1/models/gpt-4o?a=1"
    assert request.headers == {
        "x-trace": "t",
        "authorization": f"Bearer {SECRET}",
        "openai-organization": "org-1",
    }
    assert request.body is None


USAGES = [
    ("chat", {"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}, Usage(10, 5)),
    (
        "cached",
        {
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 4},
            }
        },
        Usage(10, 5, cache_read_tokens=4),
    ),
    ("embeddings", {"usage": {"prompt_tokens": 7, "total_tokens": 7}}, Usage(7, 0)),
    (
        "responses api",
        {"usage": {"input_tokens": 9, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 2}}},
        Usage(9, 3, cache_read_tokens=2),
    ),
    ("no usage", {"id": "x"}, None),
]


@pytest.mark.parametrize(("answer", "usage"), [u[1:] for u in USAGES], ids=[u[0] for u in USAGES])
def test_usage_from_answer(answer: dict[str, object], usage: Usage | None) -> None:
    reply = provider().response(chat({}), orjson.dumps({"model": "gpt-4o-mini-2024-07-18", **answer}), {})
    assert reply.usage == usage
    assert reply.model == "gpt-4o-mini-2024-07-18"


def _sse(*payloads: object) -> bytes:
    return b"".join(b"data: " + (p if isinstance(p, bytes) else orjson.dumps(p)) + b"\n\n" for p in payloads)


CONTENT = {"choices": [{"index": 0, "delta": {"content": "Hel"}}], "usage": None}
MORE = {"choices": [{"index": 0, "delta": {"content": "lo"}}], "usage": None}
USAGE = {
    "choices": [],
    "model": "gpt-4o-mini-2024-07-18",
    "usage": {"prompt_tokens": 8, "completion_tokens": 2},
}


def test_stream_drops_the_usage_chunk_the_client_did_not_ask_for() -> None:
    relay = provider().stream(chat({}, stream=True))
    out = relay.feed(_sse(CONTENT, MORE, USAGE, b"[DONE]")) + relay.finish()
    assert out == _sse(CONTENT, MORE, b"[DONE]")
    assert relay.usage == Usage(8, 2)
    assert relay.model == "gpt-4o-mini-2024-07-18"


def test_stream_keeps_the_usage_chunk_when_asked() -> None:
    relay = provider().stream(chat({}, stream=True, include_usage=True))
    stream = _sse(CONTENT, USAGE, b"[DONE]")
    assert relay.feed(stream) + relay.finish() == stream
    assert relay.usage == Usage(8, 2)


@pytest.mark.parametrize("size", [1, 3, 7, 64])
def test_stream_events_split_anywhere_are_relayed_whole_and_in_order(size: int) -> None:
    stream = _sse(CONTENT, MORE, USAGE, b"[DONE]")
    relay = provider().stream(chat({}, stream=True))
    out = b""
    for i in range(0, len(stream), size):
        piece = relay.feed(stream[i : i + size])
        assert piece == b"" or piece.endswith(b"\n\n")  # only complete events go out
        out += piece
    out += relay.finish()
    assert out == _sse(CONTENT, MORE, b"[DONE]")
    assert relay.usage == Usage(8, 2)
    assert relay.completion_text() == "Hello"


def test_stream_with_crlf_separators() -> None:
    stream = _sse(CONTENT, USAGE).replace(b"\n", b"\r\n")
    relay = provider().stream(chat({}, stream=True))
    out = relay.feed(stream) + relay.finish()
    assert relay.usage == Usage(8, 2)
    assert b"Hel" in out and b"prompt_tokens" not in out


def test_stream_without_usage_gives_text_for_counting() -> None:
    relay = provider().stream(chat({}, stream=True))
    relay.feed(_sse(CONTENT, MORE, b"[DONE]"))
    assert relay.usage is None
    assert relay.completion_text() == "Hello"


def test_upstream_error_keeps_status_code_and_retry_after() -> None:
    body = orjson.dumps(
        {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}
    )
    error = provider().error(chat({}), 429, body, {"retry-after": "3"})
    assert isinstance(error, UpstreamStatus)
    assert (error.status, error.code, error.headers) == (429, "rate_limit_exceeded", {"retry-after": "3"})
    assert orjson.loads(error.body())["error"]["message"] == "slow down"


@pytest.mark.parametrize("status", [401, 403])
def test_upstream_auth_errors_never_show_the_vendors_message(status: int) -> None:
    body = orjson.dumps(
        {"error": {"message": f"Incorrect API key provided: {SECRET}", "code": "invalid_api_key"}}
    )
    error = provider().error(chat({}), status, body, {})
    assert error.status == status and error.code == "upstream_auth_error"
    assert SECRET not in error.body().decode() and "sk-" not in error.body().decode()


def test_upstream_error_quoting_the_key_is_scrubbed() -> None:
    body = orjson.dumps({"error": {"message": f"bad request for {SECRET}"}})
    for call in (chat({}), Call(op=Operation.PROXY, body=b"")):
        assert SECRET not in provider().error(call, 400, body, {}).body().decode()


def test_garbage_upstream_error_still_has_a_code() -> None:
    error = provider().error(chat({}), 502, b"<html>bad gateway</html>", {})
    assert error.status == 502 and error.code == "upstream_error"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("3", "3"), ("1.2", "2"), ("0", "0"), ("-4", "0"), ("soon", None), ("nan", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", "0")],
    ids=["seconds", "fraction rounds up", "zero", "negative", "garbage", "nan", "past date"],
)  # fmt: skip
def test_retry_after_is_whole_seconds(sent: str, kept: str | None) -> None:
    error = provider().error(chat({}), 429, b"{}", {"retry-after": sent})
    assert error.headers.get("retry-after") == kept


def test_retry_after_as_a_future_date() -> None:
    from email.utils import formatdate

    error = provider().error(chat({}), 503, b"{}", {"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert 29 <= int(error.headers["retry-after"]) <= 31
