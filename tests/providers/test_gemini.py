"""The Gemini API adapter in isolation: OpenAI → Gemini requests, Gemini → OpenAI answers and streams,
usage, finish reasons, native (/proxy/) accounting and errors."""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import Any

import orjson
import pytest

from gateway.errors import InvalidRequest, UpstreamStatus
from providers.base import Call, Operation, Usage
from providers.gemini import GoogleAI
from providers.gemini_request import call_id
from sync.model import Llm

SECRET = "AIza-secret-0123456789"
BASE = "http://up.test"
USER = {"role": "user", "content": "Hi"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "additionalProperties": False,
        },
    },
}
DECLARATION = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parametersJsonSchema": WEATHER["function"]["parameters"],  # type: ignore[index]
}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def provider() -> GoogleAI:
    return GoogleAI(Llm(slug="gem", vendor="google_ai", api_base=BASE), SECRET)


def call(body: dict[str, Any], op: Operation = Operation.CHAT, **fields: Any) -> Call:
    return Call(op=op, body=orjson.dumps(body), model=fields.pop("model", "gemini-2.5-flash"), **fields)


def sent(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    request = asyncio.run(provider().request(call(body, **fields)))
    assert request.body is not None
    result: dict[str, Any] = orjson.loads(request.body)
    return result


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("user only", {"messages": [USER]}, {"contents": [user("Hi")]}),
    (
        "system and developer become the system instruction",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "No jokes."},
                USER,
            ]
        },
        {
            "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "No jokes."}]},
            "contents": [user("Hi")],
        },
    ),
    (
        "consecutive user messages merge, assistant is model",
        {
            "messages": [
                USER,
                {"role": "user", "content": "there"},
                {"role": "assistant", "content": "Hello"},
                USER,
            ]
        },
        {
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}, {"text": "there"}]},
                {"role": "model", "parts": [{"text": "Hello"}]},
                user("Hi"),
            ]
        },
    ),
    (
        "tool calls and their results",
        {
            "messages": [
                USER,
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
            ]
        },
        {
            "contents": [
                user("Hi"),
                {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
                },
                {
                    "role": "user",
                    "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}],
                },
            ]
        },
    ),
    (
        "tool results that are not objects are wrapped",
        {
            "messages": [
                USER,
                {"role": "assistant", "tool_calls": [CALL, {**CALL, "id": "call_2"}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": "[1, 2]"},
            ]
        },
        {
            "contents": [
                user("Hi"),
                {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}] * 2,
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                        {"functionResponse": {"name": "get_weather", "response": {"result": [1, 2]}}},
                    ],
                },
            ]
        },
    ),
    (
        "a thought signature rides back in the tool call id",
        {"messages": [USER, {"role": "assistant", "tool_calls": [{**CALL, "id": "call_9__thought__c2ln"}]}]},
        {
            "contents": [
                user("Hi"),
                {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "c2ln",
                        }
                    ],
                },
            ]
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
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.JPG?x=1"}},
                    ],
                }
            ]
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "What is this?"},
                        {"inlineData": {"mimeType": "image/png", "data": PIXEL}},
                        {
                            "fileData": {
                                "mimeType": "image/jpeg",
                                "fileUri": "https://example.com/cat.JPG?x=1",
                            }
                        },
                    ],
                }
            ]
        },
    ),
    (
        "sampling and limits",
        {
            "messages": [USER],
            "temperature": 0.2,
            "top_p": 0.9,
            "max_tokens": 50,
            "stop": "END",
            "seed": 7,
            "n": 2,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.1,
        },
        {
            "contents": [user("Hi")],
            "generationConfig": {
                "temperature": 0.2,
                "topP": 0.9,
                "maxOutputTokens": 50,
                "seed": 7,
                "presencePenalty": 0.5,
                "frequencyPenalty": 0.1,
                "stopSequences": ["END"],
                "candidateCount": 2,
            },
        },
    ),
    (
        "max_completion_tokens wins",
        {"messages": [USER], "max_tokens": 50, "max_completion_tokens": 9},
        {"contents": [user("Hi")], "generationConfig": {"maxOutputTokens": 9}},
    ),
    (
        "json mode",
        {"messages": [USER], "response_format": {"type": "json_object"}},
        {"contents": [user("Hi")], "generationConfig": {"responseMimeType": "application/json"}},
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
        {
            "contents": [user("Hi")],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object"},
            },
        },
    ),
    (
        "tools, auto",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "auto"},
        {
            "contents": [user("Hi")],
            "tools": [{"functionDeclarations": [DECLARATION]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        },
    ),
    (
        "tools, required",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "required"},
        {
            "contents": [user("Hi")],
            "tools": [{"functionDeclarations": [DECLARATION]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        },
    ),
    (
        "tools, none; no parameters",
        {
            "messages": [USER],
            "tools": [{"type": "function", "function": {"name": "now"}}],
            "tool_choice": "none",
        },
        {
            "contents": [user("Hi")],
            "tools": [{"functionDeclarations": [{"name": "now"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
        },
    ),
    (
        "tools, a named one",
        {
            "messages": [USER],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
        {
            "contents": [user("Hi")],
            "tools": [{"functionDeclarations": [DECLARATION]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        },
    ),
]


@pytest.mark.parametrize(("body", "expected"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS])
def test_chat_request_translation(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert sent(body) == expected


INVALID: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("system only", {"messages": [{"role": "system", "content": "x"}]}, {}, "at least one user"),
    (
        "image URL without a known extension",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x.test/img"}}],
                }
            ]
        },
        {},
        "media type",
    ),
    (
        "ftp image URL",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "ftp://x.test/a.png"}}],
                }
            ]
        },
        {},
        "http(s)",
    ),
    (
        "tool result for no call",
        {"messages": [USER, {"role": "tool", "tool_call_id": "nope", "content": "x"}]},
        {},
        "answers no tool call",
    ),
    (
        "arguments not JSON",
        {
            "messages": [
                USER,
                {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "{"}}]},
            ]
        },
        {},
        "not valid JSON",
    ),
    (
        "image in a system message",
        {
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
                },
                USER,
            ]
        },
        {},
        "text only",
    ),
    (
        "OpenAI file id",
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
        {},
        "file_data",
    ),
    ("n > 1 streamed", {"messages": [USER], "n": 2, "stream": True}, {"stream": True}, "n > 1"),
]


