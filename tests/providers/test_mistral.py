"""The Mistral adapter alone: OpenAI requests as Mistral's, Mistral's answers and streams as OpenAI's,
Mistral's three error shapes."""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import Any

import orjson
import pytest

from gateway.errors import InvalidRequest, UpstreamStatus, UpstreamUnavailable
from providers.base import Call, Operation, Usage
from providers.mistral import Mistral
from providers.mistral_request import tool_id
from sync.model import Llm

KEY = "mistral-secret-0123456789"
BASE = "https://api.mistral.ai/v1"
USER = {"role": "user", "content": "Hi"}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
PNG = "data:image/png;base64,iVBORw0KGgo="
EMPTY_OBJECT = {"type": "object", "properties": {}}


def provider() -> Mistral:
    return Mistral(Llm(slug="mi", vendor="mistral"), KEY)


def call(op: Operation, body: dict[str, Any] | bytes, **fields: Any) -> Call:
    return Call(op=op, body=body if isinstance(body, bytes) else orjson.dumps(body), **fields)


def sent(body: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
    request = asyncio.run(
        provider().request(call(Operation.CHAT, body, model="mistral-small-latest", stream=stream))
    )
    assert request.url == BASE + "/chat/completions"
    assert request.headers == {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    assert request.body is not None
    result: dict[str, Any] = orjson.loads(request.body)
    assert result.pop("model") == "mistral-small-latest"
    return result


# fmt: off
OPENAI_CALL = {"id": "call_abc123", "type": "function",
               "function": {"name": "get_weather", "arguments": "{}"}}
MISTRAL_CALL = {**OPENAI_CALL, "id": "D681PevKs"}
NOW = {"type": "function", "function": {"name": "now"}}
NOW_WITH_PARAMETERS = {"type": "function", "function": {"name": "now", "parameters": EMPTY_OBJECT}}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": True}}
PARTS = [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief"}]
IMAGES = [{"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
          {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]
MISTRAL_IMAGES = [{"type": "image_url", "image_url": "https://x.test/cat.png"},
                  {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]
SHARED = {"prediction": {"type": "content", "content": "x"}, "prompt_cache_key": "k",
          "reasoning_effort": "low"}
MINE = {"safe_prompt": True, "random_seed": 3, "prompt_mode": "reasoning"}

# (id, OpenAI body, Mistral body without its model)
REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("sampling and limits under Mistral's names; no user",
     {"messages": [USER], "temperature": 0.2, "top_p": 0.9, "max_completion_tokens": 50, "seed": 7,
      "stop": ["END"], "presence_penalty": 0.1, "frequency_penalty": 0.2, "user": "u-1"},
     {"messages": [USER], "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "random_seed": 7,
      "stop": ["END"], "presence_penalty": 0.1, "frequency_penalty": 0.2}),
    ("developer is system, text parts joined",
     {"messages": [{"role": "developer", "content": PARTS}, USER], "max_tokens": 9},
     {"messages": [{"role": "system", "content": "Be brief"}, USER], "max_tokens": 9}),
    ("tools; required is any; parameters are required",
     {"messages": [USER], "tools": [WEATHER, NOW], "tool_choice": "required", "parallel_tool_calls": False},
     {"messages": [USER], "tools": [WEATHER, NOW_WITH_PARAMETERS], "tool_choice": "any",
      "parallel_tool_calls": False}),
    ("a named tool",
     {"messages": [USER], "tools": [WEATHER], "tool_choice": NAMED},
     {"messages": [USER], "tools": [WEATHER], "tool_choice": NAMED}),
    ("tool call ids made Mistral's, the same in the call and its answer",
     {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [OPENAI_CALL]},
                   {"role": "tool", "tool_call_id": "call_abc123", "content": "sunny"}]},
     {"messages": [USER, {"role": "assistant", "tool_calls": [{**OPENAI_CALL, "id": tool_id("call_abc123")}]},
                   {"role": "tool", "tool_call_id": tool_id("call_abc123"), "content": "sunny"}]}),
    ("Mistral's own ids are kept",
     {"messages": [USER, {"role": "assistant", "tool_calls": [MISTRAL_CALL]},
                   {"role": "tool", "tool_call_id": "D681PevKs", "content": "sunny"}]},
     {"messages": [USER, {"role": "assistant", "tool_calls": [MISTRAL_CALL]},
                   {"role": "tool", "tool_call_id": "D681PevKs", "content": "sunny"}]}),
    ("a last assistant message is a prefix",
     {"messages": [USER, {"role": "assistant", "content": "Sure,"}]},
     {"messages": [USER, {"role": "assistant", "content": "Sure,", "prefix": True}]}),
    ("images by URL and inline, with detail",
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "What?"}, *IMAGES]}]},
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "What?"}, *MISTRAL_IMAGES]}]}),
    ("json schema",
     {"messages": [USER], "response_format": SCHEMA},
     {"messages": [USER], "response_format": SCHEMA}),
    ("json mode",
     {"messages": [USER], "response_format": {"type": "json_object"}},
     {"messages": [USER], "response_format": {"type": "json_object"}}),
    ("Mistral's own fields and the ones it shares with OpenAI; none of OpenAI's others",
     {"messages": [USER], **MINE, **SHARED, "store": True, "metadata": {"a": "b"}, "service_tier": "flex"},
     {"messages": [USER], **MINE, **SHARED}),
]
# fmt: on


