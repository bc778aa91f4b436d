"""OpenAI-shaped output for adapters that translate another vendor's answer: complete chat answers,
stream chunks written event by event, embeddings (floats or base64) and model lists.

Every translating adapter writes through here, so the answer an OpenAI SDK sees has one shape whatever
the vendor; only the vendor's own parsing lives in its module.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterable, Sequence
from random import getrandbits
from typing import Any, Literal

import orjson

from providers import sse
from providers.base import Usage

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


def new_id(prefix: str = "chatcmpl-") -> str:
    return f"{prefix}{getrandbits(96):024x}"


def usage_json(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage object: prompt tokens include the cached ones, as OpenAI counts them."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
    }


def tool_call_json(id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chat_completion(
    model: str,
    content: str | None,
    finish_reason: FinishReason | None,
    usage: Usage | None,
    tool_calls: Sequence[dict[str, Any]] = (),
) -> bytes:
    """A complete `chat.completion` answer with one choice."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    answer: dict[str, Any] = {
        "id": new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        answer["usage"] = usage_json(usage)
    return orjson.dumps(answer)


class ChunkWriter:
    """Writes one translated stream as OpenAI `chat.completion.chunk` SSE events, as they happen.

    The first event carries the role; tool calls open with their id and name and continue with argument
    fragments; `end` writes the finish chunk, the usage chunk (only when the client asked for it) and
    `[DONE]`.
    """

    __slots__ = ("_head", "_include_usage", "_started", "model")

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self._include_usage = include_usage
        self._started = False
        self._head = (
            f'"id":"{new_id()}","object":"chat.completion.chunk","created":{int(time.time())},'.encode()
        )

    def _event(self, choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
        fields: dict[str, Any] = {"model": self.model, "choices": choices}
        if self._include_usage:
            fields["usage"] = None
        if extra:
            fields.update(extra)
        return b"data: {" + self._head + orjson.dumps(fields)[1:] + b"\n\n"

    def _delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self.start() + self._event([choice])

    def start(self) -> bytes:
        """The role chunk, as OpenAI sends it first (empty once written)."""
        if self._started:
            return b""
        self._started = True
        return self._event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None}])  # fmt: skip

    def text(self, text: str) -> bytes:
        return self._delta({"content": text}) if text else b""

    def tool_call(self, index: int, id: str, name: str, arguments: str = "") -> bytes:
        call = {
            "index": index,
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return self._delta({"tool_calls": [call]})

    def tool_arguments(self, index: int, fragment: str) -> bytes:
        if not fragment:
            return b""
        return self._delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def end(self, finish_reason: FinishReason | None, usage: Usage | None) -> bytes:
        out = self._delta({}, finish_reason or "stop")
        if self._include_usage and usage is not None:
            out += (
                b"data: {"
                + self._head
                + orjson.dumps({"model": self.model, "choices": [], "usage": usage_json(usage)})[1:]
                + b"\n\n"
            )
        return out + sse.event(sse.DONE)


def embeddings(model: str, vectors: Iterable[Sequence[float]], usage: Usage, encoding_format: str) -> bytes:
    """An OpenAI embeddings answer; base64 is little-endian float32, as OpenAI sends it (and the SDK's
    default asks for it)."""
    data = []
    for index, vector in enumerate(vectors):
        value: Any = list(vector)
        if encoding_format == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    }
    return orjson.dumps(body)


def model_list(ids: Iterable[str], owned_by: str, created: int = 0) -> list[dict[str, Any]]:
    return [{"id": i, "object": "model", "created": created, "owned_by": owned_by} for i in ids]
