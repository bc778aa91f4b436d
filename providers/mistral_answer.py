"""Mistral's chat answers (JSON and SSE) and embeddings, written out in OpenAI's format.

Mistral's answers look like OpenAI's with differences that matter to OpenAI clients: content may be a
list of chunks (reasoning models put `thinking` chunks before the text), tool call arguments may be a
JSON object rather than a string, finish reasons include `model_length` and `error`, a streamed tool
call arrives whole in one delta, and the usage rides on the stream's last chunk (with the finish
reason) whether or not the client asked for it. The stream is translated event by event.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from gateway.errors import TollgateError, UpstreamStatus
from providers import sse
from providers.answer import ChunkWriter, FinishReason, tool_call_json
from providers.base import Usage

# `model_length`: the context window ended the answer; `error`: generation failed mid-way, and OpenAI
# has no such reason (the text so far is the answer).
FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "model_length": "length",
    "tool_calls": "tool_calls",
    "error": "stop",
}


class _Details(msgspec.Struct):
    cached_tokens: int = 0


class MistralUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _Details | None = None

    def normalized(self) -> Usage:
        # Mistral's prompt_tokens include the cached ones, as OpenAI's do.
        cached = self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else 0
        return Usage(self.prompt_tokens, self.completion_tokens, cache_read_tokens=cached)


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | dict[str, Any] | None = None


class _ToolCall(msgspec.Struct):
    function: _Function
    id: str | None = None


class _Message(msgspec.Struct):
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[_ToolCall] | None = None
    role: str | None = None


class _Choice(msgspec.Struct):
    message: _Message | None = None
    delta: _Message | None = None
    finish_reason: str | None = None


class Completion(msgspec.Struct):
    """A chat answer, or one chunk of a streamed one; `object: "error"` is an error event."""

    model: str | None = None
    choices: list[_Choice] = []
    usage: MistralUsage | None = None
    object: str | None = None
    message: str | dict[str, Any] | None = None


class _Embedding(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class EmbeddingList(msgspec.Struct):
    data: list[_Embedding]
    model: str | None = None
    usage: MistralUsage | None = None

    def vectors(self) -> list[list[float]]:
        return [item.embedding for item in sorted(self.data, key=lambda item: item.index)]


completion = msgspec.json.Decoder(Completion)
embedding_list = msgspec.json.Decoder(EmbeddingList)


def text_of(content: str | list[dict[str, Any]] | None) -> str:
    """The answer's text: string content, or its `text` chunks (thinking chunks are not the answer)."""
    if isinstance(content, str):
        return content
    texts = (chunk.get("text") for chunk in content or () if chunk.get("type") == "text")
    return "".join(text for text in texts if isinstance(text, str))


def arguments_of(function: _Function) -> str:
    arguments = function.arguments
    if arguments is None or isinstance(arguments, str):
        return arguments or ""
    return orjson.dumps(arguments).decode()


def message_parts(message: _Message) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool calls) of a complete answer, in OpenAI's shapes."""
    calls = [
        tool_call_json(call.id or "", call.function.name or "", arguments_of(call.function))
        for call in message.tool_calls or ()
    ]
    text = text_of(message.content)
    return (text if text or not calls else None), calls


class MistralStream:
    """Mistral SSE in, OpenAI chunks out: each event is written as it arrives."""

    __slots__ = (
        "_calls",
        "_ended",
        "_finish",
        "_last_call",
        "_tail",
        "_text",
        "_writer",
        "error",
        "model",
        "usage",
    )

    def __init__(self, model: str, include_usage: bool) -> None:
        self._writer = ChunkWriter(model, include_usage)
        self._tail = b""
        self._finish: FinishReason | None = None
        self._ended = False
        self._calls: dict[str, int] = {}  # Mistral's tool call id → the OpenAI index it got
        self._last_call = -1
        self._text: list[str] = []
        self.usage: Usage | None = None
        self.error: TollgateError | None = None
        self.model: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        buf = self._tail + chunk if self._tail else chunk
        end = sse.complete_length(buf)
        if end == 0:
            self._tail = buf
            return b""
        block, self._tail = buf[:end], buf[end:]
        return b"".join(self._event(sse.data(event)) for event in sse.split(block))

    def finish(self) -> bytes:
        block, self._tail = self._tail, b""
        out = b"".join(self._event(sse.data(event)) for event in sse.split(block)) if block.strip() else b""
        return out + self._end()  # a stream cut before [DONE] still ends as OpenAI's do

    def completion_text(self) -> str:
        return "".join(self._text)

    def _event(self, payload: bytes) -> bytes:
        if not payload or self._ended:
            return b""
        if payload == sse.DONE:
            return self._end()
        try:
            chunk = completion.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return b""
        if chunk.object == "error":
            self._ended = True
            text = chunk.message if isinstance(chunk.message, str) else "the upstream's stream failed"
            self.error = UpstreamStatus(502, text)
            return sse.event(self.error.body(), "error")
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = chunk.usage.normalized()
        out = []
        for choice in chunk.choices:
            if choice.delta is not None:
                out.append(self._delta(choice.delta))
            if choice.finish_reason:
                self._finish = FINISH.get(choice.finish_reason, "stop")
        if self._finish is not None and self.usage is not None:
            out.append(self._end())  # the last chunk: no need to wait for [DONE]
        return b"".join(out)

    def _delta(self, delta: _Message) -> bytes:
        out = [self._writer.start()] if delta.role else []
        text = text_of(delta.content)
        if text:
            self._text.append(text)
            out.append(self._writer.text(text))
        out.extend(self._tool_call(call) for call in delta.tool_calls or ())
        return b"".join(out)

    def _tool_call(self, call: _ToolCall) -> bytes:
        arguments = arguments_of(call.function)
        self._text.append(arguments)
        key = call.id if call.id and call.id != "null" else None
        if key is not None and key not in self._calls:
            index = self._calls[key] = self._last_call = len(self._calls)
            return self._writer.tool_call(index, key, call.function.name or "", arguments)
        index = self._calls[key] if key is not None else self._last_call
        return self._writer.tool_arguments(index, arguments) if index >= 0 else b""

    def _end(self) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        finish = self._finish or ("tool_calls" if self._calls else "stop")
        return self._writer.end(finish, self.usage)
