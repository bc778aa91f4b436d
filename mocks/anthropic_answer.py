"""MockAnthropic's catalog and answers: the deterministic reply, its token counts, and its JSON and SSE
encodings in the Messages API's wire format."""

from __future__ import annotations

import random
import re
import string
from typing import Any

import msgspec
import orjson

from mocks.openai_models import ENCODING, count_tokens, encode

JsonObject = dict[str, Any]

TOOL_INPUT = '{"location": "Paris"}'
QUOTE_CHARS = 60
IMAGE_TOKENS = 1600  # Anthropic bills an image by its size; a fixed figure is plausible enough here
_WORDS = re.compile(r"\s*\S+|\s+")
_FRAGMENTS = [ENCODING.decode([token]) for token in encode(TOOL_INPUT)]
_FINAL_COUNTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
_ID_ALPHABET = string.ascii_letters + string.digits


class ModelInfo(msgspec.Struct, frozen=True):
    id: str
    display_name: str
    created_at: str
    max_input_tokens: int
    max_tokens: int


MODELS = {
    m.id: m
    for m in (
        ModelInfo("claude-opus-4-7", "Claude Opus 4.7", "2026-04-16T00:00:00Z", 1_000_000, 128_000),
        ModelInfo("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z", 1_000_000, 64_000),
        ModelInfo("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", 200_000, 64_000),
        ModelInfo("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z", 200_000, 64_000),
        ModelInfo("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-24T00:00:00Z", 200_000, 64_000),
    )
}
# Aliases answer with the dated model they point at, as the API does.
ALIASES = {
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-opus-4-5": "claude-opus-4-5-20251101",
}


def model_json(info: ModelInfo) -> JsonObject:
    return {
        "type": "model",
        "id": info.id,
        "display_name": info.display_name,
        "created_at": info.created_at,
        "lifecycle": "active",
        "max_input_tokens": info.max_input_tokens,
        "max_tokens": info.max_tokens,
    }


def random_id(prefix: str, size: int = 24) -> str:
    return prefix + "".join(random.choices(_ID_ALPHABET, k=size))


class Answer(msgspec.Struct):
    """The content blocks of the reply, why it stopped, and its output tokens."""

    blocks: list[JsonObject]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int


# --- counting ----------------------------------------------------------------------------------------


def _block_tokens(block: Any) -> int:
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        return count_tokens(block.get("text") or "")
    if kind in ("image", "document"):
        return IMAGE_TOKENS
    if kind == "tool_use":
        return count_tokens(block.get("name") or "") + count_tokens(orjson.dumps(block.get("input")).decode())
    if kind == "tool_result":
        return 3 + _content_tokens(block.get("content") or "")
    return 0


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    return sum(_block_tokens(block) for block in content or ())


def prompt_tokens(body: JsonObject) -> int:
    """Every prompt token: the system prompt, each turn (3 apiece) and the tool definitions."""
    total = _content_tokens(body.get("system") or "")
    total += sum(3 + _content_tokens(m["content"]) for m in body["messages"])
    total += sum(count_tokens(orjson.dumps(tool).decode()) for tool in body.get("tools") or ())
    return total + (346 if body.get("tools") else 0)  # the tool-use system prompt the API adds


# --- deciding the answer ---------------------------------------------------------------------------


def _last_user(messages: list[JsonObject]) -> tuple[str, str | None]:
    """(text of the last user turn, text of its tool result if it answers a tool call)."""
    content = messages[-1]["content"] if messages[-1]["role"] == "user" else ""
    if isinstance(content, str):
        return content, None
    texts = [b.get("text", "") for b in content if b.get("type") == "text"]
    results = [b.get("content") or "" for b in content if b.get("type") == "tool_result"]
    if results:
        result = results[-1]
        text = result if isinstance(result, str) else "".join(b.get("text", "") for b in result)
        return "".join(texts), text
    return "".join(texts), None


def _pick_tool(body: JsonObject, text: str, answered: bool) -> str | None:
    names: list[str] = [t["name"] for t in body.get("tools") or () if t.get("type") in (None, "custom")]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not names or choice["type"] == "none":
        return None
    if choice["type"] == "tool":
        return str(choice["name"])
    mentioned = next((name for name in names if name in text), None)
    if choice["type"] == "any":
        return mentioned or names[0]
    return None if answered else mentioned  # after a tool result the model answers it


