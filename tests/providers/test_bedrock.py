"""The Bedrock adapter in isolation: Converse translation both ways, SigV4 signing, event-stream
translation fed in arbitrary chunk sizes, usage and finish mapping, embeddings, errors, proxy."""

from __future__ import annotations

import asyncio
import base64
import datetime
import struct
from typing import Any

import orjson
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion

from gateway.errors import InvalidRequest, UpstreamStatus, UpstreamUnavailable
from mocks.bedrock_errors import verify_sigv4
from providers.base import Call, Operation, UpstreamRequest, Usage
from providers.bedrock import Bedrock
from sync.model import Llm

AKID, SECRET, TOKEN = "AKIDEXAMPLE0000001", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-abc"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
BASE = "http://bedrock.test"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
WEATHER_SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Weather for a city",
        "inputSchema": {"json": WEATHER["function"]["parameters"]},
    }
}  # type: ignore[index]
CALL = {
    "id": "tooluse_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}
USER = {"role": "user", "content": "Weather in Paris?"}


def provider(key: str | None = f"{AKID}:{SECRET}", **fields: Any) -> Bedrock:
    return Bedrock(Llm(slug="br", vendor="bedrock", **{"api_base": BASE, **fields}), key)


def chat(body: dict[str, Any], **fields: Any) -> Call:
    return Call(op=Operation.CHAT, body=orjson.dumps(body), model=HAIKU, **fields)


def sent(call: Call, bedrock: Bedrock | None = None) -> UpstreamRequest:
    return asyncio.run((bedrock or provider()).request(call))


def sent_json(body: dict[str, Any]) -> Any:
    request = sent(chat(body))
    assert request.body is not None
    return orjson.loads(request.body)


# --- OpenAI → Converse --------------------------------------------------------------------------------

REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "user only",
        {"messages": [USER]},
        {"messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]},
    ),
    (
        "system and developer go to system",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "No lists."},
                USER,
            ]
        },
        {
            "system": [{"text": "Be brief."}, {"text": "No lists."}],
            "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
        },
    ),
    (
        "consecutive users merged",
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "b"}]},
            ]
        },
        {"messages": [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]},
    ),
    (
        "sampling; seed, penalties and user dropped",
        {
            "messages": [USER],
            "max_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": "END",
            "seed": 7,
            "presence_penalty": 0.5,
            "user": "u1",
        },
        {
            "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        },
    ),
    (
        "max_completion_tokens and stop list",
        {"messages": [USER], "max_completion_tokens": 9, "stop": ["a", "b"]},
        {
            "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
            "inferenceConfig": {"maxTokens": 9, "stopSequences": ["a", "b"]},
        },
    ),
    (
        "image data URL inline",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is it?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"text": "What is it?"},
                        {"image": {"format": "png", "source": {"bytes": PNG}}},
                    ],
                }
            ]
        },
    ),
    (
        "tool round trip: calls, results merged, then the user",
        {
            "messages": [
                USER,
                {"role": "assistant", "content": "", "tool_calls": [CALL, {**CALL, "id": "tooluse_2"}]},
                {"role": "tool", "tool_call_id": "tooluse_1", "content": "Sunny"},
                {"role": "tool", "tool_call_id": "tooluse_2", "content": [{"type": "text", "text": "20C"}]},
                {"role": "user", "content": "Thanks"},
            ],
            "tools": [WEATHER],
        },
        {
            "messages": [
                {"role": "user", "content": [{"text": "Weather in Paris?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "toolUse": {
                                "toolUseId": "tooluse_1",
                                "name": "get_weather",
                                "input": {"city": "Paris"},
                            }
                        },
                        {
                            "toolUse": {
                                "toolUseId": "tooluse_2",
                                "name": "get_weather",
                                "input": {"city": "Paris"},
                            }
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "Sunny"}]}},
                        {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "20C"}]}},
                        {"text": "Thanks"},
                    ],
                },
            ],
            "toolConfig": {"tools": [WEATHER_SPEC]},
        },
    ),
    (
        "tool_choice auto",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "auto"},
        {
            "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
            "toolConfig": {"tools": [WEATHER_SPEC], "toolChoice": {"auto": {}}},
        },
    ),
    (
        "tool_choice required is any",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "required"},
        {
            "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
            "toolConfig": {"tools": [WEATHER_SPEC], "toolChoice": {"any": {}}},
        },
    ),
    (
        "named tool_choice",
        {
            "messages": [USER],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
        {
            "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
            "toolConfig": {"tools": [WEATHER_SPEC], "toolChoice": {"tool": {"name": "get_weather"}}},
        },
    ),
    (
        "tool_choice none leaves the tools out",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "none"},
        {"messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]},
    ),
    (
        "tool without parameters or description",
        {"messages": [USER], "tools": [{"type": "function", "function": {"name": "now"}}]},
        {
            "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "name": "now",
                            "inputSchema": {"json": {"type": "object", "properties": {}}},
                        }
                    }
                ]
            },
        },
    ),
    (
        "json_schema is structured output",
        {
            "messages": [USER],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "w", "schema": {"type": "object"}},
            },
        },
        {
            "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
            "outputConfig": {
                "textFormat": {
                    "type": "json_schema",
                    "structure": {"jsonSchema": {"schema": '{"type":"object"}', "name": "w"}},
                }
            },
        },
    ),
    (
        "empty assistant message left out, turns merged",
        {"messages": [USER, {"role": "assistant", "content": ""}, {"role": "user", "content": "again"}]},
        {"messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}, {"text": "again"}]}]},
    ),
]