@pytest.mark.parametrize(("body", "expected"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS])
def test_chat_request(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert sent(body) == expected


def test_stream_request_has_no_stream_options() -> None:
    body = {"messages": [USER], "stream": True, "stream_options": {"include_usage": True}}
    assert sent(body, stream=True) == {"messages": [USER], "stream": True}


def test_tool_ids_are_nine_letters_or_digits_and_stable() -> None:
    for original in ("call_abc123", "toolu_01A", "x", "a" * 40):
        made = tool_id(original)
        assert len(made) == 9 and made.isalnum() and made.isascii() and tool_id(original) == made
    assert tool_id("call_abc123") != tool_id("call_abc124")


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [USER], "n": 2},
        {"messages": [{"role": "function", "name": "f", "content": "x"}]},
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xx"}}],
                }
            ]
        },
        {"messages": "nope"},
    ],
    ids=["n", "function role", "file part", "data URL not base64", "not a chat body"],
)
def test_what_mistral_cannot_take_is_a_clear_400(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        sent(body)


def test_embeddings_request() -> None:
    body = {"model": "codestral-embed", "input": ["a", "b"], "dimensions": 256, "encoding_format": "base64"}
    request = asyncio.run(provider().request(call(Operation.EMBEDDINGS, body, model="codestral-embed")))
    assert request.url == BASE + "/embeddings"
    assert request.body is not None
    assert orjson.loads(request.body) == {
        "model": "codestral-embed",
        "input": ["a", "b"],
        "output_dimension": 256,
    }


def test_models_and_proxy_requests() -> None:
    models = asyncio.run(provider().request(Call(op=Operation.MODELS, body=b"", method="GET")))
    assert (models.url, models.headers) == (BASE + "/models", {"authorization": f"Bearer {KEY}"})
    proxied = asyncio.run(
        provider().request(
            call(Operation.PROXY, b"{}", path="v1/chat/completions", query="a=1", headers={"x": "y"})
        )
    )
    # Mistral's SDK names paths from the server root, /v1 included
    assert proxied.url == "https://api.mistral.ai/v1/chat/completions?a=1"
    assert proxied.headers == {"x": "y", "authorization": f"Bearer {KEY}"} and proxied.body == b"{}"


# --- answers --------------------------------------------------------------------------------------------

USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 5,
    "total_tokens": 35,
    "prompt_tokens_details": {"cached_tokens": 12},
}


def completion(message: dict[str, Any], finish: str = "stop") -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
    return orjson.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "model": "mistral-small-latest",
            "created": 1,
            "choices": [choice],
            "usage": USAGE,
        }
    )


