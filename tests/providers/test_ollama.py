"""The Ollama adapter in isolation: request translation, answers, NDJSON streams in any chunking, usage,
finish reasons, errors, the model list and the native pass-through."""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import Any

import orjson
import pytest

from gateway.errors import InvalidRequest, UpstreamStatus, UpstreamUnavailable
from providers import sse
from providers.base import Call, Operation, Usage
from providers.ollama import Ollama
from providers.ollama_answer import finish_reason
from sync.model import Llm

SECRET = "ollama-proxy-token-0123456789"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
USER = {"role": "user", "content": "Hi"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        "strict": True,
    },
}
OTHER = {"type": "function", "function": {"name": "get_time"}}
WEATHER_OUT = {
    "type": "function",
    "function": {k: v for k, v in WEATHER["function"].items() if k != "strict"},  # type: ignore[attr-defined]
}


def provider(api_key: str | None = SECRET, api_base: str | None = "http://up.test:11434/") -> Ollama:
    return Ollama(Llm(slug="local", vendor="ollama", api_base=api_base), api_key)


def chat(body: dict[str, Any], **fields: Any) -> Call:
    return Call(op=Operation.CHAT, body=orjson.dumps(body), model="llama3.2", **fields)


def sent(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    request = asyncio.run(provider().request(chat(body, **fields)))
    assert request.body is not None
    result: dict[str, Any] = orjson.loads(request.body)
    return result


# --- requests ------------------------------------------------------------------------------------------

BASE = {"model": "llama3.2", "stream": False}
REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "system and user",
        {"messages": [{"role": "system", "content": "Be brief."}, USER]},
        {},
        {**BASE, "messages": [{"role": "system", "content": "Be brief."}, USER]},
    ),
    (
        "developer is a system message, names dropped",
        {"messages": [{"role": "developer", "content": "Rules"}, {**USER, "name": "ann"}]},
        {},
        {**BASE, "messages": [{"role": "system", "content": "Rules"}, USER]},
    ),
    (
        "stream is always said",
        {"messages": [USER], "stream": True},
        {"stream": True},
        {**BASE, "stream": True, "messages": [USER]},
    ),
    (
        "sampling into options",
        {
            "messages": [USER],
            "temperature": 0.2,
            "top_p": 0.9,
            "seed": 7,
            "max_tokens": 64,
            "stop": "END",
            "presence_penalty": 0.5,
            "frequency_penalty": 0.1,
            "user": "u1",
        },
        {},
        {
            **BASE,
            "messages": [USER],
            "options": {
                "temperature": 0.2,
                "top_p": 0.9,
                "seed": 7,
                "num_predict": 64,
                "presence_penalty": 0.5,
                "frequency_penalty": 0.1,
                "stop": ["END"],
            },
        },
    ),
    (
        "max_completion_tokens wins",
        {"messages": [USER], "max_tokens": 64, "max_completion_tokens": 32, "stop": ["a", "b"]},
        {},
        {**BASE, "messages": [USER], "options": {"num_predict": 32, "stop": ["a", "b"]}},
    ),
    (
        "text parts and a data URL image",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PNG.rstrip('=')}", "detail": "low"},
                        },
                        {"type": "text", "text": "this?"},
                    ],
                }
            ]
        },
        {},
        {**BASE, "messages": [{"role": "user", "content": "What is\nthis?", "images": [PNG]}]},
    ),
    (
        "tool calls and their results",
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": ""},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
                {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
                {"role": "tool", "tool_call_id": "call_9", "content": "orphan"},
                {"role": "function", "name": "get_time", "content": "legacy"},
            ]
        },
        {},
        {
            **BASE,
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"function": {"name": "get_weather", "arguments": {"location": "Paris"}}},
                        {"function": {"name": "get_time", "arguments": {}}},
                    ],
                },
                {"role": "tool", "content": "noon", "tool_name": "get_time"},
                {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
                {"role": "tool", "content": "orphan"},
                {"role": "tool", "content": "legacy", "tool_name": "get_time"},
            ],
        },
    ),
    (
        "refusal text kept",
        {"messages": [USER, {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}]},
        {},
        {**BASE, "messages": [USER, {"role": "assistant", "content": "No."}]},
    ),
    (
        "tools offered",
        {"messages": [USER], "tools": [WEATHER, OTHER]},
        {},
        {**BASE, "messages": [USER], "tools": [WEATHER_OUT, OTHER]},
    ),
    (
        "tool_choice auto",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "auto"},
        {},
        {**BASE, "messages": [USER], "tools": [WEATHER_OUT]},
    ),
    (
        "tool_choice none offers none",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "none"},
        {},
        {**BASE, "messages": [USER]},
    ),
    (
        "tool_choice required cannot be enforced: all offered",
        {
            "messages": [USER],
            "tools": [WEATHER, OTHER],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        },
        {},
        {**BASE, "messages": [USER], "tools": [WEATHER_OUT, OTHER]},
    ),
    (
        "a named tool_choice offers that tool alone",
        {
            "messages": [USER],
            "tools": [WEATHER, OTHER],
            "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        },
        {},
        {**BASE, "messages": [USER], "tools": [OTHER]},
    ),
    (
        "json mode",
        {"messages": [USER], "response_format": {"type": "json_object"}},
        {},
        {**BASE, "messages": [USER], "format": "json"},
    ),
    (
        "json schema",
        {
            "messages": [USER],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": {"type": "object"}},
            },
        },
        {},
        {**BASE, "messages": [USER], "format": {"type": "object"}},
    ),
    (
        "text format",
        {"messages": [USER], "response_format": {"type": "text"}, "n": 1},
        {},
        {**BASE, "messages": [USER]},
    ),
]