@pytest.mark.parametrize(("body", "fields", "message"), [r[1:] for r in INVALID], ids=[r[0] for r in INVALID])
def test_invalid_requests_are_refused_with_a_clear_400(
    body: dict[str, Any], fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        sent(body, **fields)


URLS: list[tuple[str, Call, str, str]] = [
    ("chat", call({"messages": [USER]}), "POST", f"{BASE}/v1beta/models/gemini-2.5-flash:generateContent"),
    (
        "stream",
        call({"messages": [USER]}, stream=True),
        "POST",
        f"{BASE}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    ),
    (
        "models/ prefix dropped",
        call({"messages": [USER]}, model="models/gemini-2.0-flash"),
        "POST",
        f"{BASE}/v1beta/models/gemini-2.0-flash:generateContent",
    ),
    (
        "embeddings",
        call({"input": "x"}, Operation.EMBEDDINGS, model="gemini-embedding-001"),
        "POST",
        f"{BASE}/v1beta/models/gemini-embedding-001:batchEmbedContents",
    ),
    ("models", Call(op=Operation.MODELS, body=b""), "GET", f"{BASE}/v1beta/models?pageSize=1000"),
]


@pytest.mark.parametrize(("op_call", "method", "url"), [u[1:] for u in URLS], ids=[u[0] for u in URLS])
def test_urls_and_the_api_key_header(op_call: Call, method: str, url: str) -> None:
    request = asyncio.run(provider().request(op_call))
    assert (request.method, request.url) == (method, url)
    assert request.headers["x-goog-api-key"] == SECRET


def test_a_versioned_api_base_is_tolerated() -> None:
    llm = Llm(slug="gem", vendor="google_ai", api_base=BASE + "/v1beta/")
    request = asyncio.run(GoogleAI(llm, SECRET).request(call({"messages": [USER]})))
    assert request.url == f"{BASE}/v1beta/models/gemini-2.5-flash:generateContent"


def test_embeddings_request() -> None:
    body = sent({"input": ["a", "b"], "dimensions": 8}, op=Operation.EMBEDDINGS, model="gemini-embedding-001")
    one = {"model": "models/gemini-embedding-001", "outputDimensionality": 8}
    assert body == {
        "requests": [
            {**one, "content": {"parts": [{"text": "a"}]}},
            {**one, "content": {"parts": [{"text": "b"}]}},
        ]
    }


def test_proxy_request_adds_the_key_and_keeps_path_query_and_body() -> None:
    proxied = Call(
        op=Operation.PROXY,
        body=b"{}",
        path="v1beta/models/gemini-2.5-flash:streamGenerateContent",
        query="alt=sse",
        headers={"x-goog-api-client": "genai-py"},
    )
    request = asyncio.run(provider().request(proxied))
    assert request.url == f"{BASE}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert request.headers == {"x-goog-api-client": "genai-py", "x-goog-api-key": SECRET}
    assert request.body == b"{}"


# --- answers ------------------------------------------------------------------------------------------

USAGE = {"promptTokenCount": 10, "candidatesTokenCount": 4, "totalTokenCount": 14}


def gemini_answer(parts: list[dict[str, Any]], finish: str = "STOP", **extra: Any) -> dict[str, Any]:
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": finish}
    return {
        "candidates": [candidate],
        "usageMetadata": USAGE,
        "modelVersion": "gemini-2.5-flash-001",
        **extra,
    }


def reply(answer: dict[str, Any]) -> tuple[dict[str, Any], Usage | None]:
    result = provider().response(call({"messages": [USER]}), orjson.dumps(answer), {})
    assert result.model == answer.get("modelVersion")
    return orjson.loads(result.body), result.usage


FINISHES = [
    ("STOP", "stop"),
    ("MAX_TOKENS", "length"),
    ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"),
    ("SPII", "content_filter"),
    ("OTHER", "stop"),
]


@pytest.mark.parametrize(("gemini", "openai"), FINISHES)
def test_finish_reasons(gemini: str, openai: str) -> None:
    body, _ = reply(gemini_answer([{"text": "x"}], gemini))
    assert body["choices"][0]["finish_reason"] == openai


def test_text_answer_without_thoughts() -> None:
    body, usage = reply(
        gemini_answer([{"text": "pondering", "thought": True}, {"text": "Hel"}, {"text": "lo"}])
    )
    assert body["model"] == "gemini-2.5-flash-001"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello", "refusal": None}
    assert body["usage"]["prompt_tokens"] == 10 and usage == Usage(10, 4)


def test_function_calls_become_tool_calls_with_fresh_ids() -> None:
    parts: list[dict[str, Any]] = [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "now"}},
    ]
    body, _ = reply(gemini_answer(parts))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    first, second = choice["message"]["tool_calls"]
    assert first["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert first["id"].startswith("call_") and first["id"].endswith("__thought__c2ln")
    assert second["function"] == {"name": "now", "arguments": "{}"} and "__thought__" not in second["id"]
    assert first["id"] != second["id"]


def test_blocked_prompt_is_a_content_filter_with_empty_content() -> None:
    body, usage = reply(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}
    )
    assert body["choices"][0]["finish_reason"] == "content_filter"
    assert body["choices"][0]["message"]["content"] == "" and usage == Usage(5, 0)


