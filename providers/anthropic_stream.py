"""Anthropic Messages streams: translated into OpenAI chunks (`AnthropicStream`), or passed through
untouched with the usage read on the way (`NativeStream`, for `/proxy/`).

Both take the upstream's bytes as they come, from any transport (api.anthropic.com, Vertex); an event
split across chunks waits for its end, every complete event is handled in the same `feed` call.
"""

from __future__ import annotations

import msgspec

from gateway.errors import TollgateError, UpstreamStatus
from providers import sse
from providers.answer import ChunkWriter, FinishReason
from providers.anthropic_messages import JSON_TOOL, AnthropicMessage, AnthropicUsage, Block, finish_reason
from providers.base import Usage


class _Delta(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _Error(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class _Event(msgspec.Struct):
    type: str = ""
    index: int = 0
    message: AnthropicMessage | None = None
    content_block: Block | None = None
    delta: _Delta | None = None
    usage: AnthropicUsage | None = None
    error: _Error | None = None


_event = msgspec.json.Decoder(_Event)


def _decode(payload: bytes) -> _Event | None:
    if not payload:
        return None
    try:
        return _event.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return None


class _Counts:
    """Usage as the stream reports it: message_start's, overwritten by message_delta's cumulative counts."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: AnthropicUsage | None = None

    def take(self, usage: AnthropicUsage | None) -> Usage | None:
        if usage is not None:
            if self.counts is None:
                self.counts = AnthropicUsage()
            self.counts.update(usage)
        return self.counts.normalized() if self.counts is not None else None


# Anthropic's error types mid-stream, and the status the interaction is recorded with.
_STREAM_ERROR_STATUS = {"overloaded_error": 529, "rate_limit_error": 429, "api_error": 500}


def stream_error(error: _Error | None) -> UpstreamStatus:
    """The failure an Anthropic `error` event reports; its body is the client's SSE `error` event."""
    kind = (error.type if error else None) or "api_error"
    message = (error.message if error else None) or "the upstream reported an error mid-stream"
    return UpstreamStatus(_STREAM_ERROR_STATUS.get(kind, 502), message, type=kind, code=kind)


class AnthropicStream:
    """Anthropic SSE in, OpenAI `chat.completion.chunk` SSE out, event by event.

    Text deltas become content deltas; a `tool_use` block opens a tool call (its id and name) and its
    `input_json_delta`s are the argument fragments; `message_stop` writes the finish chunk, the usage
    chunk (when the client asked for it) and `[DONE]`. With `json_tool`, the emulated JSON mode's tool
    input is streamed as text.
    """

    __slots__ = (
        "_finish",
        "_json_blocks",
        "_parts",
        "_tail",
        "_tools",
        "_usage",
        "_writer",
        "error",
        "model",
        "usage",
    )

    def __init__(self, model: str, include_usage: bool, *, json_tool: bool = False) -> None:
        self._writer = ChunkWriter(model, include_usage)
        self._tail = b""
        self._tools: dict[int, int] = {}  # content block index → OpenAI tool call index
        self._json_blocks: set[int] | None = set() if json_tool else None
        self._finish: FinishReason | None = None
        self._usage = _Counts()
        self._parts: list[str] = []  # text and arguments relayed, for counting when no usage came
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
        return self._translate(block)

    def finish(self) -> bytes:
        block, self._tail = self._tail, b""
        return self._translate(block) if block.strip() else b""

    def completion_text(self) -> str:
        return "".join(self._parts)

    def _translate(self, block: bytes) -> bytes:
        out = b""
        for raw in sse.split(block):
            event = _decode(sse.data(raw))
            if event is not None:
                out += self._on(event)
        return out

    def _on(self, event: _Event) -> bytes:
        kind = event.type
        if kind == "content_block_delta" and event.delta is not None:
            return self._delta(event.index, event.delta)
        if kind == "content_block_start" and event.content_block is not None:
            return self._block_start(event.index, event.content_block)
        if kind == "message_start" and event.message is not None:
            self.model = event.message.model or self.model
            self._writer.model = self.model or self._writer.model
            self.usage = self._usage.take(event.message.usage)
            return self._writer.start()
        if kind == "message_delta":
            if event.delta is not None and event.delta.stop_reason is not None:
                self._finish = finish_reason(event.delta.stop_reason, self._json_blocks is not None)
            self.usage = self._usage.take(event.usage)
            return b""
        if kind == "message_stop":
            return self._writer.end(self._finish, self.usage)
        if kind == "error":
            self.error = stream_error(event.error)
            return sse.event(self.error.body(), "error")
        return b""  # ping, content_block_stop, and event kinds added later

    def _block_start(self, index: int, block: Block) -> bytes:
        if block.type == "text":
            return self._text(block.text or "")
        if block.type != "tool_use":
            return b""  # thinking and server-tool blocks have no OpenAI counterpart
        if self._json_blocks is not None and block.name == JSON_TOOL:
            self._json_blocks.add(index)
            return self._writer.start()
        position = self._tools[index] = len(self._tools)
        self._parts.append(block.name or "")
        return self._writer.tool_call(position, block.id or "", block.name or "")

    def _delta(self, index: int, delta: _Delta) -> bytes:
        if delta.type == "text_delta":
            return self._text(delta.text or "")
        if delta.type != "input_json_delta" or not delta.partial_json:
            return b""
        if self._json_blocks is not None and index in self._json_blocks:
            return self._text(delta.partial_json)
        position = self._tools.get(index)
        if position is None:
            return b""
        self._parts.append(delta.partial_json)
        return self._writer.tool_arguments(position, delta.partial_json)

    def _text(self, text: str) -> bytes:
        self._parts.append(text)
        return self._writer.text(text)


_USAGE_MARK = b'"usage"'
_TEXT_MARK = b'"text_delta"'


class NativeStream:
    """The upstream's stream relayed byte for byte; only the usage (and the text, for counting) is read."""

    __slots__ = ("_parts", "_tail", "_usage", "error", "model", "usage")

    def __init__(self) -> None:
        self._tail = b""
        self._usage = _Counts()
        self._parts: list[str] = []
        self.usage: Usage | None = None
        self.error: TollgateError | None = None
        self.model: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        buf = self._tail + chunk if self._tail else chunk
        end = sse.complete_length(buf)
        if end:
            self._scan(buf[:end])
        self._tail = buf[end:]
        return chunk

    def finish(self) -> bytes:
        block, self._tail = self._tail, b""
        if block.strip():
            self._scan(block)
        return b""

    def completion_text(self) -> str:
        return "".join(self._parts)

    def _scan(self, block: bytes) -> None:
        if _USAGE_MARK not in block and _TEXT_MARK not in block:
            return
        for raw in sse.split(block):
            event = _decode(sse.data(raw))
            if event is None:
                continue
            if event.type == "message_start" and event.message is not None:
                self.model = event.message.model or self.model
                self.usage = self._usage.take(event.message.usage)
            elif event.type == "message_delta":
                self.usage = self._usage.take(event.usage)
            elif event.delta is not None and event.delta.type == "text_delta":
                self._parts.append(event.delta.text or "")