@pytest.mark.parametrize(("body", "expected"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS])
def test_chat_request_translation(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert sent_json(body) == expected


def test_tool_choice_none_keeps_the_tools_when_the_history_has_tool_blocks() -> None:
    messages = [
        USER,
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": "Sunny"},
    ]
    body = sent_json({"messages": messages, "tools": [WEATHER], "tool_choice": "none"})
    assert body["toolConfig"] == {"tools": [WEATHER_SPEC]}  # Converse refuses tool blocks without it


REFUSED = [
    (
        "http image",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}],
                }
            ]
        },
        "cannot fetch image URLs",
    ),
    (
        "bmp image",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}],
                }
            ]
        },
        "not image/bmp",
    ),
    (
        "audio part",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
                }
            ]
        },
        "not input_audio",
    ),
    (
        "first message from the assistant",
        {"messages": [{"role": "assistant", "content": "Hi"}]},
        "start with a user message",
    ),
    ("only a system prompt", {"messages": [{"role": "system", "content": "Be brief."}]}, "start with a user"),
    ("several choices", {"messages": [USER], "n": 2}, "'n' must be 1"),
    (
        "json mode without a schema",
        {"messages": [USER], "response_format": {"type": "json_object"}},
        "no JSON mode without a schema",
    ),
    (
        "tool arguments not JSON",
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{**CALL, "function": {"name": "get_weather", "arguments": "{oops"}}],
                },
            ]
        },
        "are not JSON",
    ),
]