@pytest.mark.parametrize(
    ("body", "fields", "expected"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS]
)
def test_chat_request(body: dict[str, Any], fields: dict[str, Any], expected: dict[str, Any]) -> None:
    assert sent({"model": "ignored-the-call-says", **body}, **fields) == expected


def test_chat_request_line() -> None:
    request = asyncio.run(provider().request(chat({"messages": [USER]})))
    assert (request.method, request.url) == ("POST", "http://up.test:11434/api/chat")
    assert request.headers == {"content-type": "application/json", "authorization": f"Bearer {SECRET}"}
    local = asyncio.run(provider(None, api_base=None).request(chat({"messages": [USER]})))
    assert local.url == "http://127.0.0.1:11434/api/chat" and "authorization" not in local.headers


def _image(url: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("http image", _image("https://example.com/cat.png"), "Ollama takes inline images only"),
    ("data URL not base64", _image("data:image/png,raw"), "must be base64"),
    (
        "audio",
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
        "not audio parts",
    ),
    (
        "image in a system message",
        {
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
                }
            ]
        },
        "no image parts in system",
    ),
    (
        "arguments not JSON",
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{"}}],
                }
            ]
        },
        "'c1' are not valid JSON",
    ),
    (
        "arguments not an object",
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "[1]"}}],
                }
            ]
        },
        "must be a JSON object",
    ),
    ("several choices", {"messages": [USER], "n": 2}, "'n' must be 1"),
    (
        "unknown named tool",
        {
            "messages": [USER],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "nope"}},
        },
        "'nope', not in tools",
    ),
    ("not JSON at all", {"messages": "hi"}, "invalid request body"),
]