def test_several_candidates_become_several_choices() -> None:
    answer = gemini_answer([{"text": "a"}])
    answer["candidates"].append(
        {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1}
    )
    body, _ = reply(answer)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]


USAGES: list[tuple[str, dict[str, int], Usage]] = [
    ("plain", USAGE, Usage(10, 4)),
    (
        "cached prompt tokens are part of the prompt",
        {"promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 4},
        Usage(100, 4, cache_read_tokens=60),
    ),
    (
        "thinking is output",
        {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 30},
        Usage(10, 34),
    ),
    ("tool-use prompt is input", {"promptTokenCount": 10, "toolUsePromptTokenCount": 7}, Usage(17, 0)),
]


@pytest.mark.parametrize(("metadata", "usage"), [u[1:] for u in USAGES], ids=[u[0] for u in USAGES])
def test_usage_mapping(metadata: dict[str, int], usage: Usage) -> None:
    assert reply(gemini_answer([{"text": "x"}], usageMetadata=metadata))[1] == usage


def test_embeddings_answer_floats_and_base64() -> None:
    upstream = orjson.dumps({"embeddings": [{"values": [0.5, -0.25]}, {"values": [1.0, 0.0]}]})
    for format in ("float", "base64"):
        body = {"input": ["a", "b"], "encoding_format": format}
        result = provider().response(
            call(body, Operation.EMBEDDINGS, model="gemini-embedding-001"), upstream, {}
        )
        assert result.usage is None  # the API reports none: the gateway counts with tiktoken
        data = orjson.loads(result.body)["data"]
        vectors = [
            list(struct.unpack("<2f", base64.b64decode(d["embedding"])))
            if format == "base64"
            else d["embedding"]
            for d in data
        ]
        assert vectors == [[0.5, -0.25], [1.0, 0.0]]


# --- streams ------------------------------------------------------------------------------------------


def sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n" for chunk in chunks)


STREAM = sse(
    {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}],
        "modelVersion": "gemini-2.5-flash",
    },
    {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}}],
        "usageMetadata": {"promptTokenCount": 3},
    },
    {
        "candidates": [
            {
                "content": {"parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 9, "cachedContentTokenCount": 2},
    },
)


def client_events(out: bytes) -> list[Any]:
    events = [e.removeprefix(b"data: ") for e in out.split(b"\n\n") if e]
    return [e.decode() if e == b"[DONE]" else orjson.loads(e) for e in events]


@pytest.mark.parametrize("size", [1, 7, 64, len(STREAM)])
def test_stream_translation_in_any_chunk_size(size: int) -> None:
    relay = provider().stream(call({"messages": [USER]}, stream=True, include_usage=True))
    out = b""
    for start in range(0, len(STREAM), size):
        out += relay.feed(STREAM[start : start + size])
    out += relay.finish()
    events = client_events(out)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["model"] for c in chunks} == {"gemini-2.5-flash"}
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Hello"
    (tool,) = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert tool["index"] == 0 and tool["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens"] == 3 and chunks[-1]["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 2
    }
    assert relay.usage == Usage(3, 9, cache_read_tokens=2) and relay.model == "gemini-2.5-flash"
    assert relay.completion_text().startswith("Hello")


def test_stream_events_go_out_as_they_arrive() -> None:
    relay = provider().stream(call({"messages": [USER]}, stream=True))
    first, rest = STREAM.split(b"\r\n\r\n", 1)
    assert relay.feed(first) == b""  # incomplete: held
    assert b'"content":"Hel"' in relay.feed(b"\r\n\r\n")
    out = relay.feed(rest) + relay.finish()
    assert b'"usage":{' not in out  # the client did not ask for the usage chunk
    assert out.endswith(b"data: [DONE]\n\n")


def test_stream_of_a_blocked_prompt_and_an_error_event() -> None:
    relay = provider().stream(call({"messages": [USER]}, stream=True))
    out = relay.feed(sse({"promptFeedback": {"blockReason": "SAFETY"}})) + relay.finish()
    assert [c["choices"][0]["finish_reason"] for c in client_events(out)[:-1]][-1] == "content_filter"
    relay = provider().stream(call({"messages": [USER]}, stream=True))
    out = relay.feed(sse({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}))
    assert out.startswith(b"event: error\n") and b"overloaded" in out and relay.finish() == b""


def test_native_stream_is_relayed_byte_for_byte_and_its_usage_read() -> None:
    relay = provider().stream(Call(op=Operation.PROXY, body=b"", stream=True))
    out = b"".join(relay.feed(STREAM[i : i + 5]) for i in range(0, len(STREAM), 5)) + relay.finish()
    assert out == STREAM
    assert relay.usage == Usage(3, 9, cache_read_tokens=2) and relay.model == "gemini-2.5-flash"


NATIVE: list[tuple[str, bytes, Usage | None]] = [
    ("one answer", orjson.dumps(gemini_answer([{"text": "x"}])), Usage(10, 4)),
    (
        "streamGenerateContent without alt=sse: a JSON array",
        b"["
        + orjson.dumps(gemini_answer([{"text": "x"}]))
        + b",\r\n"
        + orjson.dumps({"usageMetadata": USAGE | {"candidatesTokenCount": 6}})
        + b"]",
        Usage(10, 6),
    ),
    ("embeddings", b'{"embeddings": [{"values": [1]}]}', None),
    ("not JSON", b"<html>", None),
]


@pytest.mark.parametrize(("body", "usage"), [n[1:] for n in NATIVE], ids=[n[0] for n in NATIVE])
def test_native_answer_usage(body: bytes, usage: Usage | None) -> None:
    result = provider().response(Call(op=Operation.PROXY, body=b""), body, {})
    assert result.body is body and result.usage == usage


# --- errors, models, proxy model -----------------------------------------------------------------------


def google_error(code: int, status: str, message: str, *details: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"error": {"code": code, "message": message, "status": status, "details": list(details)}}
    )


RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}
ERRORS: list[tuple[str, int, bytes, dict[str, str], dict[str, Any]]] = [
    (
        "429 RetryInfo becomes Retry-After",
        429,
        google_error(429, "RESOURCE_EXHAUSTED", "quota", RETRY),
        {},
        {
            "code": "RESOURCE_EXHAUSTED",
            "type": "rate_limit_error",
            "headers": {"retry-after": "30"},
            "message": "quota",
        },
    ),
    (
        "a fractional delay rounds up; the header wins",
        429,
        google_error(429, "RESOURCE_EXHAUSTED", "quota", {**RETRY, "retryDelay": "1.2s"}),
        {"retry-after": "5"},
        {"headers": {"retry-after": "5"}},
    ),
    (
        "context length",
        400,
        google_error(
            400,
            "INVALID_ARGUMENT",
            "The input token count (2000000) exceeds the maximum number of tokens allowed (1048576).",
        ),
        {},
        {"code": "context_length_exceeded", "type": "invalid_request_error"},
    ),
    (
        "a wrong key is the gateway's problem",
        400,
        google_error(400, "INVALID_ARGUMENT", f"API key not valid: {SECRET}", {"reason": "API_KEY_INVALID"}),
        {},
        {"code": "upstream_auth_error"},
    ),
    (
        "403",
        403,
        google_error(403, "PERMISSION_DENIED", "denied"),
        {},
        {"code": "upstream_auth_error", "status": 403},
    ),
    (
        "not JSON",
        502,
        b"<html>bad gateway</html>",
        {},
        {"status": 502, "message": "the upstream answered HTTP 502"},
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors(status: int, body: bytes, headers: dict[str, str], expected: dict[str, Any]) -> None:
    error = provider().error(call({}), status, body, headers)
    assert isinstance(error, UpstreamStatus)
    assert SECRET not in error.message
    for name, value in expected.items():
        assert getattr(error, name) == value, name


def test_native_errors_keep_the_google_body_but_scrub_the_key() -> None:
    body = google_error(400, "INVALID_ARGUMENT", f"bad request for {SECRET}")
    error = provider().error(
        Call(op=Operation.PROXY, body=b""), 400, body, {"content-type": "application/json"}
    )
    assert error.status == 400 and SECRET.encode() not in error.body()
    assert orjson.loads(error.body())["error"]["status"] == "INVALID_ARGUMENT"


def test_models() -> None:
    listed = {"models": [{"name": "models/gemini-2.5-flash"}, {"name": "models/gemini-embedding-001"}]}
    assert [m["id"] for m in provider().models(orjson.dumps(listed))] == [
        "gemini-2.5-flash",
        "gemini-embedding-001",
    ]


PATHS = [
    ("v1beta/models/gemini-2.5-flash:generateContent", "gemini-2.5-flash"),
    ("v1/models/gemini-2.0-flash%3AstreamGenerateContent", "gemini-2.0-flash"),
    ("v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro:predict", "gemini-2.5-pro"),
    ("v1beta/models", ""),
    ("v1beta/files", ""),
]


@pytest.mark.parametrize(("path", "model"), PATHS)
def test_proxy_model(path: str, model: str) -> None:
    assert provider().proxy_model(path, b"{}") == model


def test_call_ids_are_unique() -> None:
    assert len({call_id() for _ in range(100)}) == 100