ANSWERS = [
    ("text", completion({"content": "Hello", "tool_calls": None}), "Hello", [], "stop"),
    ("context window", completion({"content": "Hel"}, "model_length"), "Hel", [], "length"),
    (
        "reasoning chunks are not the answer",
        completion(
            {
                "content": [
                    {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
                    {"type": "text", "text": "Hello"},
                ]
            }
        ),
        "Hello",
        [],
        "stop",
    ),
    (
        "tool call with object arguments",
        completion(
            {
                "content": "",
                "tool_calls": [{"id": "D681PevKs", "function": {"name": "f", "arguments": {"a": 1}}}],
            },
            "tool_calls",
        ),
        None,
        [{"id": "D681PevKs", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
        "tool_calls",
    ),
]


@pytest.mark.parametrize(
    ("body", "content", "calls", "finish"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS]
)
def test_chat_answer(body: bytes, content: str | None, calls: list[dict[str, Any]], finish: str) -> None:
    reply = provider().response(call(Operation.CHAT, {}, model="mistral-small-latest"), body, {})
    answer = orjson.loads(reply.body)
    assert answer["object"] == "chat.completion" and answer["model"] == "mistral-small-latest"
    (choice,) = answer["choices"]
    assert choice["message"]["content"] == content and choice["finish_reason"] == finish
    assert choice["message"].get("tool_calls", []) == calls
    assert reply.usage == Usage(30, 5, cache_read_tokens=12)
    assert answer["usage"]["prompt_tokens_details"] == {"cached_tokens": 12}


def test_garbage_answer_is_a_502() -> None:
    with pytest.raises(UpstreamUnavailable):
        provider().response(call(Operation.CHAT, {}), b"<html>", {})


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_answer(encoding: str) -> None:
    body = orjson.dumps(
        {
            "id": "e",
            "object": "list",
            "model": "mistral-embed",
            "usage": {"prompt_tokens": 4},
            "data": [
                {"object": "embedding", "embedding": [0.5, 0.25], "index": 1},
                {"object": "embedding", "embedding": [1.0, 0.0], "index": 0},
            ],
        }
    )
    request = call(
        Operation.EMBEDDINGS, {"model": "mistral-embed", "input": ["a", "b"], "encoding_format": encoding}
    )
    reply = provider().response(request, body, {})
    data = [item["embedding"] for item in orjson.loads(reply.body)["data"]]
    if encoding == "base64":
        data = [list(struct.unpack("<2f", base64.b64decode(item))) for item in data]
    assert data == [[1.0, 0.0], [0.5, 0.25]]  # in input order
    assert reply.usage == Usage(4) and reply.model == "mistral-embed"


def test_native_answer_passes_through_with_its_usage() -> None:
    body = completion({"content": "Hello"})
    reply = provider().response(call(Operation.PROXY, b""), body, {})
    assert reply.body == body and reply.usage == Usage(30, 5, cache_read_tokens=12)


# --- streams --------------------------------------------------------------------------------------------


def sse(*payloads: object) -> bytes:
    return b"".join(b"data: " + (p if isinstance(p, bytes) else orjson.dumps(p)) + b"\n\n" for p in payloads)


def chunk(
    delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "mistral-small-latest",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        data["usage"] = usage
    return data


TEXT_STREAM = sse(
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": [{"type": "text", "text": "lo"}]}),
    chunk({"content": ""}, "stop", USAGE),
    b"[DONE]",
)
TOOL_CALL = {
    "id": "D681PevKs",
    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
    "index": 0,
}
TOOL_STREAM = sse(
    chunk({"role": "assistant", "content": ""}), chunk({"tool_calls": [TOOL_CALL]}, "tool_calls", USAGE)
)


def events(out: bytes) -> list[Any]:
    return [orjson.loads(e[6:]) if e != b"data: [DONE]" else "[DONE]" for e in out.split(b"\n\n") if e]


def relay_all(stream: bytes, size: int, include_usage: bool = False) -> tuple[list[Any], Any]:
    relay = provider().stream(
        call(Operation.CHAT, {}, model="mistral-small-latest", include_usage=include_usage)
    )
    out = b""
    for start in range(0, len(stream), size):
        piece = relay.feed(stream[start : start + size])
        assert piece == b"" or piece.endswith(b"\n\n")
        out += piece
    return events(out + relay.finish()), relay


@pytest.mark.parametrize("size", [1, 9, 50, 10_000])
def test_text_stream(size: int) -> None:
    out, relay = relay_all(TEXT_STREAM, size)
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in out[:-1]) == "Hello"
    assert out[-2]["choices"][0]["finish_reason"] == "stop" and out[-1] == "[DONE]"
    assert all(e == "[DONE]" or (e["object"] == "chat.completion.chunk" and "usage" not in e) for e in out)
    assert relay.usage == Usage(30, 5, cache_read_tokens=12) and relay.completion_text() == "Hello"
    assert relay.model == "mistral-small-latest"


def test_text_stream_with_the_usage_chunk_asked_for() -> None:
    out, _ = relay_all(TEXT_STREAM, 64, include_usage=True)
    assert out[-2]["choices"] == [] and out[-2]["usage"]["prompt_tokens"] == 30 and out[-1] == "[DONE]"
    assert out[-2]["usage"]["prompt_tokens_details"] == {"cached_tokens": 12}


@pytest.mark.parametrize("size", [1, 33, 10_000])
def test_tool_call_stream(size: int) -> None:
    out, relay = relay_all(TOOL_STREAM, size)
    calls = [
        e["choices"][0]["delta"]["tool_calls"][0]
        for e in out[:-1]
        if e["choices"][0]["delta"].get("tool_calls")
    ]
    assert calls == [
        {
            "index": 0,
            "id": "D681PevKs",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
        }
    ]
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls" and out[-1] == "[DONE]"
    assert relay.usage == Usage(30, 5, cache_read_tokens=12)


def test_parallel_calls_and_argument_fragments_get_their_own_indexes() -> None:
    second = {"id": "Xy12Ab34C", "function": {"name": "now", "arguments": "{"}}
    fragment = {"function": {"arguments": "}"}}
    stream = sse(
        chunk({"tool_calls": [TOOL_CALL, second]}), chunk({"tool_calls": [fragment]}, "tool_calls"), b"[DONE]"
    )
    out, relay = relay_all(stream, 10_000)
    calls = [c for e in out[:-1] for c in e["choices"][0]["delta"].get("tool_calls") or ()]
    assert [(c["index"], c.get("id"), c["function"]["arguments"]) for c in calls] == [
        (0, "D681PevKs", '{"location": "Paris"}'),
        (1, "Xy12Ab34C", "{"),
        (1, None, "}"),
    ]
    assert relay.usage is None and out[-1] == "[DONE]"


def test_usage_after_the_finish_chunk_and_a_stream_cut_before_done() -> None:
    stream = sse(chunk({"content": "Hi"}), chunk({}, "length"), {"id": "c", "choices": [], "usage": USAGE})
    out, _relay = relay_all(stream, 10_000, include_usage=True)
    assert out[-3]["choices"][0]["finish_reason"] == "length"
    assert out[-2]["usage"]["completion_tokens"] == 5 and out[-1] == "[DONE]"
    cut, _ = relay_all(sse(chunk({"content": "Hi"})), 10_000)
    assert cut[-2]["choices"][0]["finish_reason"] == "stop" and cut[-1] == "[DONE]"


def test_error_event_ends_the_stream() -> None:
    stream = sse(chunk({"content": "Hi"}), {"object": "error", "message": "overloaded", "type": "internal"})
    relay = provider().stream(call(Operation.CHAT, {}))
    out = relay.feed(stream) + relay.finish()
    assert out.endswith(b"\n\n") and b"event: error\ndata: " in out and b"overloaded" in out
    assert b"[DONE]" not in out


def test_native_stream_is_untouched() -> None:
    relay = provider().stream(call(Operation.PROXY, b""))
    assert relay.feed(TEXT_STREAM) + relay.finish() == TEXT_STREAM
    assert relay.usage == Usage(30, 5, cache_read_tokens=12)


# --- errors, models -------------------------------------------------------------------------------------

# fmt: off
DETAIL = [{"type": "extra_forbidden", "loc": ["body", "messages", 0, "user", "name"],
           "msg": "Extra inputs are not permitted"}]
EMPTY = "Assistant message must have either content or tool_calls, but not none."
WHERE = "messages[0].user.name: Extra inputs are not permitted"
# (id, status, body, the client's message, the client's code)
ERRORS = [
    ("Mistral's envelope", 400,
     {"object": "error", "message": "Invalid model: x", "type": "invalid_model", "code": "1500"},
     "Invalid model: x", "invalid_model"),
    ("generic type", 400,
     {"object": "error", "message": EMPTY, "type": "invalid_request_error", "param": None, "code": None},
     EMPTY, "upstream_error"),
    ("FastAPI's 422", 422, {"detail": DETAIL}, WHERE, "upstream_error"),
    ("422 inside the envelope", 422,
     {"object": "error", "message": {"detail": DETAIL}, "type": "invalid_request_error"},
     WHERE, "upstream_error"),
    ("rate limit", 429,
     {"object": "error", "message": "Rate limit exceeded", "type": "rate_limited", "code": "1300"},
     "Rate limit exceeded", "rate_limit_exceeded"),
    ("no JSON", 503, None, "the upstream answered HTTP 503", "upstream_error"),
]
# fmt: on


@pytest.mark.parametrize(
    ("status", "body", "message", "code"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors(status: int, body: dict[str, Any] | None, message: str, code: str) -> None:
    raw = orjson.dumps(body) if body is not None else b"<html>"
    error = provider().error(call(Operation.CHAT, {}), status, raw, {"retry-after": "4"})
    assert isinstance(error, UpstreamStatus)
    assert (error.status, error.message, error.code, error.headers) == (
        status,
        message,
        code,
        {"retry-after": "4"},
    )


def test_auth_and_native_errors() -> None:
    denied = provider().error(call(Operation.CHAT, {}), 401, b'{"detail":"Unauthorized"}', {})
    assert denied.code == "upstream_auth_error"
    native = provider().error(call(Operation.PROXY, b""), 422, orjson.dumps({"detail": DETAIL}), {})
    assert native.status == 422 and orjson.loads(native.body()) == {"detail": DETAIL}


def test_models_and_proxy_model() -> None:
    listed = orjson.dumps(
        {"object": "list", "data": [{"id": "mistral-small-latest", "capabilities": {}}, {"id": "x"}]}
    )
    assert [m["id"] for m in provider().models(listed)] == ["mistral-small-latest", "x"]
    with pytest.raises(UpstreamUnavailable):
        provider().models(b"[]")
    assert (
        provider().proxy_model("v1/chat/completions", b'{"model": "mistral-large-latest"}')
        == "mistral-large-latest"
    )
    assert provider().proxy_model("v1/models", b"") == ""
