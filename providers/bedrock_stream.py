"""Bedrock's binary event streams (`application/vnd.amazon.eventstream`), read incrementally.

Frames are decoded with botocore's own parser, so a frame split anywhere across chunks waits for its
end and every complete frame is handled in the `feed` call that completed it. `ConverseRelay` writes a
ConverseStream as OpenAI chunks; `NativeRelay` passes the vendor's bytes through untouched (`/proxy/`)
and only reads the usage they carry.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError  # type: ignore[import-untyped]

from gateway.errors import TollgateError, UpstreamStatus, UpstreamUnavailable
from providers import sse
from providers.answer import ChunkWriter, FinishReason
from providers.base import Usage
from providers.bedrock_convert import FINISH, TokenUsage

# Exception events a stream can end with, and the HTTP status the same error has as a response.
STREAM_EXCEPTIONS = {
    "throttlingException": 429,
    "validationException": 400,
    "modelStreamErrorException": 424,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}


class _ToolStart(msgspec.Struct):
    toolUseId: str  # Bedrock's names
    name: str


class _Start(msgspec.Struct):
    toolUse: _ToolStart | None = None


class _ToolDelta(msgspec.Struct):
    input: str = ""


class _Delta(msgspec.Struct):
    text: str | None = None
    toolUse: _ToolDelta | None = None


class _Event(msgspec.Struct):
    """Every ConverseStream event's fields in one view (each event type fills its own)."""

    contentBlockIndex: int = 0
    start: _Start | None = None
    delta: _Delta | None = None
    stopReason: str | None = None
    usage: TokenUsage | None = None
    message: str | None = None  # exception events
    Message: str | None = None


class _Chunk(msgspec.Struct):
    bytes: str = ""  # InvokeModelWithResponseStream: the model's own JSON, base64


class _Metrics(msgspec.Struct):
    inputTokenCount: int = 0
    outputTokenCount: int = 0
    cacheReadInputTokenCount: int = 0
    cacheWriteInputTokenCount: int = 0


class _ModelChunk(msgspec.Struct):
    metrics: _Metrics | None = msgspec.field(default=None, name="amazon-bedrock-invocationMetrics")


_event = msgspec.json.Decoder(_Event)
_chunk = msgspec.json.Decoder(_Chunk)
_model_chunk = msgspec.json.Decoder(_ModelChunk)


def _headers(message: EventStreamMessage) -> dict[str, Any]:
    headers: dict[str, Any] = message.headers
    return headers


def _exception(message: EventStreamMessage, slug: str) -> TollgateError:
    """The error an `exception` (or `error`) frame reports, as the client will see it."""
    headers = _headers(message)
    kind = str(headers.get(":exception-type") or headers.get(":error-code") or "")
    try:
        event = _event.decode(message.payload)
        text = event.message or event.Message or headers.get(":error-message") or ""
    except msgspec.DecodeError:
        text = str(headers.get(":error-message") or "")
    status = STREAM_EXCEPTIONS.get(kind, 500)
    return UpstreamStatus(status, f"LLM '{slug}': the stream ended with {kind}: {text}", code=kind or None)


class ConverseRelay:
    """ConverseStream frames → OpenAI `chat.completion.chunk` events, one frame at a time."""

    def __init__(self, model: str, include_usage: bool, slug: str) -> None:
        self._writer = ChunkWriter(model, include_usage)
        self._slug = slug
        self._buffer = EventStreamBuffer()
        self._tools: dict[int, int] = {}  # content block index → OpenAI tool call index
        self._finish: FinishReason | None = None
        self._texts: list[str] = []
        self._done = False
        self.usage: Usage | None = None
        self.error: TollgateError | None = None
        self.model: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self._done:
            return b""
        self._buffer.add_data(chunk)
        out = []
        try:
            for message in self._buffer:
                out.append(self._frame(message))
                if self._done:
                    break
        except (ParserError, msgspec.DecodeError) as exc:
            self._done = True
            self.error = UpstreamUnavailable(
                f"LLM '{self._slug}': the upstream's event stream is malformed ({type(exc).__name__})"
            )
            out.append(sse.event(self.error.body(), "error"))
        return b"".join(out)

    def finish(self) -> bytes:
        """The end of the answer when the stream stopped before its metadata event."""
        if self._done:
            return b""
        self._done = True
        return self._writer.end(self._finish, self.usage)

    def completion_text(self) -> str:
        return "".join(self._texts)

    def _frame(self, message: EventStreamMessage) -> bytes:
        headers = _headers(message)
        if headers.get(":message-type") != "event":
            self._done = True  # the stream ends with the error: no finish chunk, no [DONE]
            self.error = _exception(message, self._slug)
            return sse.event(self.error.body(), "error")
        kind = headers.get(":event-type")
        event = _event.decode(message.payload)
        if kind == "contentBlockDelta" and event.delta is not None:
            return self._delta(event.contentBlockIndex, event.delta)
        if kind == "contentBlockStart" and event.start is not None and event.start.toolUse is not None:
            tool = event.start.toolUse
            index = self._tools[event.contentBlockIndex] = len(self._tools)
            return self._writer.tool_call(index, tool.toolUseId, tool.name)
        if kind == "messageStart":
            return self._writer.start()
        if kind == "messageStop":
            self._finish = FINISH.get(event.stopReason or "", "stop")
        elif kind == "metadata":
            # The last event: usage comes after messageStop, so the finish chunk goes out with it.
            self.usage = event.usage.normalized() if event.usage else None
            self._done = True
            return self._writer.end(self._finish, self.usage)
        return b""

    def _delta(self, block: int, delta: _Delta) -> bytes:
        if delta.text is not None:
            self._texts.append(delta.text)
            return self._writer.text(delta.text)
        if delta.toolUse is not None and block in self._tools:
            return self._writer.tool_arguments(self._tools[block], delta.toolUse.input)
        return b""  # reasoning and citation deltas have no place in Chat Completions


class NativeRelay:
    """The vendor's event stream passed through byte for byte; usage read from its metadata event
    (ConverseStream) or from the invocation metrics of its last chunk (InvokeModelWithResponseStream)."""

    def __init__(self) -> None:
        self._buffer: EventStreamBuffer | None = EventStreamBuffer()
        self._texts: list[str] = []
        self.usage: Usage | None = None
        self.error: TollgateError | None = None
        self.model: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self._buffer is not None:
            self._buffer.add_data(chunk)
            try:
                for message in self._buffer:
                    self._read(message)
            except (ParserError, msgspec.DecodeError, binascii.Error):
                self._buffer = None  # not ours to judge: the client gets the bytes, we stop reading
        return chunk

    def finish(self) -> bytes:
        return b""

    def completion_text(self) -> str:
        return "".join(self._texts)

    def _read(self, message: EventStreamMessage) -> None:
        headers = _headers(message)
        if headers.get(":message-type") != "event":
            return
        kind = headers.get(":event-type")
        if kind == "metadata" or kind == "contentBlockDelta":
            event = _event.decode(message.payload)
            if event.usage is not None:
                self.usage = event.usage.normalized()
            if event.delta is not None and event.delta.text:
                self._texts.append(event.delta.text)
        elif kind == "chunk":
            data = _chunk.decode(message.payload).bytes
            if b"amazon-bedrock-invocationMetrics" in (raw := base64.b64decode(data)):
                metrics = _model_chunk.decode(raw).metrics
                if metrics is not None:
                    read, write = metrics.cacheReadInputTokenCount, metrics.cacheWriteInputTokenCount
                    self.usage = Usage(
                        metrics.inputTokenCount + read + write, metrics.outputTokenCount, read, write
                    )
