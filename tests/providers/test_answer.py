"""The OpenAI-shaped output every translating adapter writes: the OpenAI SDK's own types must read it."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.errors import InvalidRequest
from providers import answer
from providers.base import Usage
from providers.chat import ImagePart, TextPart, data_url, parse_chat, parse_embeddings

USAGE = Usage(input_tokens=20, output_tokens=5, cache_read_tokens=8, cache_write_tokens=2)


def _events(stream: bytes) -> list[bytes]:
    return [e.removeprefix(b"data: ") for e in stream.split(b"\n\n") if e]


def test_complete_answer_with_tool_calls_reads_as_a_chat_completion() -> None:
    body = answer.chat_completion(
        "claude-x",
        None,
        "tool_calls",
        USAGE,
        [answer.tool_call_json("call_1", "weather", '{"city":"Paris"}')],
    )
    parsed = ChatCompletion.model_validate_json(body)
    assert parsed.choices[0].finish_reason == "tool_calls"
    call = parsed.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", "weather", '{"city":"Paris"}')  # type: ignore[union-attr]
    assert parsed.usage is not None and parsed.usage.prompt_tokens == 20 and parsed.usage.total_tokens == 25
    assert parsed.usage.prompt_tokens_details.cached_tokens == 8  # type: ignore[union-attr]


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_chunks_read_as_openai_chunks(include_usage: bool) -> None:
    writer = answer.ChunkWriter("gemini-x", include_usage)
    stream = writer.start() + writer.text("Hel") + writer.text("") + writer.text("lo")
    stream += (
        writer.tool_call(0, "call_1", "weather")
        + writer.tool_arguments(0, '{"city":')
        + writer.tool_arguments(0, '"Paris"}')
    )
    stream += writer.end("tool_calls", USAGE)
    events = _events(stream)
    assert events[-1] == b"[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(e) for e in events[:-1]]
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    arguments = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or []
        if tc.function
    )
    assert arguments == '{"city":"Paris"}'
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        assert (
            len(usage_chunks) == 1
            and usage_chunks[0].choices == []
            and usage_chunks[0].usage.completion_tokens == 5
        )  # type: ignore[union-attr]
        assert all(b'"usage":null' in e for e in events[:-2])
    else:
        assert usage_chunks == [] and all(b'"usage"' not in e for e in events)


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_in_both_encodings(encoding: str) -> None:
    vectors = [[0.25, -0.5, 1.0], [0.0, 0.125, -2.0]]
    body = answer.embeddings("embed-x", vectors, Usage(input_tokens=7), encoding)
    raw = orjson.loads(body)
    if encoding == "base64":  # the SDK decodes base64 before its types see the answer: do the same
        for item in raw["data"]:
            item["embedding"] = list(struct.unpack("<3f", base64.b64decode(item["embedding"])))
    parsed = CreateEmbeddingResponse.model_validate(raw)
    assert parsed.usage.prompt_tokens == 7 and parsed.model == "embed-x"
    assert [item.embedding for item in parsed.data] == vectors


def test_chat_request_is_read_whole() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = orjson.dumps(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            "max_completion_tokens": 50,
            "stop": "END",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_object"},
            "some_future_field": True,
        }
    )
    request = parse_chat(body)
    assert request.max_output == 50 and request.stops == ["END"]
    user = request.messages[1]
    assert isinstance(user.parts()[0], TextPart) and isinstance(user.parts()[1], ImagePart)
    assert user.text() == "What is this?"
    assert request.messages[2].tool_calls[0].function.name == "f"  # type: ignore[index]
    assert data_url(user.parts()[1].image_url.url) == ("image/png", "iVBORw0KGgo=")  # type: ignore[union-attr]
    assert data_url("https://example.com/cat.png") is None


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"messages": [{"role": "robot"}]}', b'{"messages": [], "tool_choice": "sometimes"}',
     b'{"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]}'],
    ids=["not json", "bad role", "bad tool choice", "unknown part"],
)  # fmt: skip
def test_unreadable_chat_requests_are_400(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_chat(body)


def test_embeddings_request_and_token_arrays() -> None:
    assert parse_embeddings(b'{"input": "a", "model": "m"}').texts() == ["a"]
    assert parse_embeddings(b'{"input": ["a", "b"]}').texts() == ["a", "b"]
    with pytest.raises(InvalidRequest):
        parse_embeddings(b'{"input": [[1, 2]]}').texts()
    with pytest.raises(InvalidRequest):
        data_url("data:image/png,notbase64")
