"""The Bedrock adapter's event-stream relays: ConverseStream translated to OpenAI chunks frame by frame,
whatever the chunk boundaries, and native streams passed through untouched with their usage read."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletionChunk

from mocks.bedrock_answer import event, exception, frame
from providers.base import Call, Operation, Usage
from providers.bedrock import Bedrock
from sync.model import Llm

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def provider() -> Bedrock:
    return Bedrock(Llm(slug="br", vendor="bedrock", api_base="http://bedrock.test"), "AKIDEXAMPLE:SECRETKEY")


def chat(**fields: Any) -> Call:
    return Call(op=Operation.CHAT, body=b"{}", model=HAIKU, **fields)


def proxied(action: str) -> Call:
    return Call(op=Operation.PROXY, body=b"", path=f"model/x/{action}")


# --- ConverseStream → OpenAI chunks -----------------------------------------------------------------------

USAGE_EVENT = {
    "usage": {
        "inputTokens": 12,
        "outputTokens": 3,
        "totalTokens": 20,
        "cacheReadInputTokens": 5,
        "cacheWriteInputTokens": 0,
    },
    "metrics": {"latencyMs": 9},
}
TEXT_STREAM = [
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("messageStop", {"stopReason": "end_turn"}),
    event("metadata", USAGE_EVENT),
]
TOOL_STREAM = [
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking."}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event(
        "contentBlockStart",
        {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_7", "name": "get_weather"}}},
    ),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event("messageStop", {"stopReason": "tool_use"}),
    event("metadata", USAGE_EVENT),
]


def relay_all(frames: list[bytes], size: int, include_usage: bool = False) -> tuple[list[bytes], Any]:
    relay = provider().stream(chat(stream=True, include_usage=include_usage))
    stream, out = b"".join(frames), b""
    for i in range(0, len(stream), size):
        piece = relay.feed(stream[i : i + size])
        assert piece == b"" or piece.endswith(b"\n\n")  # only whole SSE events go out
        out += piece
    out += relay.finish()
    return [e for e in out.split(b"\n\n") if e], relay


@pytest.mark.parametrize("size", [1, 5, 17, 64, 100_000])
def test_stream_split_anywhere_translates_event_by_event(size: int) -> None:
    events, relay = relay_all(TEXT_STREAM, size)
    assert events[-1] == b"data: [DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(e.removeprefix(b"data: ")) for e in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello"
    assert chunks[-1].choices[0].finish_reason == "stop" and all(c.usage is None for c in chunks)
    assert relay.usage == Usage(17, 3, cache_read_tokens=5)
    assert relay.completion_text() == "Hello"


def test_each_frame_is_translated_in_the_feed_that_completes_it() -> None:
    relay = provider().stream(chat(stream=True))
    assert relay.feed(TEXT_STREAM[0][:-1]) == b""
    assert b'"role":"assistant"' in relay.feed(TEXT_STREAM[0][-1:])
    assert b'"content":"Hel"' in relay.feed(TEXT_STREAM[1])


def test_stream_usage_chunk_when_asked() -> None:
    events, _ = relay_all(TEXT_STREAM, 64, include_usage=True)
    last = ChatCompletionChunk.model_validate_json(events[-2].removeprefix(b"data: "))
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (17, 3)


@pytest.mark.parametrize("size", [3, 50])
def test_stream_with_tool_call(size: int) -> None:
    events, _ = relay_all(TOOL_STREAM, size)
    chunks = [ChatCompletionChunk.model_validate_json(e.removeprefix(b"data: ")) for e in events[:-1]]
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert (calls[0].index, calls[0].id, calls[0].function.name) == (0, "tooluse_7", "get_weather")  # type: ignore[union-attr]
    assert "".join(tc.function.arguments or "" for tc in calls) == '{"city":"Paris"}'  # type: ignore[union-attr]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_exception_event_mid_stream_becomes_an_sse_error_without_done() -> None:
    frames = [*TEXT_STREAM[:2], exception("throttlingException", "Too many tokens, please wait.")]
    events, relay = relay_all(frames, 7)
    assert b"[DONE]" not in b"".join(events)
    assert events[-1].startswith(b"event: error\ndata: ")
    error = orjson.loads(events[-1].partition(b"data: ")[2])["error"]
    assert error["code"] == "throttlingException" and "Too many tokens" in error["message"]
    assert relay.feed(TEXT_STREAM[2]) == b""  # nothing after the error


def test_stream_cut_before_metadata_still_ends_properly() -> None:
    events, relay = relay_all(TEXT_STREAM[:-1], 64)
    assert events[-1] == b"data: [DONE]" and relay.usage is None


def test_a_corrupt_frame_ends_the_stream_with_an_error() -> None:
    broken = bytearray(TEXT_STREAM[1])
    broken[-1] ^= 0xFF  # the message CRC no longer matches
    events, _ = relay_all([TEXT_STREAM[0], bytes(broken)], 64)
    assert events[-1].startswith(b"event: error") and b"malformed" in events[-1]


# --- native streams (/proxy/) ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 33, 10_000])
def test_native_stream_is_relayed_untouched_and_its_usage_read(size: int) -> None:
    relay = provider().stream(proxied("converse-stream"))
    stream, out = b"".join(TEXT_STREAM), b""
    for i in range(0, len(stream), size):
        out += relay.feed(stream[i : i + size])
    assert out + relay.finish() == stream
    assert relay.usage == Usage(17, 3, cache_read_tokens=5) and relay.completion_text() == "Hello"


def test_native_invoke_stream_usage_from_invocation_metrics() -> None:
    metrics = {
        "type": "message_stop",
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": 11,
            "outputTokenCount": 5,
            "invocationLatency": 300,
            "firstByteLatency": 100,
        },
    }
    chunks = [{"type": "content_block_delta", "delta": {"text": "Hi"}}, metrics]
    frames = b"".join(
        frame(
            [(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")],
            orjson.dumps({"bytes": base64.b64encode(orjson.dumps(c)).decode()}),
        )
        for c in chunks
    )
    relay = provider().stream(proxied("invoke-with-response-stream"))
    assert relay.feed(frames) == frames and relay.usage == Usage(11, 5)


def test_an_event_that_is_not_json_ends_the_stream_with_an_error() -> None:
    headers = [
        (":event-type", "contentBlockDelta"),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ]
    events, _ = relay_all([TEXT_STREAM[0], frame(headers, b"not json")], 64)
    assert events[-1].startswith(b"event: error") and b"malformed" in events[-1]
