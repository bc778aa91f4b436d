"""The Hugging Face adapter alone: the router's OpenAI format, its feature-extraction embeddings, a TEI
server's OpenAI embeddings, and Hugging Face's string errors."""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import Any

import orjson
import pytest

from gateway.errors import InvalidRequest, UpstreamStatus, UpstreamUnavailable
from providers.base import Call, Operation, Usage
from providers.huggingface import HuggingFace
from providers.tokens import count_text
from sync.model import Llm

TOKEN = "hf_secret0123456789"
ROUTER = "https://router.huggingface.co"


def provider(api_base: str | None = None) -> HuggingFace:
    return HuggingFace(Llm(slug="hf", vendor="huggingface", api_base=api_base), TOKEN)


def call(op: Operation, body: dict[str, Any] | bytes, **fields: Any) -> Call:
    return Call(op=op, body=body if isinstance(body, bytes) else orjson.dumps(body), **fields)


def test_chat_goes_to_the_router_in_openais_format() -> None:
    body = {"model": "meta-llama/Llama-3.1-8B-Instruct:novita", "messages": [], "stream": True}
    request = asyncio.run(provider().request(call(Operation.CHAT, body, model=body["model"], stream=True)))
    assert request.url == ROUTER + "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.body is not None
    assert orjson.loads(request.body) == {"stream_options": {"include_usage": True}, **body}


EMBEDDINGS = [
    (
        "router: feature-extraction pipeline",
        None,
        {"model": "BAAI/bge-small-en-v1.5", "input": ["a", "b"]},
        ROUTER + "/hf-inference/models/BAAI/bge-small-en-v1.5/pipeline/feature-extraction",
        {"inputs": ["a", "b"]},
    ),
    (
        "router: a provider suffix is not part of the path",
        ROUTER + "/v1",
        {"model": "BAAI/bge-small-en-v1.5:hf-inference", "input": "a"},
        ROUTER + "/hf-inference/models/BAAI/bge-small-en-v1.5/pipeline/feature-extraction",
        {"inputs": ["a"]},
    ),
    (
        "TEI: OpenAI's embeddings, unchanged",
        "http://tei.local:8080/v1",
        {"model": "bge", "input": "a", "dimensions": 8, "encoding_format": "base64"},
        "http://tei.local:8080/v1/embeddings",
        {"model": "bge", "input": "a", "dimensions": 8, "encoding_format": "base64"},
    ),
]


@pytest.mark.parametrize(
    ("api_base", "body", "url", "sent"), [e[1:] for e in EMBEDDINGS], ids=[e[0] for e in EMBEDDINGS]
)
def test_embeddings_request(
    api_base: str | None, body: dict[str, Any], url: str, sent: dict[str, Any]
) -> None:
    request = asyncio.run(provider(api_base).request(call(Operation.EMBEDDINGS, body, model=body["model"])))
    assert (request.method, request.url) == ("POST", url)
    assert request.body is not None and orjson.loads(request.body) == sent
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "body",
    [{"model": "m", "input": "a", "dimensions": 8}, {"model": "m", "input": [[1, 2]]}],
    ids=["dimensions", "token arrays"],
)
def test_what_the_pipeline_cannot_take_is_a_clear_400(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        asyncio.run(provider().request(call(Operation.EMBEDDINGS, body, model="m")))


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_pipeline_vectors_become_openais_embeddings(encoding: str) -> None:
    sent = call(
        Operation.EMBEDDINGS,
        {"model": "m", "input": ["hello world", "bye"], "encoding_format": encoding},
        model="m",
    )
    reply = provider().response(sent, b"[[0.5, -0.25], [1.0, 0.0]]", {})
    answer = orjson.loads(reply.body)
    vectors = [item["embedding"] for item in answer["data"]]
    if encoding == "base64":
        vectors = [list(struct.unpack("<2f", base64.b64decode(v))) for v in vectors]
    assert vectors == [[0.5, -0.25], [1.0, 0.0]]
    expected = count_text("hello world") + count_text("bye")
    assert reply.usage == Usage(expected) and answer["usage"]["prompt_tokens"] == expected
    assert answer["object"] == "list" and answer["model"] == "m"


def test_token_level_vectors_are_not_sentence_embeddings() -> None:
    sent = call(Operation.EMBEDDINGS, {"model": "m", "input": ["a"]})
    with pytest.raises(UpstreamUnavailable, match="sentence-embedding"):
        provider().response(sent, b"[[[0.1, 0.2], [0.3, 0.4]]]", {})


def test_tei_embeddings_answer_passes_through_with_its_usage() -> None:
    body = orjson.dumps({"object": "list", "data": [], "model": "bge", "usage": {"prompt_tokens": 3}})
    reply = provider("http://tei:8080/v1").response(call(Operation.EMBEDDINGS, {}), body, {})
    assert reply.body == body and reply.usage == Usage(3)


ERRORS = [
    (
        "string error",
        400,
        {"error": "Input validation error: `inputs` must be non-empty"},
        {},
        "upstream_error",
    ),
    (
        "TEI with error_type",
        413,
        {"error": "batch too large", "error_type": "Validation"},
        {},
        "upstream_error",
    ),
    (
        "string rate limit",
        429,
        {"error": "Rate limit reached"},
        {"retry-after": "2.5"},
        "rate_limit_exceeded",
    ),
    (
        "OpenAI's shape from the router",
        400,
        {
            "error": {
                "message": "not supported",
                "type": "invalid_request_error",
                "code": "model_not_supported",
            }
        },
        {},
        "model_not_supported",
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "code"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors(status: int, body: dict[str, Any], headers: dict[str, str], code: str) -> None:
    error = provider().error(call(Operation.CHAT, {}), status, orjson.dumps(body), headers)
    assert isinstance(error, UpstreamStatus)
    assert (error.status, error.code) == (status, code)
    message = body["error"] if isinstance(body["error"], str) else body["error"]["message"]
    assert orjson.loads(error.body())["error"]["message"] == message
    assert error.headers.get("retry-after") == ("3" if headers else None)


def test_auth_and_native_errors() -> None:
    denied = provider().error(
        call(Operation.CHAT, {}), 401, orjson.dumps({"error": f"bad token {TOKEN}"}), {}
    )
    assert denied.code == "upstream_auth_error" and TOKEN not in denied.body().decode()
    native = provider().error(call(Operation.PROXY, b""), 404, orjson.dumps({"error": f"no {TOKEN}"}), {})
    assert orjson.loads(native.body()) == {"error": "no [REDACTED]"}
    garbage = provider().error(call(Operation.CHAT, {}), 502, b"<html>", {})
    assert garbage.status == 502 and garbage.code == "upstream_error"
