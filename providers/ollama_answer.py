"""Ollama's answers read: `/api/chat` JSON and NDJSON streams as OpenAI's, and usage from native answers.

Ollama reports usage in its final object (`done: true`): `prompt_eval_count` counts the whole prompt
(newer versions add `prompt_eval_cached_count`, the part served from its KV cache), `eval_count` the
answer. Older versions leave `prompt_eval_count` out when the prompt was cached: a stream, or an answer
on `/openai/`, without it reports no usage and the gateway counts with tiktoken instead; a whole native
answer (`/proxy/`), which the gateway cannot recount, books what it reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from gateway.errors import TollgateError, UpstreamStatus, UpstreamUnavailable
from providers import answer, sse
from providers.answer import ChunkWriter, FinishReason
from providers.base import Usage

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}
# Only the final object of a native stream has these: the lines worth decoding for usage.
_FINAL_MARKS = (b"eval_count", b"done_reason")


class _Function(msgspec.Struct):
    name: str = ""
    arguments: Any = None  # an object; a string passes as it is


class _ToolCall(msgspec.Struct):
    function: _Function
    id: str | None = None  # newer versions name their calls


class _Message(msgspec.Struct):
    content: str = ""
    tool_calls: list[_ToolCall] | None = None


class OllamaAnswer(msgspec.Struct):
    """A whole answer, one line of a stream, or an embed answer: the fields read from any of them."""

    model: str | None = None
    message: _Message | None = None
    response: str | None = None  # /api/generate's text
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    prompt_eval_cached_count: int | None = None
    eval_count: int | None = None
    error: str | None = None

    def usage(self, *, partial: bool = False) -> Usage | None:
        """The usage reported; `partial` takes what there is, the prompt count missing or not."""
        if self.prompt_eval_count is None and not (partial and self.eval_count is not None):
            return None
        prompt = self.prompt_eval_count or 0
        return Usage(
            input_tokens=prompt,
            output_tokens=self.eval_count or 0,
            cache_read_tokens=min(self.prompt_eval_cached_count or 0, prompt),
        )


decode = msgspec.json.Decoder(OllamaAnswer).decode


def finish_reason(done_reason: str | None, tool_calls: bool) -> FinishReason:
    if tool_calls:
        return "tool_calls"
    return _FINISH.get(done_reason or "stop", "stop")  # "load"/"unload" end no generation


def _arguments(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value if value is not None else {}).decode()


def tool_calls(message: _Message) -> list[dict[str, Any]]:
    """OpenAI tool calls: Ollama gives arguments as an object and (before 0.12) no id."""
    return [
        answer.tool_call_json(
            call.id or answer.new_id("call_"), call.function.name, _arguments(call.function.arguments)
        )
        for call in message.tool_calls or ()
    ]


def chat_completion(slug: str, model: str, body: bytes) -> tuple[bytes, OllamaAnswer]:
    """An `/api/chat` answer as OpenAI's `chat.completion`."""
    try:
        reply = decode(body)
    except (msgspec.DecodeError, RecursionError):
        raise UpstreamUnavailable(f"LLM '{slug}': the upstream's chat answer is not Ollama's") from None
    if reply.error is not None:
        raise UpstreamStatus(502, f"LLM '{slug}': the upstream failed: {reply.error}")
    message = reply.message or _Message()
    calls = tool_calls(message)
    content = message.content if message.content or not calls else None
    usage = reply.usage()
    reason = finish_reason(reply.done_reason, bool(calls))
    return answer.chat_completion(reply.model or model, content, reason, usage, calls), reply


class _Lines:
    """NDJSON framing: complete lines out as they arrive, a partial one kept for the next chunk."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def split(self, chunk: bytes) -> list[bytes]:
        buf = self._tail + chunk if self._tail else chunk
        end = buf.rfind(b"\n") + 1
        self._tail = buf[end:]
        return [line for line in buf[:end].split(b"\n") if line.strip()] if end else []

    def rest(self) -> list[bytes]:
        tail, self._tail = self._tail, b""
        return [tail] if tail.strip() else []


class ChatStream:
    """An `/api/chat` NDJSON stream as OpenAI's SSE chunks, line by line as the lines arrive."""

    __slots__ = ("_ended", "_lines", "_scrub", "_texts", "_tools", "_writer", "error", "model", "usage")

    def __init__(self, model: str, include_usage: bool, scrub: Callable[[str], str]) -> None:
        self._writer = ChunkWriter(model, include_usage)
        self._lines = _Lines()
        self._scrub = scrub
        self._texts: list[str] = []
        self._tools = 0
        self._ended = False  # the final line, or an error, was relayed: anything after is ignored
        self.usage: Usage | None = None
        self.error: TollgateError | None = None
        self.model: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._line(line) for line in self._lines.split(chunk))

    def finish(self) -> bytes:
        out = b"".join(self._line(line) for line in self._lines.rest())
        if not self._ended:
            self._ended = True
            out += self._fail("the upstream's stream ended before its final line")
        return out

    def _fail(self, message: str) -> bytes:
        self.error = UpstreamStatus(502, message)
        return sse.event(self.error.body(), "error")

    def _line(self, line: bytes) -> bytes:
        if self._ended:
            return b""
        try:
            part = decode(line)
        except (msgspec.DecodeError, RecursionError):
            self._ended = True
            return self._fail("the upstream sent a stream line that is not JSON")
        if part.error is not None:
            self._ended = True
            return self._fail(self._scrub(f"the upstream failed: {part.error}"))
        self.model = part.model or self.model
        out = self._message(part.message) if part.message else b""
        if part.done:
            self._ended = True
            self.usage = part.usage()
            out += self._writer.end(finish_reason(part.done_reason, self._tools > 0), self.usage)
        return out

    def _message(self, message: _Message) -> bytes:
        out = b""
        if message.content:
            self._texts.append(message.content)
            out += self._writer.text(message.content)
        for call in tool_calls(message):  # Ollama sends each call whole, in one line
            function = call["function"]
            self._texts += (function["name"], function["arguments"])
            out += self._writer.tool_call(self._tools, call["id"], function["name"], function["arguments"])
            self._tools += 1
        return out

    def completion_text(self) -> str:
        return "".join(self._texts)


class NativeStream:
    """A native NDJSON stream (`/proxy/`) passed through untouched; usage read from its final line."""

    __slots__ = ("_lines", "_seen", "error", "model", "usage")

    def __init__(self) -> None:
        self._lines = _Lines()
        self._seen: list[bytes] = []  # what was relayed, decoded only if tiktoken has to count it
        self.usage: Usage | None = None
        self.error: TollgateError | None = None
        self.model: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        self._scan(self._lines.split(chunk))
        return chunk

    def finish(self) -> bytes:
        self._scan(self._lines.rest())
        return b""

    def _scan(self, lines: list[bytes]) -> None:
        for line in lines:
            self._seen.append(line)
            if _FINAL_MARKS[0] in line or _FINAL_MARKS[1] in line:
                try:
                    final = decode(line)
                except (msgspec.DecodeError, RecursionError):
                    continue
                self.usage = final.usage() or self.usage
                self.model = final.model or self.model

    def completion_text(self) -> str:
        parts: list[str] = []
        for line in self._seen:
            try:
                part = decode(line)
            except (msgspec.DecodeError, RecursionError):
                continue
            parts.append(part.message.content if part.message else part.response or "")
        return "".join(parts)
