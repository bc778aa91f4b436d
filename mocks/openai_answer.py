"""Chat Completions answers: the deterministic reply, its token counts, and its JSON and SSE encodings."""

from __future__ import annotations

import random
import re
import string
import time
from typing import Any

import msgspec
import orjson

from mocks.openai_errors import JsonObject
from mocks.openai_messages import last_user_text, message_text
from mocks.openai_models import ENCODING, count_tokens, encode

TOOL_ARGUMENTS = '{"location": "Paris"}'
FINGERPRINT = "fp_mock"
QUOTE_CHARS = 60
# Streamed tool arguments arrive a token at a time, as from the real API.
_ARGUMENT_FRAGMENTS = [ENCODING.decode([token]) for token in encode(TOOL_ARGUMENTS)]
# Words with their leading whitespace, so the streamed pieces concatenate to the whole answer.
_WORDS = re.compile(r"\s*\S+|\s+")
_ID_ALPHABET = string.ascii_letters + string.digits
_ECHOED_TIERS = frozenset({"flex", "scale", "priority", "fast"})
_NO_COMPLETION_DETAILS = {
    "reasoning_tokens": 0,
    "audio_tokens": 0,
    "accepted_prediction_tokens": 0,
    "rejected_prediction_tokens": 0,
}


class Answer(msgspec.Struct, frozen=True):
    """What every choice says: `text`, or a call of the function `tool`."""

    text: str | None
    tool: str | None
    finish_reason: str
    tokens: int  # completion tokens of one choice


def random_id(prefix: str, size: int) -> str:
    return prefix + "".join(random.choices(_ID_ALPHABET, k=size))


# --- deciding the answer ----------------------------------------------------------------------------


def _tool_call_tokens(call: JsonObject) -> int:
    spec = call.get("function") or call.get("custom") or {}
    return count_tokens(spec.get("name", "")) + count_tokens(spec.get("arguments") or spec.get("input") or "")


def prompt_tokens(messages: list[JsonObject]) -> int:
    """The cookbook's count: 3 per message, its role and text, 1 more plus the name when named, 3 to prime."""
    total = 3
    for message in messages:
        total += 3 + count_tokens(message["role"]) + count_tokens(message_text(message))
        if message.get("name"):
            total += 1 + count_tokens(message["name"])
        total += sum(_tool_call_tokens(call) for call in message.get("tool_calls") or ())
    return total


def _allowed_names(allowed: JsonObject) -> set[str]:
    return {
        tool["function"].get("name") for tool in allowed["tools"] if isinstance(tool.get("function"), dict)
    }


def _pick_tool(body: JsonObject) -> str | None:
    """The function to call: forced by tool_choice, or "auto" and named in the last user message."""
    tools = body.get("tools") or ()
    names: list[str] = [tool["function"]["name"] for tool in tools if tool["type"] == "function"]
    choice = body.get("tool_choice")
    mode: str = choice if isinstance(choice, str) else "auto"
    if isinstance(choice, dict):
        if choice["type"] != "allowed_tools":
            # Custom tools are accepted but never called: their calls do not stream as function deltas.
            return str(choice["function"]["name"]) if choice["type"] == "function" else None
        names = [name for name in names if name in _allowed_names(choice["allowed_tools"])]
        mode = choice["allowed_tools"]["mode"]
    if not names or mode == "none":
        return None
    messages = body["messages"]
    text = last_user_text(messages)
    mentioned = next((name for name in names if name in text), None)
    if mode == "required":
        return mentioned or names[0]
    # After a tool result the model answers it rather than calling again.
    return None if messages[-1]["role"] == "tool" else mentioned


def _token_limit(body: JsonObject) -> int | None:
    limits = [body[name] for name in ("max_tokens", "max_completion_tokens") if body.get(name) is not None]
    return min(limits) if limits else None


