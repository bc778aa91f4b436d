"""The Vertex AI adapter: its URLs, OAuth tokens minted from a service-account JSON (against the mock's
token endpoint: cached, refreshed before expiry, one refresh at a time), embeddings through `predict`,
the publisher model list, and Claude through the Anthropic publisher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from gateway.errors import InvalidRequest, UpstreamStatus, UpstreamUnavailable
from mocks.server import ThreadedServer
from mocks.vertex import MockVertex, service_account_info
from providers.base import Call, Operation, Usage
from providers.vertex import Vertex
from sync.model import Llm

PROJECT = "proj-1"
LOCATION = f"/v1/projects/{PROJECT}/locations/us-central1/publishers"
USER = {"role": "user", "content": "Hi"}


@pytest.fixture(scope="module")
def mock() -> Iterator[tuple[ThreadedServer, MockVertex, dict[str, Any]]]:
    info = service_account_info("pending", PROJECT)
    app = MockVertex(info, PROJECT)
    with ThreadedServer(app) as server:
        info["token_uri"] = server.url + "/token"
        yield server, app, info


@pytest.fixture
def info(mock: tuple[ThreadedServer, MockVertex, dict[str, Any]]) -> dict[str, Any]:
    mock[1].reset()
    return mock[2]


def vertex(info: dict[str, Any] | None, api_base: str | None = "http://up.test", **fields: Any) -> Vertex:
    llm = Llm(slug="vx", vendor="vertex", api_base=api_base, **fields)
    return Vertex(llm, json.dumps(info) if info is not None else None)


def chat(body: dict[str, Any], model: str = "gemini-2.5-flash", **fields: Any) -> Call:
    return Call(op=Operation.CHAT, body=orjson.dumps(body), model=model, **fields)


URLS: list[tuple[str, dict[str, Any], Call, str]] = [
    (
        "chat",
        {},
        chat({"messages": [USER]}),
        f"http://up.test{LOCATION}/google/models/gemini-2.5-flash:generateContent",
    ),
    (
        "stream",
        {},
        chat({"messages": [USER]}, stream=True),
        f"http://up.test{LOCATION}/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    ),
    (
        "embeddings",
        {},
        Call(op=Operation.EMBEDDINGS, body=b'{"input": "x"}', model="text-embedding-005"),
        f"http://up.test{LOCATION}/google/models/text-embedding-005:predict",
    ),
    (
        "models",
        {},
        Call(op=Operation.MODELS, body=b""),
        "http://up.test/v1beta1/publishers/google/models?pageSize=1000",
    ),
    (
        "default host by region",
        {"api_base": None, "region": "europe-west4"},
        chat({"messages": [USER]}),
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/proj-1/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent",
    ),
    (
        "the global region",
        {"api_base": None, "region": "global"},
        chat({"messages": [USER]}),
        "https://aiplatform.googleapis.com/v1/projects/proj-1/locations/global/publishers/google/models/gemini-2.5-flash:generateContent",
    ),
    (
        "project from the LLM",
        {"project": "other"},
        chat({"messages": [USER]}),
        "http://up.test/v1/projects/other/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent",
    ),
    (
        "Claude",
        {},
        chat({"messages": [USER]}, model="claude-sonnet-4-5@20250929", stream=True),
        f"http://up.test{LOCATION}/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict",
    ),
]


@pytest.mark.parametrize(("fields", "op_call", "url"), [u[1:] for u in URLS], ids=[u[0] for u in URLS])
def test_urls_carry_a_fresh_bearer_token(
    info: dict[str, Any], fields: dict[str, Any], op_call: Call, url: str
) -> None:
    request = asyncio.run(vertex(info, **{"api_base": "http://up.test", **fields}).request(op_call))
    assert request.url == url
    assert request.headers["authorization"].startswith("Bearer ya29.mock-")


def test_one_token_serves_many_requests_and_concurrent_ones_share_a_refresh(
    info: dict[str, Any], mock: tuple[ThreadedServer, MockVertex, dict[str, Any]]
) -> None:
    adapter = vertex(info)

    async def many() -> set[str]:
        requests = await asyncio.gather(*(adapter.request(chat({"messages": [USER]})) for _ in range(5)))
        again = await adapter.request(chat({"messages": [USER]}))
        return {r.headers["authorization"] for r in [*requests, again]}

    assert len(asyncio.run(many())) == 1
    assert mock[1].token_requests == 1


def test_a_token_close_to_expiry_is_refreshed(
    info: dict[str, Any], mock: tuple[ThreadedServer, MockVertex, dict[str, Any]]
) -> None:
    mock[1].token_lifetime_s = 200  # under the 5-minute margin: never reused
    adapter = vertex(info)

    async def twice() -> list[str]:
        return [
            (await adapter.request(chat({"messages": [USER]}))).headers["authorization"] for _ in range(2)
        ]

    first, second = asyncio.run(twice())
    assert first != second and mock[1].token_requests == 2


def test_credential_problems(info: dict[str, Any]) -> None:
    for api_key in ("not json", json.dumps({"type": "service_account"})):
        adapter = Vertex(Llm(slug="vx", vendor="vertex", project="p"), api_key)
        with pytest.raises(UpstreamStatus) as refused:
            asyncio.run(adapter.request(chat({"messages": [USER]})))
        assert refused.value.status == 401 and refused.value.code == "upstream_auth_error"
    impostor = service_account_info(info["token_uri"], PROJECT) | {"client_email": info["client_email"]}
    with pytest.raises(UpstreamStatus, match="refused the service account") as rejected:
        asyncio.run(vertex(impostor).request(chat({"messages": [USER]})))
    assert impostor["private_key"] not in rejected.value.message
    unreachable = info | {"token_uri": "http://127.0.0.1:9/token"}
    with pytest.raises(UpstreamUnavailable, match="token endpoint"):
        asyncio.run(vertex(unreachable).request(chat({"messages": [USER]})))
    no_project = {k: v for k, v in info.items() if k != "project_id"}
    with pytest.raises(UpstreamUnavailable, match="project"):
        asyncio.run(vertex(no_project).request(chat({"messages": [USER]})))


def test_embeddings_through_predict(info: dict[str, Any]) -> None:
    call = Call(
        op=Operation.EMBEDDINGS, body=b'{"input": ["a", "b"], "dimensions": 2}', model="text-embedding-005"
    )
    request = asyncio.run(vertex(info).request(call))
    assert request.body is not None
    assert orjson.loads(request.body) == {
        "instances": [{"content": "a"}, {"content": "b"}],
        "parameters": {"outputDimensionality": 2},
    }
    answer = {
        "predictions": [
            {"embeddings": {"values": [0.5, 0.5], "statistics": {"token_count": 3.0, "truncated": False}}},
            {"embeddings": {"values": [1.0, 0.0], "statistics": {"token_count": 4.0, "truncated": False}}},
        ]
    }
    reply = vertex(info).response(call, orjson.dumps(answer), {})
    assert reply.usage == Usage(7)
    assert [d["embedding"] for d in orjson.loads(reply.body)["data"]] == [[0.5, 0.5], [1.0, 0.0]]
    claude = Call(op=Operation.EMBEDDINGS, body=b'{"input": "a"}', model="claude-sonnet-4-5")
    with pytest.raises(InvalidRequest, match="no embeddings"):
        asyncio.run(vertex(info).request(claude))


def test_publisher_models() -> None:
    listed = {"publisherModels": [{"name": "publishers/google/models/gemini-2.5-pro"}, {"name": ""}]}
    assert [m["id"] for m in vertex(None).models(orjson.dumps(listed))] == ["gemini-2.5-pro"]


# --- Claude on Vertex ---------------------------------------------------------------------------------

CLAUDE = "claude-sonnet-4-5@20250929"
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hello"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 5, "cache_read_input_tokens": 3, "output_tokens": 2},
}


def test_claude_request_is_the_messages_body_without_model(info: dict[str, Any]) -> None:
    body = {"messages": [{"role": "system", "content": "Be brief."}, USER], "temperature": 0.5}
    request = asyncio.run(vertex(info).request(chat(body, model=CLAUDE)))
    assert request.url.endswith(f"/publishers/anthropic/models/{CLAUDE}:rawPredict")
    assert request.body is not None
    assert orjson.loads(request.body) == {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 4096,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "temperature": 0.5,
    }


def test_claude_answers_and_streams_are_translated(info: dict[str, Any]) -> None:
    reply = vertex(info).response(chat({"messages": [USER]}, model=CLAUDE), orjson.dumps(MESSAGE), {})
    answer = orjson.loads(reply.body)
    assert answer["choices"][0]["message"]["content"] == "Hello"
    assert reply.usage == Usage(8, 2, cache_read_tokens=3)
    opening: dict[str, Any] = {
        "message": {"model": MESSAGE["model"], "usage": {"input_tokens": 5, "output_tokens": 1}}
    }
    events = b"".join(
        b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"
        for kind, data in [  # (event type, its fields)
            ("message_start", opening),
            ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi!"}}),
            ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
            ("message_stop", {}),
        ]
    )
    relay = vertex(info).stream(chat({"messages": [USER]}, model=CLAUDE, stream=True))
    out = b"".join(relay.feed(events[i : i + 9]) for i in range(0, len(events), 9)) + relay.finish()
    assert b'"content":"Hi!"' in out and out.endswith(b"data: [DONE]\n\n")
    assert relay.usage == Usage(5, 2)
    native = vertex(info).stream(
        Call(op=Operation.PROXY, body=b"", path=f"v1{LOCATION}/anthropic/models/{CLAUDE}:streamRawPredict")
    )
    assert native.feed(events) + native.finish() == events and native.usage == Usage(5, 2)


def test_claude_errors_in_anthropic_shape(info: dict[str, Any]) -> None:
    body = orjson.dumps(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "prompt is too long: 300000 tokens > 200000 maximum",
            },
        }
    )
    error = vertex(info).error(chat({}, model=CLAUDE), 400, body, {})
    assert isinstance(error, UpstreamStatus) and error.code == "context_length_exceeded"
    body = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert vertex(info).error(chat({}, model=CLAUDE), 529, body, {}).code == "overloaded_error"


def test_native_claude_answer_usage(info: dict[str, Any]) -> None:
    proxied = Call(op=Operation.PROXY, body=b"{}", path=f"v1{LOCATION}/anthropic/models/{CLAUDE}:rawPredict")
    reply = vertex(info).response(proxied, orjson.dumps(MESSAGE), {})
    assert reply.usage == Usage(8, 2, cache_read_tokens=3) and reply.model == "claude-sonnet-4-5-20250929"
    assert vertex(info).proxy_model(proxied.path, b"{}") == CLAUDE