@pytest.mark.parametrize(("body", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_chat_request_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(provider().request(chat(body)))
    assert message in refused.value.message and refused.value.status == 400


EMBEDS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("one text", {"input": "hello"}, {"model": "nomic-embed-text", "input": "hello"}),
    (
        "texts",
        {"input": ["a", "b"], "dimensions": 8},
        {"model": "nomic-embed-text", "input": ["a", "b"], "dimensions": 8},
    ),
]


@pytest.mark.parametrize(("body", "expected"), [r[1:] for r in EMBEDS], ids=[r[0] for r in EMBEDS])
def test_embeddings_request(body: dict[str, Any], expected: dict[str, Any]) -> None:
    call = Call(op=Operation.EMBEDDINGS, body=orjson.dumps(body), model="nomic-embed-text")
    request = asyncio.run(provider().request(call))
    assert request.url == "http://up.test:11434/api/embed" and request.body is not None
    assert orjson.loads(request.body) == expected


def test_embeddings_of_tokens_are_refused() -> None:
    call = Call(op=Operation.EMBEDDINGS, body=b'{"input": [[1, 2]]}', model="nomic-embed-text")
    with pytest.raises(InvalidRequest):
        asyncio.run(provider().request(call))


def test_models_and_proxy_requests() -> None:
    models = asyncio.run(provider().request(Call(op=Operation.MODELS, body=b"", method="GET")))
    assert (models.method, models.url, models.body) == ("GET", "http://up.test:11434/api/tags", None)
    assert models.headers == {"authorization": f"Bearer {SECRET}"}
    native = Call(
        op=Operation.PROXY,
        body=b'{"model":"x"}',
        method="POST",
        path="api/chat",
        query="a=1",
        headers={"x-t": "1"},
    )
    request = asyncio.run(provider().request(native))
    assert (request.url, request.body) == ("http://up.test:11434/api/chat?a=1", b'{"model":"x"}')
    assert request.headers == {"x-t": "1", "authorization": f"Bearer {SECRET}"}


# --- answers ---------------------------------------------------------------------------------------------


def _answer(message: dict[str, Any], **fields: Any) -> bytes:
    body = {
        "model": "llama3.2",
        "created_at": "2025-01-01T00:00:00.1Z",
        "message": {"role": "assistant", **message},
    }
    return orjson.dumps({**body, "done": True, **fields})


COUNTS = {"done_reason": "stop", "prompt_eval_count": 12, "eval_count": 5}
CALL = {"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}
ANSWERS: list[tuple[str, bytes, Any, str, Usage | None]] = [
    ("text", _answer({"content": "Hello"}, **COUNTS), "Hello", "stop", Usage(12, 5)),
    (
        "cut short",
        _answer({"content": "Hel"}, **{**COUNTS, "done_reason": "length"}),
        "Hel",
        "length",
        Usage(12, 5),
    ),
    (
        "cached prompt part",
        _answer({"content": "Hi"}, **COUNTS, prompt_eval_cached_count=8),
        "Hi",
        "stop",
        Usage(12, 5, cache_read_tokens=8),
    ),
    (
        "prompt count left out",
        _answer({"content": "Hi"}, done_reason="stop", eval_count=5),
        "Hi",
        "stop",
        None,
    ),
    ("tool call", _answer({"content": "", "tool_calls": [CALL]}, **COUNTS), None, "tool_calls", Usage(12, 5)),
    ("load", _answer({"content": ""}, done_reason="load"), "", "stop", None),
]


@pytest.mark.parametrize(
    ("body", "content", "finish", "usage"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS]
)
def test_chat_answer(body: bytes, content: str | None, finish: str, usage: Usage | None) -> None:
    reply = provider().response(chat({"messages": [USER]}), body, {})
    assert (reply.usage, reply.model) == (usage, "llama3.2")
    answer = orjson.loads(reply.body)
    assert answer["object"] == "chat.completion" and answer["model"] == "llama3.2"
    (choice,) = answer["choices"]
    assert (choice["message"]["content"], choice["finish_reason"]) == (content, finish)
    if usage is None:
        assert "usage" not in answer  # the gateway counts with tiktoken instead
    else:
        assert answer["usage"]["prompt_tokens"] == usage.input_tokens
        assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == usage.cache_read_tokens


def test_tool_calls_get_ids_and_json_arguments() -> None:
    named = {"id": "call_ab12", **CALL}
    body = _answer({"content": "", "tool_calls": [CALL, named]}, **COUNTS)
    calls = orjson.loads(provider().response(chat({"messages": [USER]}), body, {}).body)["choices"][0][
        "message"
    ]
    first, second = calls["tool_calls"]
    assert first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": '{"location":"Paris"}'}
    assert second["id"] == "call_ab12"


def test_an_answer_that_is_not_ollamas_is_a_502() -> None:
    with pytest.raises(UpstreamUnavailable):
        provider().response(chat({"messages": [USER]}), b"<html>", {})


@pytest.mark.parametrize(
    ("done_reason", "tools", "expected"),
    [
        ("stop", False, "stop"),
        ("length", False, "length"),
        (None, False, "stop"),
        ("unload", False, "stop"),
        ("stop", True, "tool_calls"),
    ],
)
def test_finish_reason(done_reason: str | None, tools: bool, expected: str) -> None:
    assert finish_reason(done_reason, tools) == expected


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_answer(encoding: str) -> None:
    call = Call(
        op=Operation.EMBEDDINGS, body=orjson.dumps({"input": ["a"], "encoding_format": encoding}), model="m"
    )
    body = orjson.dumps({"model": "m", "embeddings": [[0.5, -0.25]], "prompt_eval_count": 3})
    reply = provider().response(call, body, {})
    assert reply.usage == Usage(3) and reply.model == "m"
    answer = orjson.loads(reply.body)
    vector = answer["data"][0]["embedding"]
    if encoding == "base64":
        vector = list(struct.unpack("<2f", base64.b64decode(vector)))
    assert vector == [0.5, -0.25] and answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    uncounted = provider().response(call, orjson.dumps({"model": "m", "embeddings": [[1.0]]}), {})
    assert uncounted.usage is None


# --- streams ----------------------------------------------------------------------------------------------


def _line(message: dict[str, Any] | None = None, **fields: Any) -> bytes:
    body = {"model": "llama3.2", "created_at": "2025-01-01T00:00:00.1Z", "done": False, **fields}
    if message is not None:
        body["message"] = {"role": "assistant", **message}
    return orjson.dumps(body) + b"\n"


FINAL = _line({"content": ""}, done=True, **COUNTS)
TEXT_STREAM = _line({"content": "Hel"}) + _line({"content": "lo"}) + FINAL
TOOL_STREAM = (
    _line({"content": "", "tool_calls": [CALL]}) + _line({"content": "", "tool_calls": [CALL]}) + FINAL
)


def _feed(relay: Any, data: bytes, size: int) -> bytes:
    out = b"".join(relay.feed(data[i : i + size]) for i in range(0, len(data), size))
    return bytes(out + relay.finish())


def _events(out: bytes) -> list[Any]:
    return [sse.data(e) if sse.data(e) == sse.DONE else orjson.loads(sse.data(e)) for e in sse.split(out)]


SIZES = [1, 2, 7, 64, 10_000]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("include_usage", [False, True])
def test_text_stream_in_any_chunking(size: int, include_usage: bool) -> None:
    relay = provider().stream(chat({"messages": [USER]}, stream=True, include_usage=include_usage))
    events = _events(_feed(relay, TEXT_STREAM, size))
    assert events[-1] == sse.DONE
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello"
    finish = [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert finish == ["stop"]
    usage_chunks = [c for c in chunks if not c["choices"]]
    assert len(usage_chunks) == int(include_usage)
    if include_usage:
        assert usage_chunks[0]["usage"]["prompt_tokens"] == 12
    assert relay.usage == Usage(12, 5) and relay.model == "llama3.2"
    assert relay.completion_text() == "Hello"


@pytest.mark.parametrize("size", SIZES)
def test_tool_call_stream(size: int) -> None:
    relay = provider().stream(chat({"messages": [USER]}, stream=True))
    chunks = _events(_feed(relay, TOOL_STREAM, size))[:-1]
    calls = [call for c in chunks for call in c["choices"][0]["delta"].get("tool_calls", ())]
    assert [c["index"] for c in calls] == [0, 1]
    assert all(
        c["id"].startswith("call_") and c["function"]["arguments"] == '{"location":"Paris"}' for c in calls
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_each_complete_line_goes_out_in_the_same_feed() -> None:
    relay = provider().stream(chat({"messages": [USER]}, stream=True))
    first, second = _line({"content": "Hel"}), _line({"content": "lo"})
    assert b'"content":"Hel"' in relay.feed(first)
    assert relay.feed(second[:10]) == b""  # half a line waits for its end
    assert b'"content":"lo"' in relay.feed(second[10:])


ENDINGS: list[tuple[str, bytes, str]] = [
    (
        "error line",
        _line({"content": "Hi"}) + b'{"error":"model runner crashed"}\n' + FINAL,
        "model runner crashed",
    ),
    ("cut before the final line", _line({"content": "Hi"}), "ended before its final line"),
    ("not JSON", b"<html>\n", "not JSON"),
]


@pytest.mark.parametrize(("data", "message"), [e[1:] for e in ENDINGS], ids=[e[0] for e in ENDINGS])
def test_broken_stream_ends_with_an_error_event(data: bytes, message: str) -> None:
    relay = provider().stream(chat({"messages": [USER]}, stream=True))
    out = _feed(relay, data, 5)
    last = sse.split(out)[-1]
    assert last.startswith(b"event: error") and message in orjson.loads(sse.data(last))["error"]["message"]
    assert sse.DONE not in out and relay.usage is None


def test_native_stream_is_relayed_untouched_and_counted() -> None:
    call = Call(op=Operation.PROXY, body=b"{}", path="api/chat")
    for size in SIZES:
        relay = provider().stream(call)
        assert _feed(relay, TEXT_STREAM, size) == TEXT_STREAM
        assert (relay.usage, relay.model, relay.completion_text()) == (Usage(12, 5), "llama3.2", "Hello")
    generate = orjson.dumps({"model": "m", "response": "Hi", "done": False}) + b"\n"
    generate += orjson.dumps(
        {"model": "m", "response": "", "done": True, "done_reason": "stop", "eval_count": 2}
    )
    relay = provider().stream(call)
    assert _feed(relay, generate, 9) == generate  # the last line has no newline: read at finish
    # no prompt count: no usage, and the gateway counts the native prompt and this text with tiktoken
    assert relay.usage is None and relay.completion_text() == "Hi"


NATIVE: list[tuple[str, bytes, Usage | None]] = [
    ("chat", _answer({"content": "Hi"}, **COUNTS), Usage(12, 5)),
    ("cached prompt left out", _answer({"content": "Hi"}, eval_count=5), Usage(0, 5)),
    ("embed", orjson.dumps({"model": "m", "embeddings": [[1.0]], "prompt_eval_count": 4}), Usage(4)),
    ("tags", orjson.dumps({"models": []}), None),
    ("not JSON", b"Ollama is running", None),
]


@pytest.mark.parametrize(("body", "usage"), [n[1:] for n in NATIVE], ids=[n[0] for n in NATIVE])
def test_native_answer_is_untouched(body: bytes, usage: Usage | None) -> None:
    reply = provider().response(Call(op=Operation.PROXY, body=b""), body, {})
    assert reply.body is body and reply.usage == usage


# --- errors, models, proxy model --------------------------------------------------------------------------

ERRORS: list[tuple[str, int, bytes, dict[str, str], str, str]] = [
    (
        "unknown model",
        404,
        b'{"error":"model \\"x\\" not found, try pulling it first"}',
        {},
        'model "x" not found, try pulling it first',
        "model_not_found",
    ),
    ("bad request", 400, b'{"error":"invalid input type"}', {}, "invalid input type", "upstream_error"),
    ("gin's 404", 404, b"404 page not found", {}, "the upstream answered HTTP 404", "upstream_error"),
    ("server error", 500, b'{"error":"out of memory"}', {}, "out of memory", "upstream_error"),
    (
        "busy",
        503,
        b'{"error":"server busy, please try again.  maximum pending requests exceeded"}',
        {"retry-after": "1.5"},
        "server busy",
        "upstream_error",
    ),
    (
        "credential quoted",
        400,
        b'{"error":"bad token ' + SECRET.encode() + b'"}',
        {},
        "bad token [REDACTED]",
        "upstream_error",
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "message", "code"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_error(status: int, body: bytes, headers: dict[str, str], message: str, code: str) -> None:
    error = provider().error(chat({}), status, body, headers)
    assert isinstance(error, UpstreamStatus) and error.status == status
    assert message in error.message and error.code == code and SECRET not in error.message
    assert error.headers == ({"retry-after": "2"} if headers else {})


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_not_quoted(status: int) -> None:
    error = provider().error(chat({}), status, b'{"error":"unauthorized ' + SECRET.encode() + b'"}', {})
    assert error.code == "upstream_auth_error" and SECRET not in error.message and "'local'" in error.message


def test_proxy_error_keeps_the_native_body() -> None:
    body = b'{"error":"model \\"x\\" not found (' + SECRET.encode() + b')"}'
    error = provider().error(
        Call(op=Operation.PROXY, body=b""), 404, body, {"content-type": "application/json"}
    )
    assert isinstance(error, UpstreamStatus) and error.status == 404
    assert error.body() == b'{"error":"model \\"x\\" not found ([REDACTED])"}'


def test_models() -> None:
    tags = {
        "models": [
            {
                "name": "llama3.2:latest",
                "model": "llama3.2:latest",
                "modified_at": "2025-05-12T09:41:02.3375231+02:00",
            },
            {"model": "qwen3:8b", "modified_at": "2025-01-01T00:00:00Z"},
            {"name": "broken", "modified_at": "yesterday"},
        ]
    }
    models = provider().models(orjson.dumps(tags))
    assert models == [
        {"id": "llama3.2:latest", "object": "model", "created": 1747035662, "owned_by": "library"},
        {"id": "qwen3:8b", "object": "model", "created": 1735689600, "owned_by": "library"},
        {"id": "broken", "object": "model", "created": 0, "owned_by": "library"},
    ]
    with pytest.raises(UpstreamUnavailable):
        provider().models(b'{"data": []}')


@pytest.mark.parametrize(
    ("body", "model"),
    [
        (b'{"model":"llama3.2","messages":[]}', "llama3.2"),
        (b'{"name":"llava"}', "llava"),
        (b"", ""),
        (b"{", ""),
        (b'{"prompt":"x"}', ""),
    ],
)
def test_proxy_model(body: bytes, model: str) -> None:
    assert provider().proxy_model("api/chat", body) == model


def test_ollamas_openai_compatible_api_is_accounted_as_openai() -> None:
    call = Call(op=Operation.PROXY, body=b"{}", path="v1/chat/completions")
    answer = orjson.dumps({"model": "llama3.2", "usage": {"prompt_tokens": 9, "completion_tokens": 2}})
    assert provider().response(call, answer, {}).usage == Usage(9, 2)
    stream = b'data: {"choices":[],"model":"llama3.2","usage":{"prompt_tokens":9,"completion_tokens":2}}\n\n'
    relay = provider().stream(call)
    assert relay.feed(stream) + relay.finish() == stream and relay.usage == Usage(9, 2)