def _sample(schema: Any) -> Any:
    """A value of the JSON schema (structured outputs): the mock's answer in that shape."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: _sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    return {"string": "mock", "integer": 0, "number": 0, "boolean": False, "array": []}.get(str(kind))


def plan_answer(body: JsonObject) -> Answer:
    messages = body["messages"]
    text, result = _last_user(messages)
    tool = _pick_tool(body, text, result is not None)
    if tool is not None:
        block = {
            "type": "tool_use",
            "id": random_id("toolu_"),
            "name": tool,
            "input": orjson.loads(TOOL_INPUT),
        }
        return Answer([block], "tool_use", None, count_tokens(tool) + len(_FRAGMENTS))
    fmt = (body.get("output_config") or {}).get("format")
    if fmt is not None:
        reply = orjson.dumps(_sample(fmt["schema"])).decode()
    elif result is not None:
        reply = "Mock answer to tool result: " + result[:QUOTE_CHARS]
    else:
        reply = "Mock answer to: " + text[:QUOTE_CHARS]
    return _limit(reply, body)


def _limit(reply: str, body: JsonObject) -> Answer:
    stop_reason, stop_sequence = "end_turn", None
    for sequence in body.get("stop_sequences") or ():
        if sequence and sequence in reply:
            reply, stop_reason, stop_sequence = reply[: reply.index(sequence)], "stop_sequence", sequence
            break
    tokens = encode(reply)
    limit = body.get("max_tokens")
    if limit is not None and len(tokens) > limit:
        reply, stop_reason, stop_sequence = ENCODING.decode(tokens[:limit]), "max_tokens", None
        tokens = tokens[:limit]
    blocks = [{"type": "text", "text": reply}] if reply else []
    return Answer(blocks, stop_reason, stop_sequence, len(tokens))


# --- encoding it ---------------------------------------------------------------------------------------


def usage(prompt: int, output: int, cache_read: int, cache_write: int) -> JsonObject:
    """Anthropic's usage: `input_tokens` leaves out the tokens read from or written to the cache."""
    read = min(max(cache_read, 0), prompt)
    write = min(max(cache_write, 0), prompt - read)
    return {
        "input_tokens": prompt - read - write,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
        "service_tier": "standard",
    }


def message_json(answer: Answer, model: str, used: JsonObject) -> JsonObject:
    return {
        "id": random_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": answer.blocks,
        "stop_reason": answer.stop_reason,
        "stop_sequence": answer.stop_sequence,
        "stop_details": None,
        "usage": used,
    }


def event(kind: str, data: JsonObject) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def _block_events(index: int, block: JsonObject) -> list[bytes]:
    def delta(payload: JsonObject) -> bytes:
        return event("content_block_delta", {"index": index, "delta": payload})

    if block["type"] == "text":
        start = event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
        deltas = [delta({"type": "text_delta", "text": word}) for word in _WORDS.findall(block["text"])]
    else:
        opening = {**block, "input": {}}
        start = event("content_block_start", {"index": index, "content_block": opening})
        # The API opens a tool's input with an empty fragment, then streams its JSON piece by piece.
        deltas = [delta({"type": "input_json_delta", "partial_json": p}) for p in ["", *_FRAGMENTS]]
    return [start, *deltas, event("content_block_stop", {"index": index})]


def stream_events(answer: Answer, model: str, used: JsonObject, error: str | None = None) -> list[bytes]:
    """Every SSE event of the answer in order; with `error`, an `error` event cuts it after one delta."""
    opening = message_json(Answer([], answer.stop_reason, None, 0), model, {**used, "output_tokens": 1})
    opening["stop_reason"] = None
    events = [event("message_start", {"message": opening}), event("ping", {})]
    for index, block in enumerate(answer.blocks):
        events += _block_events(index, block)
    if error is not None:
        cut = events[:4] if len(events) > 4 else events
        return [*cut, event("error", {"error": {"type": error, "message": error.replace("_", " ")}})]
    # message_delta's counts are cumulative: the input and cache counts again, and the output's total.
    final = {key: used[key] for key in _FINAL_COUNTS}
    delta = {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence}
    events.append(event("message_delta", {"delta": delta, "usage": final}))
    events.append(event("message_stop", {}))
    return events