@pytest.mark.parametrize(("body", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_requests_bedrock_cannot_take_are_a_clear_400(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as refused:
        sent(chat(body))
    assert refused.value.status == 400


# --- URLs and signing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "action"), [(False, "converse"), (True, "converse-stream")], ids=["converse", "stream"]
)
def test_model_id_is_percent_encoded_and_the_request_is_signed(stream: bool, action: str) -> None:
    request = sent(chat({"messages": [USER]}, stream=stream))
    assert request.url == f"{BASE}/model/anthropic.claude-3-haiku-20240307-v1%3A0/{action}"
    assert request.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/")
    assert request.body is not None
    headers = {k.lower(): v for k, v in request.headers.items()} | {"host": "bedrock.test"}
    # the signature a Bedrock endpoint recomputes with botocore over what is sent matches
    verify_sigv4({AKID: (SECRET, None)}, "us-east-1", "POST", request.url, headers, request.body)


def test_session_token_region_and_default_endpoint() -> None:
    bedrock = Bedrock(Llm(slug="br", vendor="bedrock", region="eu-west-3"), f"{AKID}:{SECRET}:{TOKEN}")
    request = sent(chat({"messages": [USER]}), bedrock)
    assert request.url.startswith("https://bedrock-runtime.eu-west-3.amazonaws.com/model/")
    assert request.headers["X-Amz-Security-Token"] == TOKEN
    assert "/eu-west-3/bedrock/aws4_request" in request.headers["Authorization"]


def test_a_tampered_body_fails_the_signature_check() -> None:
    request = sent(chat({"messages": [USER]}))
    headers = {k.lower(): v for k, v in request.headers.items()} | {"host": "bedrock.test"}
    with pytest.raises(Exception, match="signature we calculated does not match"):
        verify_sigv4({AKID: (SECRET, None)}, "us-east-1", "POST", request.url, headers, b"{}")


@pytest.mark.parametrize("key", [None, "", "only-an-id", ":secret"])
def test_missing_credentials_are_a_clear_error(key: str | None) -> None:
    with pytest.raises(UpstreamUnavailable, match="no AWS credentials"):
        sent(chat({"messages": [USER]}), provider(key))


def test_no_model_is_a_clear_400() -> None:
    with pytest.raises(InvalidRequest, match="name a Bedrock model id"):
        sent(Call(op=Operation.CHAT, body=b'{"messages":[{"role":"user","content":"x"}]}'))


# --- Converse → OpenAI ----------------------------------------------------------------------------------


def converse(content: list[dict[str, Any]], stop: str = "end_turn", **usage: int) -> bytes:
    counts = {"inputTokens": 10, "outputTokens": 4, "totalTokens": 14, **usage}
    message = {"role": "assistant", "content": content}
    return orjson.dumps({"output": {"message": message}, "stopReason": stop, "usage": counts, "metrics": {}})


FINISHES = [
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"),
    ("content_filtered", "content_filter"),
    ("model_context_window_exceeded", "length"),
]


@pytest.mark.parametrize(("stop", "finish"), FINISHES, ids=[f[0] for f in FINISHES])
def test_finish_reasons(stop: str, finish: str) -> None:
    reply = provider().response(chat({}), converse([{"text": "Hi"}], stop), {})
    assert ChatCompletion.model_validate_json(reply.body).choices[0].finish_reason == finish


def test_text_answer_and_usage() -> None:
    reply = provider().response(chat({}), converse([{"text": "Hel"}, {"text": "lo"}]), {})
    answer = ChatCompletion.model_validate_json(reply.body)
    assert answer.choices[0].message.content == "Hello" and answer.model == HAIKU
    assert reply.usage == Usage(10, 4) and answer.usage is not None and answer.usage.total_tokens == 14


def test_cached_tokens_are_added_to_the_input_tokens() -> None:
    # Bedrock's inputTokens leaves the cache out (totalTokens = input + output + read + write).
    body = converse(
        [{"text": "Hi"}], inputTokens=10, cacheReadInputTokens=100, cacheWriteInputTokens=50, totalTokens=164
    )
    reply = provider().response(chat({}), body, {})
    assert reply.usage == Usage(160, 4, cache_read_tokens=100, cache_write_tokens=50)
    answer = ChatCompletion.model_validate_json(reply.body)
    assert answer.usage is not None and answer.usage.prompt_tokens == 160 and answer.usage.total_tokens == 164
    assert answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 100


def test_tool_use_answer() -> None:
    tool = {"toolUse": {"toolUseId": "tooluse_9", "name": "get_weather", "input": {"city": "Paris"}}}
    reply = provider().response(chat({}), converse([{"text": "Let me look."}, tool], "tool_use"), {})
    message = ChatCompletion.model_validate_json(reply.body).choices[0].message
    assert message.content == "Let me look." and message.tool_calls is not None
    call = message.tool_calls[0]
    assert (call.id, call.function.name, orjson.loads(call.function.arguments)) == (  # type: ignore[union-attr]
        "tooluse_9",
        "get_weather",
        {"city": "Paris"},
    )
    only_tool = provider().response(chat({}), converse([tool], "tool_use"), {})
    assert ChatCompletion.model_validate_json(only_tool.body).choices[0].message.content is None


# --- embeddings ---------------------------------------------------------------------------------------


def embed(model: str, body: dict[str, Any]) -> Call:
    return Call(op=Operation.EMBEDDINGS, body=orjson.dumps({"model": model, **body}), model=model)


EMBED_REQUESTS = [
    (
        "titan v2",
        "amazon.titan-embed-text-v2:0",
        {"input": "hi", "dimensions": 256},
        {"inputText": "hi", "dimensions": 256},
    ),
    ("titan one-element list", "amazon.titan-embed-text-v2:0", {"input": ["hi"]}, {"inputText": "hi"}),
    (
        "cohere",
        "cohere.embed-english-v3",
        {"input": ["a", "b"]},
        {"texts": ["a", "b"], "input_type": "search_document"},
    ),
    (
        "cohere v4 profile with dimensions",
        "us.cohere.embed-v4:0",
        {"input": "a", "dimensions": 256},
        {"texts": ["a"], "input_type": "search_document", "output_dimension": 256},
    ),
]


@pytest.mark.parametrize(
    ("model", "body", "expected"), [r[1:] for r in EMBED_REQUESTS], ids=[r[0] for r in EMBED_REQUESTS]
)
def test_embeddings_request(model: str, body: dict[str, Any], expected: dict[str, Any]) -> None:
    request = sent(embed(model, body))
    assert request.url == f"{BASE}/model/{model.replace(':', '%3A')}/invoke"
    assert request.body is not None and orjson.loads(request.body) == expected
    assert request.headers["accept"] == "application/json"


EMBED_REFUSED = [
    (
        "several texts on titan",
        "amazon.titan-embed-text-v2:0",
        {"input": ["a", "b"]},
        "one input per request",
    ),
    ("dimensions on titan v1", "amazon.titan-embed-text-v1", {"input": "a", "dimensions": 8}, "fixed size"),
    ("dimensions on cohere v3", "cohere.embed-english-v3", {"input": "a", "dimensions": 8}, "fixed size"),
    ("token arrays", "cohere.embed-english-v3", {"input": [[1, 2]]}, "text inputs only"),
    ("a chat model", HAIKU, {"input": "a"}, "not an embeddings model"),
]


@pytest.mark.parametrize(
    ("model", "body", "message"), [r[1:] for r in EMBED_REFUSED], ids=[r[0] for r in EMBED_REFUSED]
)
def test_embeddings_bedrock_cannot_take(model: str, body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        sent(embed(model, body))


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_answers(encoding: str) -> None:
    titan = provider().response(
        embed("amazon.titan-embed-text-v2:0", {"input": "hi", "encoding_format": encoding}),
        orjson.dumps({"embedding": [0.5, -0.25], "inputTextTokenCount": 3}),
        {},
    )
    assert titan.usage == Usage(3)
    value = orjson.loads(titan.body)["data"][0]["embedding"]
    if encoding == "base64":  # little-endian float32, as OpenAI sends it
        assert struct.unpack("<2f", base64.b64decode(value)) == (0.5, -0.25)
    else:
        parsed = CreateEmbeddingResponse.model_validate_json(titan.body)
        assert parsed.usage.prompt_tokens == 3 and parsed.data[0].embedding == [0.5, -0.25]
    cohere = provider().response(
        embed("cohere.embed-english-v3", {"input": ["a", "b"]}),
        orjson.dumps({"embeddings": [[1.0], [2.0]], "id": "x", "response_type": "embeddings_floats"}),
        {"x-amzn-bedrock-input-token-count": "4"},
    )
    assert cohere.usage == Usage(4)
    assert [d["embedding"] for d in orjson.loads(cohere.body)["data"]] == [[1.0], [2.0]]
    v4 = provider().response(
        embed("cohere.embed-v4:0", {"input": "a"}), orjson.dumps({"embeddings": {"float": [[3.0]]}}), {}
    )
    assert orjson.loads(v4.body)["data"][0]["embedding"] == [3.0]
    assert v4.usage is None  # no count reported: the gateway counts the input itself


# --- errors -------------------------------------------------------------------------------------------


def error(status: int, kind: str, message: str, call: Call | None = None, **headers: str) -> UpstreamStatus:
    found = provider().error(
        call or chat({}),
        status,
        orjson.dumps({"message": message}),
        {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/", **headers},
    )
    assert isinstance(found, UpstreamStatus)
    return found


ERRORS = [
    (400, "ValidationException", "Bad temperature", "ValidationException", "invalid_request_error"),
    (
        400,
        "ValidationException",
        "Input is too long for requested model.",
        "context_length_exceeded",
        "invalid_request_error",
    ),
    (404, "ResourceNotFoundException", "End of life", "ResourceNotFoundException", "not_found_error"),
    (408, "ModelTimeoutException", "Timed out", "ModelTimeoutException", "timeout_error"),
    (424, "ModelErrorException", "Model failed", "ModelErrorException", "invalid_request_error"),
    (503, "ServiceUnavailableException", "Down", "ServiceUnavailableException", "server_error"),
]


@pytest.mark.parametrize(("status", "kind", "message", "code", "type_"), ERRORS, ids=[e[2] for e in ERRORS])
def test_errors_keep_status_message_and_class(
    status: int, kind: str, message: str, code: str, type_: str
) -> None:
    found = error(status, kind, message)
    body = orjson.loads(found.body())["error"]
    assert (found.status, body["code"], body["type"], body["message"]) == (status, code, type_, message)


def test_throttling_keeps_retry_after() -> None:
    found = error(429, "ThrottlingException", "Too many requests, please wait.", **{"retry-after": "2.5"})
    assert (found.status, found.code, found.type) == (429, "ThrottlingException", "rate_limit_error")
    assert found.headers == {"retry-after": "3"}


def test_auth_errors_are_generic_and_never_echo_the_credentials() -> None:
    found = error(403, "InvalidSignatureException", f"Bad signature for {AKID}:{SECRET}")
    assert found.code == "upstream_auth_error" and SECRET not in found.message and AKID not in found.message


def test_proxy_errors_keep_the_native_body_and_error_class() -> None:
    call = Call(op=Operation.PROXY, body=b"", path=f"model/{HAIKU}/converse")
    found = error(
        400, "ValidationException", f"secret {SECRET} leaked", call, **{"content-type": "application/json"}
    )
    assert orjson.loads(found.body()) == {"message": "secret [REDACTED] leaked"}
    assert found.headers["x-amzn-errortype"].startswith("ValidationException:")
    denied = error(403, "AccessDeniedException", "no", call)
    assert denied.status == 403 and "message" in orjson.loads(denied.body())


# --- model list and proxy -----------------------------------------------------------------------------------


def test_models_come_from_the_control_plane() -> None:
    listing = Call(op=Operation.MODELS, body=b"", method="GET")
    default = sent(listing, Bedrock(Llm(slug="br", vendor="bedrock", region="us-west-2"), f"{AKID}:{SECRET}"))
    assert (default.method, default.url) == (
        "GET",
        "https://bedrock.us-west-2.amazonaws.com/foundation-models",
    )
    assert "Authorization" in default.headers
    assert sent(listing).url == f"{BASE}/foundation-models"  # a mock or a private endpoint serves both
    summaries = {"modelSummaries": [{"modelId": HAIKU, "providerName": "Anthropic"}, {"modelId": "m.x"}]}
    models = provider().models(orjson.dumps(summaries))
    assert [(m["id"], m["owned_by"]) for m in models] == [(HAIKU, "anthropic"), ("m.x", "bedrock")]


def test_proxy_request_is_re_signed_with_the_gateways_credentials() -> None:
    call = Call(
        op=Operation.PROXY,
        body=b'{"messages":[]}',
        method="POST",
        path="model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
        headers={
            "content-type": "application/json",
            "x-amz-date": "20200101T000000Z",
            "amz-sdk-request": "attempt=1",
        },
    )
    request = sent(call)
    assert request.url == f"{BASE}/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    assert request.body == call.body and request.headers["amz-sdk-request"] == "attempt=1"
    assert request.headers["X-Amz-Date"] != "20200101T000000Z"
    headers = {k.lower(): v for k, v in request.headers.items()} | {"host": "bedrock.test"}
    now = datetime.datetime.now(datetime.UTC)
    verify_sigv4({AKID: (SECRET, None)}, "us-east-1", "POST", request.url, headers, call.body, now)


PROXY_MODELS = [
    ("model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", HAIKU),
    ("model/amazon.titan-embed-text-v2:0/invoke", "amazon.titan-embed-text-v2:0"),
    (
        "model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aprofile%2Fp/converse-stream",
        "arn:aws:bedrock:us-east-1:1:profile/p",
    ),
    ("guardrail/g/version/1/apply", ""),
]


@pytest.mark.parametrize(("path", "model"), PROXY_MODELS, ids=[m[1] or "none" for m in PROXY_MODELS])
def test_proxy_model_is_read_from_the_path(path: str, model: str) -> None:
    assert provider().proxy_model(path, b"") == model


def test_proxy_usage_from_converse_json_and_invoke_headers() -> None:
    def proxied(action: str) -> Call:
        return Call(op=Operation.PROXY, body=b"", path=f"model/x/{action}")

    body = converse([{"text": "Hi"}], cacheReadInputTokens=6, cacheWriteInputTokens=2)
    reply = provider().response(proxied("converse"), body, {})
    assert reply.body == body and reply.usage == Usage(18, 4, 6, 2)
    headers = {
        "x-amzn-bedrock-input-token-count": "7",
        "x-amzn-bedrock-output-token-count": "2",
        "x-amzn-bedrock-cache-read-input-token-count": "3",
    }
    assert provider().response(proxied("invoke"), b"{}", headers).usage == Usage(10, 2, 3, 0)
    assert provider().response(proxied("invoke"), b"{}", {}).usage is None
