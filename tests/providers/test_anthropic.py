"""The Anthropic adapter in isolation: request translation, answers and streams translated back, usage and
finish reasons, errors, the model list and `/proxy/` accounting."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.errors import InvalidRequest, UpstreamStatus
from mocks.anthropic_answer import Answer, message_json, stream_events, usage
from providers.anthropic import Anthropic
from providers.anthropic_messages import to_anthropic
from providers.anthropic_stream import AnthropicStream
from providers.base import Call, Operation, Usage
from providers.chat import parse_chat
from sync.model import Llm

SECRET = "sk-ant-secret-0123456789"
PNG = "iVBORw0KGgo="
USER = {"role": "user", "content": "Hi"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
CALL = {
    "id": "toolu_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
}


def provider(**fields: Any) -> Anthropic:
    llm = Llm(slug="claude", vendor="anthropic", **{"api_base": "http://up.test", **fields})
    return Anthropic(llm, SECRET)


def chat(body: dict[str, Any], **fields: Any) -> Call:
    return Call(op=Operation.CHAT, body=orjson.dumps(body), model="claude-haiku-4-5", **fields)


def sent(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    request = asyncio.run(provider(**fields).request(chat(body)))
    assert request.body is not None
    result: dict[str, Any] = orjson.loads(request.body)
    return result


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


BASE = {"model": "claude-haiku-4-5", "max_tokens": 4096}

# (id, OpenAI request fields, expected Anthropic body)
REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain", {"messages": [USER]}, {**BASE, "messages": [{"role": "user", "content": [text("Hi")]}]}),
    (
        "system and developer hoisted",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                USER,
                {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
            ]
        },
        {**BASE, "system": "Be brief.\n\nNo emoji.", "messages": [{"role": "user", "content": [text("Hi")]}]},
    ),
    (
        "consecutive roles merged",
        {"messages": [USER, {"role": "user", "content": "again"}, {"role": "assistant", "content": "Yes"}]},
        {
            **BASE,
            "messages": [
                {"role": "user", "content": [text("Hi"), text("again")]},
                {"role": "assistant", "content": [text("Yes")]},
            ],
        },
    ),
    (
        "limits and sampling",
        {
            "messages": [USER],
            "max_completion_tokens": 50,
            "max_tokens": 70,
            "temperature": 0.3,
            "top_p": 0.9,
            "stop": "END",
            "seed": 7,
            "presence_penalty": 0.5,
            "user": "u-1",
        },
        {
            **BASE,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": [text("Hi")]}],
            "temperature": 0.3,
            "top_p": 0.9,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
        },
    ),
    (
        "images: data URL inline, http URL by reference",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/a.jpg", "detail": "low"},
                        },
                    ],
                }
            ]
        },
        {
            **BASE,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        text("What is this?"),
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                    ],
                }
            ],
        },
    ),
    (
        "pdf file",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {"file_data": f"data:application/pdf;base64,{PNG}", "filename": "a.pdf"},
                        }
                    ],
                }
            ]
        },
        {
            **BASE,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": PNG},
                            "title": "a.pdf",
                        }
                    ],
                }
            ],
        },
    ),
    (
        "tools, tool calls and their results",
        {
            "messages": [
                USER,
                {"role": "assistant", "content": "", "tool_calls": [CALL, {**CALL, "id": "toolu_2"}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "Rain"}]},
                {"role": "user", "content": "And now?"},
            ],
            "tools": [WEATHER],
            "tool_choice": "auto",
        },
        {
            **BASE,
            "messages": [
                {"role": "user", "content": [text("Hi")]},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"location": "Paris"},
                        },
                        {
                            "type": "tool_use",
                            "id": "toolu_2",
                            "name": "get_weather",
                            "input": {"location": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "Rain"},
                        text("And now?"),
                    ],
                },
            ],
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
                }
            ],
            "tool_choice": {"type": "auto"},
        },
    ),
    (
        "required, no parallel calls",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False},
        {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
    ),
    (
        "no parallel calls alone",
        {"messages": [USER], "tools": [WEATHER], "parallel_tool_calls": False},
        {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
    ),
    (
        "none",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "none"},
        {"tool_choice": {"type": "none"}},
    ),
    (
        "named",
        {
            "messages": [USER],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
        {"tool_choice": {"type": "tool", "name": "get_weather"}},
    ),
    (
        "tool without parameters, strict",
        {"messages": [USER], "tools": [{"type": "function", "function": {"name": "now", "strict": True}}]},
        {"tools": [{"name": "now", "input_schema": {"type": "object", "properties": {}}, "strict": True}]},
    ),
    (
        "json_schema is a structured output",
        {
            "messages": [USER],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": {"type": "object"}},
            },
        },
        {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
    ),
    (
        "json_object is a forced tool",
        {"messages": [USER], "response_format": {"type": "json_object"}},
        {"tool_choice": {"type": "tool", "name": "json_object"}},
    ),
    ("stream", {"messages": [USER], "stream": True}, {"stream": True}),
]


@pytest.mark.parametrize(("body", "expected"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS])
def test_chat_request(body: dict[str, Any], expected: dict[str, Any]) -> None:
    request = asyncio.run(provider().request(chat(body, stream=bool(body.get("stream")))))
    assert request.method == "POST" and request.url == "http://up.test/v1/messages"
    assert request.headers == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": SECRET,
    }
    assert request.body is not None
    translated = orjson.loads(request.body)
    if "messages" in expected:
        assert translated == expected
    else:  # only the fields the case is about
        assert {k: translated.get(k) for k in expected} == expected


def test_new_api_version_has_no_sampling_knobs() -> None:
    body = sent({"messages": [USER], "temperature": 0.2, "top_p": 0.5}, anthropic_version="2026-10-21")
    assert "temperature" not in body and "top_p" not in body


def test_translation_without_model_for_vertex() -> None:
    body = to_anthropic(parse_chat(orjson.dumps({"messages": [USER]})), None, stream=True)
    assert "model" not in body and body["stream"] is True and body["max_tokens"] == 4096


REFUSED = [
    ("n > 1", {"messages": [USER], "n": 2}, "n must be 1"),
    ("only system", {"messages": [{"role": "system", "content": "x"}]}, "at least one user or assistant"),
    (
        "audio",
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
        "audio",
    ),
    (
        "bmp image",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA=="}}],
                }
            ]
        },
        "not image/bmp",
    ),
    (
        "ftp image",
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}
            ]
        },
        "http(s) URL",
    ),
    (
        "arguments not an object",
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "[1]"}}],
                },
            ]
        },
        "must be a JSON object",
    ),
    ("tool without id", {"messages": [USER, {"role": "tool", "content": "x"}]}, "tool_call_id"),
    (
        "json_object with tools",
        {"messages": [USER], "tools": [WEATHER], "response_format": {"type": "json_object"}},
        "use response_format json_schema",
    ),
    (
        "file id",
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]},
        "PDF",
    ),
]


@pytest.mark.parametrize(("body", "words"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_requests(body: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidRequest, match=words.replace("(", r"\(").replace(")", r"\)")):
        sent(body)


def test_embeddings_are_a_clear_400() -> None:
    call = Call(op=Operation.EMBEDDINGS, body=b'{"input": "x"}', model="m")
    with pytest.raises(InvalidRequest, match="Anthropic, which has no embeddings API"):
        asyncio.run(provider().request(call))


def test_models_request_and_list() -> None:
    request = asyncio.run(
        provider(api_base="http://up.test/v1/").request(Call(op=Operation.MODELS, body=b""))
    )
    assert (request.method, request.url) == ("GET", "http://up.test/v1/models?limit=1000")
    assert request.headers == {"anthropic-version": "2023-06-01", "x-api-key": SECRET}
    listed = {
        "data": [
            {"id": "claude-x", "type": "model", "display_name": "X", "created_at": "2025-01-02T00:00:00Z"}
        ]
    }
    assert provider().models(orjson.dumps(listed)) == [
        {"id": "claude-x", "object": "model", "created": 1735776000, "owned_by": "anthropic"}
    ]


def test_proxy_request_adds_credentials_and_keeps_the_clients_version() -> None:
    call = Call(
        op=Operation.PROXY,
        body=b"{}",
        path="v1/messages",
        query="beta=true",
        headers={"anthropic-version": "2026-10-21", "anthropic-beta": "x"},
    )
    request = asyncio.run(provider(anthropic_version="2023-06-01").request(call))
    assert request.url == "http://up.test/v1/messages?beta=true"
    assert request.headers == {"anthropic-version": "2026-10-21", "anthropic-beta": "x", "x-api-key": SECRET}
    bare = asyncio.run(provider().request(Call(op=Operation.PROXY, body=b"", method="GET", path="v1/models")))
    assert bare.headers == {"anthropic-version": "2023-06-01", "x-api-key": SECRET} and bare.body is None


# --- answers ---------------------------------------------------------------------------------------------

CACHED = usage(20, 5, cache_read=6, cache_write=4)  # input_tokens 10: the cached parts are outside it
CACHED_USAGE = Usage(input_tokens=20, output_tokens=5, cache_read_tokens=6, cache_write_tokens=4)
TOOL_BLOCK = {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"location": "Paris"}}
ANSWERS = [
    ("text", Answer([text("Hello")], "end_turn", None, 5), "Hello", None, "stop"),
    ("stop sequence", Answer([text("Hel")], "stop_sequence", "lo", 5), "Hel", None, "stop"),
    ("max tokens", Answer([text("Hel")], "max_tokens", None, 5), "Hel", None, "length"),
    (
        "context window",
        Answer([text("Hel")], "model_context_window_exceeded", None, 5),
        "Hel",
        None,
        "length",
    ),
    ("refusal", Answer([], "refusal", None, 5), "", None, "content_filter"),
    ("tool call", Answer([TOOL_BLOCK], "tool_use", None, 5), None, "toolu_9", "tool_calls"),
    (
        "text and a tool call",
        Answer([text("Let me look."), TOOL_BLOCK], "tool_use", None, 5),
        "Let me look.",
        "toolu_9",
        "tool_calls",
    ),
]


@pytest.mark.parametrize(
    ("answer", "content", "call_id", "finish"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS]
)
def test_answer(answer: Answer, content: str | None, call_id: str | None, finish: str) -> None:
    body = orjson.dumps(message_json(answer, "claude-haiku-4-5-20251001", CACHED))
    reply = provider().response(chat({"messages": [USER]}), body, {})
    assert reply.usage == CACHED_USAGE and reply.model == "claude-haiku-4-5-20251001"
    completion = orjson.loads(reply.body)
    assert completion["object"] == "chat.completion" and completion["model"] == "claude-haiku-4-5-20251001"
    choice = completion["choices"][0]
    assert choice["message"]["content"] == content and choice["finish_reason"] == finish
    calls = choice["message"].get("tool_calls")
    if call_id is None:
        assert calls is None
    else:
        assert calls == [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
            }
        ]
    assert completion["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 5,
        "total_tokens": 25,
        "prompt_tokens_details": {"cached_tokens": 6},
    }


def test_json_object_answer_is_the_message_text() -> None:
    block = {"type": "tool_use", "id": "toolu_1", "name": "json_object", "input": {"a": 1}}
    body = orjson.dumps(message_json(Answer([block], "tool_use", None, 3), "claude-x", CACHED))
    reply = provider().response(
        chat({"messages": [USER], "response_format": {"type": "json_object"}}), body, {}
    )
    choice = orjson.loads(reply.body)["choices"][0]
    assert choice["message"]["content"] == '{"a":1}' and choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]


def test_proxy_answer_is_untouched_and_accounted() -> None:
    body = orjson.dumps(message_json(Answer([text("Hi")], "end_turn", None, 5), "claude-x", CACHED))
    reply = provider().response(Call(op=Operation.PROXY, body=b"{}"), body, {})
    assert reply.body is body and reply.usage == CACHED_USAGE and reply.model == "claude-x"
    other = provider().response(Call(op=Operation.PROXY, body=b""), b'{"input_tokens": 5}', {})
    assert other.usage is None and other.body == b'{"input_tokens": 5}'
    assert provider().proxy_model("v1/messages", b'{"model": "claude-x", "messages": []}') == "claude-x"
    assert provider().proxy_model("v1/models", b"") == ""


# --- streams -----------------------------------------------------------------------------------------


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _translate(
    events: list[bytes], size: int, body: dict[str, Any] | None = None, **fields: Any
) -> tuple[list[dict[str, Any]], bytes, AnthropicStream]:
    relay = provider().stream(chat(body or {"messages": [USER]}, stream=True, **fields))
    assert isinstance(relay, AnthropicStream)
    out = b"".join(relay.feed(chunk) for chunk in _chunks(b"".join(events), size)) + relay.finish()
    payloads = [line[6:] for line in out.split(b"\n") if line.startswith(b"data: ")]
    chunks = [orjson.loads(p) for p in payloads if p != b"[DONE]"]
    return chunks, out, relay


@pytest.mark.parametrize("size", [1, 7, 64, 100_000], ids=lambda s: f"chunks of {s}")
def test_stream_of_text(size: int) -> None:
    answer = Answer([text("Hello there world")], "end_turn", None, 3)
    chunks, out, relay = _translate(stream_events(answer, "claude-x", CACHED), size, include_usage=True)
    assert out.endswith(b"data: [DONE]\n\n")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        == "Hello there world"
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert all(c["model"] == "claude-x" for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 20
    assert relay.usage == CACHED_USAGE and relay.model == "claude-x"
    assert relay.completion_text() == "Hello there world"


@pytest.mark.parametrize("size", [1, 13, 100_000], ids=lambda s: f"chunks of {s}")
def test_stream_of_tool_calls(size: int) -> None:
    second = {**TOOL_BLOCK, "id": "toolu_10"}
    answer = Answer([text("Looking."), TOOL_BLOCK, second], "tool_use", None, 3)
    chunks, _, relay = _translate(stream_events(answer, "claude-x", CACHED), size)
    assert all("usage" not in c for c in chunks)  # the client did not ask for it
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk["choices"][0]["delta"].get("tool_calls") or ():
            call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.get("id", "")
            call["name"] += delta.get("function", {}).get("name", "")
            call["arguments"] += delta["function"].get("arguments", "")
    assert calls == {
        0: {"id": "toolu_9", "name": "get_weather", "arguments": '{"location": "Paris"}'},
        1: {"id": "toolu_10", "name": "get_weather", "arguments": '{"location": "Paris"}'},
    }
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert relay.usage == CACHED_USAGE


def test_stream_of_json_mode_is_text() -> None:
    block = {"type": "tool_use", "id": "toolu_1", "name": "json_object", "input": {"location": "Paris"}}
    events = stream_events(Answer([block], "tool_use", None, 3), "claude-x", CACHED)
    chunks, _, _ = _translate(events, 5, {"messages": [USER], "response_format": {"type": "json_object"}})
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == '{"location": "Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_stream_error_event_becomes_an_openai_error_without_done() -> None:
    events = stream_events(
        Answer([text("Hello there")], "end_turn", None, 3), "claude-x", CACHED, "overloaded_error"
    )
    chunks, out, relay = _translate(events, 9)
    assert not out.endswith(b"[DONE]\n\n") and b"event: error\n" in out
    assert chunks[-1] == {
        "error": {
            "message": "overloaded error",
            "type": "overloaded_error",
            "code": "overloaded_error",
            "param": None,
        }
    }
    assert relay.usage is not None and relay.usage.input_tokens == 20  # message_start's counts


@pytest.mark.parametrize("size", [1, 50, 100_000], ids=lambda s: f"chunks of {s}")
def test_native_stream_is_relayed_byte_for_byte(size: int) -> None:
    data = b"".join(stream_events(Answer([text("Hi you")], "end_turn", None, 2), "claude-x", CACHED))
    relay = provider().stream(Call(op=Operation.PROXY, body=b"{}", stream=True))
    out = b"".join(relay.feed(chunk) for chunk in _chunks(data, size)) + relay.finish()
    assert out == data
    assert relay.usage == CACHED_USAGE
    assert relay.model == "claude-x" and relay.completion_text() == "Hi you"


# --- errors --------------------------------------------------------------------------------------------


def _error(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})


ERRORS = [
    (
        "invalid",
        400,
        _error("invalid_request_error", "max_tokens: Field required"),
        {},
        "invalid_request_error",
        "invalid_request_error",
        None,
    ),
    (
        "rate limit",
        429,
        _error("rate_limit_error", "slow down"),
        {"retry-after": "2.5"},
        "rate_limit_error",
        "rate_limit_error",
        "3",
    ),
    (
        "overloaded",
        529,
        _error("overloaded_error", "Overloaded"),
        {},
        "overloaded_error",
        "overloaded_error",
        None,
    ),
    (
        "context window",
        400,
        _error("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
        {},
        "invalid_request_error",
        "context_length_exceeded",
        None,
    ),
    ("not json", 502, b"<html>bad gateway</html>", {}, "server_error", "upstream_error", None),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "code", "wait"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_error(
    status: int, body: bytes, headers: dict[str, str], kind: str, code: str, wait: str | None
) -> None:
    error = provider().error(chat({}), status, body, headers)
    assert isinstance(error, UpstreamStatus)
    assert (error.status, error.type, error.code) == (status, kind, code)
    assert error.headers.get("retry-after") == wait
    if body.startswith(b"{"):
        assert error.message == orjson.loads(body)["error"]["message"]


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_hide_the_vendors_message(status: int) -> None:
    error = provider().error(
        chat({}), status, _error("authentication_error", f"invalid x-api-key {SECRET}"), {}
    )
    assert error.code == "upstream_auth_error" and SECRET not in error.message
    assert SECRET not in error.body().decode()


def test_proxy_error_is_native_and_scrubbed() -> None:
    body = _error("invalid_request_error", f"bad key {SECRET} here")
    error = provider().error(
        Call(op=Operation.PROXY, body=b""), 400, body, {"content-type": "application/json"}
    )
    native = orjson.loads(error.body())
    assert native["type"] == "error" and native["error"]["message"] == "bad key [REDACTED] here"