def plan_answer(body: JsonObject) -> Answer:
    tool = _pick_tool(body)
    if tool is not None:
        return Answer(None, tool, "tool_calls", count_tokens(tool) + len(_ARGUMENT_FRAGMENTS))
    messages = body["messages"]
    last = messages[-1]
    if last["role"] == "tool":
        text = "Mock answer to tool result: " + message_text(last)[:QUOTE_CHARS]
    else:
        text = "Mock answer to: " + last_user_text(messages)[:QUOTE_CHARS]
    tokens = encode(text)
    limit = _token_limit(body)
    if limit is None or len(tokens) <= limit:
        return Answer(text, None, "stop", len(tokens))
    return Answer(ENCODING.decode(tokens[:limit]), None, "length", limit)


def usage(prompt: int, completion: int, cached: int) -> JsonObject:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": min(max(cached, 0), prompt), "audio_tokens": 0},
        "completion_tokens_details": _NO_COMPLETION_DETAILS,
    }


def service_tier(body: JsonObject) -> str:
    """The tier that served the request: "auto" (or nothing) runs on "default"."""
    requested = body.get("service_tier")
    return requested if requested in _ECHOED_TIERS else "default"


# --- encoding it --------------------------------------------------------------------------------------


def _tool_call(name: str) -> JsonObject:
    function = {"name": name, "arguments": TOOL_ARGUMENTS}
    return {"id": random_id("call_", 24), "type": "function", "function": function}


def _message(answer: Answer) -> JsonObject:
    if answer.tool is None:
        return {"role": "assistant", "content": answer.text, "refusal": None, "annotations": []}
    calls = [_tool_call(answer.tool)]
    return {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None, "annotations": []}


def _head(kind: str, model: str) -> JsonObject:
    return {"id": random_id("chatcmpl-", 29), "object": kind, "created": int(time.time()), "model": model}


def completion_body(answer: Answer, model: str, n: int, tier: str, usage: JsonObject | None) -> bytes:
    body = _head("chat.completion", model)
    body["choices"] = [
        {"index": index, "message": _message(answer), "logprobs": None, "finish_reason": answer.finish_reason}
        for index in range(n)
    ]
    if usage is not None:
        body["usage"] = usage
    body["service_tier"] = tier
    body["system_fingerprint"] = FINGERPRINT
    return orjson.dumps(body)


def _deltas(answer: Answer) -> list[JsonObject]:
    """One choice's deltas: the role first, then words of text or fragments of the tool's arguments."""
    if answer.tool is None:
        first: JsonObject = {"role": "assistant", "content": "", "refusal": None}
        return [first, *({"content": word} for word in _WORDS.findall(answer.text or ""))]
    call = _tool_call(answer.tool)
    call["function"]["arguments"] = ""
    opening = {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}], "refusal": None}
    fragments = (
        {"tool_calls": [{"index": 0, "function": {"arguments": part}}]} for part in _ARGUMENT_FRAGMENTS
    )
    return [opening, *fragments]


def _event(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def stream_events(
    answer: Answer, model: str, n: int, tier: str, usage: JsonObject | None, include_usage: bool
) -> list[bytes]:
    """Every SSE event of the answer, in order, ending with [DONE]; choices interleave as upstream."""
    head = _head("chat.completion.chunk", model)
    head["service_tier"] = tier
    head["system_fingerprint"] = FINGERPRINT

    def chunk(index: int, delta: JsonObject, finish: str | None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        data = {**head, "choices": [choice]}
        if include_usage:
            data["usage"] = None
        return _event(data)

    per_choice = [_deltas(answer) for _ in range(n)]
    events = [
        chunk(index, per_choice[index][step], None)
        for step in range(len(per_choice[0]))
        for index in range(n)
    ]
    events += [chunk(index, {}, answer.finish_reason) for index in range(n)]
    if include_usage:
        events.append(_event({**head, "choices": [], "usage": usage}))
    events.append(DONE)
    return events
