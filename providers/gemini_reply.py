"""Gemini `GenerateContentResponse` → OpenAI: complete answers, streams translated event by event, the
usage of native answers (for `/proxy/`), and Google's error shape.

Shared by the Gemini API and Vertex AI, whose answers and errors have one shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import orjson

from gateway.errors import TollgateError, UpstreamStatus, retry_after
from providers import sse
from providers.answer import ChunkWriter, FinishReason, chat_completion, tool_call_json
from providers.base import Reply, Usage
from providers.failures import credential_refused, kept_headers, native_error
from providers.gemini_request import call_id

_CONTENT_FILTER = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
# Gemini: "The input token count (N) exceeds the maximum number of tokens allowed (M)."; Claude on Vertex:
# "prompt is too long: N tokens > M maximum".
_CONTEXT_LENGTH = ("input token count", "prompt is too long")


class FunctionCall(msgspec.Struct):
    name: str = ""
    args: dict[str, Any] | None = None


class Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False  # a thinking summary: not part of the answer
    function_call: FunctionCall | None = None
    thought_signature: str | None = None


class Content(msgspec.Struct):
    parts: list[Part] = []


class Candidate(msgspec.Struct, rename="camel"):
    content: Content | None = None
    finish_reason: str | None = None


class Feedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    cached_content_token_count: int = 0
    tool_use_prompt_token_count: int = 0

    def normalized(self) -> Usage:
        # The prompt count includes the cached part; tool-use prompts (e.g. search results) and thinking
        # are billed as input and output respectively.
        return Usage(
            input_tokens=self.prompt_token_count + self.tool_use_prompt_token_count,
            output_tokens=self.candidates_token_count + self.thoughts_token_count,
            cache_read_tokens=self.cached_content_token_count,
        )


class Status(msgspec.Struct):
    code: int = 0
    message: str = ""
    status: str = ""
    type: str = ""  # Claude on Vertex answers model errors in Anthropic's shape: {"error": {type, message}}
    details: list[dict[str, Any]] = []


class Response(msgspec.Struct, rename="camel"):
    candidates: list[Candidate] = []
    prompt_feedback: Feedback | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    error: Status | None = None


class _ErrorBody(msgspec.Struct):
    error: Status | None = None


_response = msgspec.json.Decoder(Response)
_responses = msgspec.json.Decoder(list[Response])
_error_body = msgspec.json.Decoder(_ErrorBody | list[_ErrorBody])


def finish_reason(reason: str | None, called: bool) -> FinishReason:
    if reason in _CONTENT_FILTER:
        return "content_filter"
    if reason == "MAX_TOKENS":
        return "length"
    return "tool_calls" if called else "stop"


def _message(candidate: Candidate) -> tuple[str, list[dict[str, Any]]]:
    """(text, OpenAI tool calls) of one candidate."""
    parts = candidate.content.parts if candidate.content else []
    text = "".join(p.text for p in parts if p.text is not None and not p.thought)
    calls = [
        tool_call_json(
            call_id(p.thought_signature),
            p.function_call.name,
            orjson.dumps(p.function_call.args or {}).decode(),
        )
        for p in parts
        if p.function_call is not None
    ]
    return text, calls


def chat_reply(body: bytes, model: str) -> Reply:
    """The OpenAI `chat.completion` for a Gemini answer; one choice per candidate."""
    answer = _response.decode(body)
    usage = answer.usage_metadata.normalized() if answer.usage_metadata else None
    name = answer.model_version or model
    if not answer.candidates:  # the prompt itself was blocked (promptFeedback.blockReason)
        return Reply(chat_completion(name, "", "content_filter", usage), usage, answer.model_version)
    choices: list[tuple[str | None, FinishReason, list[dict[str, Any]]]] = []
    for candidate in answer.candidates:
        said, calls = _message(candidate)
        reason = finish_reason(candidate.finish_reason, bool(calls))
        choices.append((said if said or not calls else None, reason, calls))
    out = chat_completion(name, *choices[0][:2], usage, choices[0][2])
    if len(choices) > 1:  # `n` > 1: the shared writer has one choice; the others are added to it
        whole = orjson.loads(out)
        template = whole["choices"][0]
        for index, (text, reason, calls) in enumerate(choices[1:], 1):
            message: dict[str, Any] = {**template["message"], "content": text}
            message.pop("tool_calls", None)
            if calls:
                message["tool_calls"] = calls
            whole["choices"].append({**template, "index": index, "message": message, "finish_reason": reason})
        out = orjson.dumps(whole)
    return Reply(out, usage, answer.model_version)


def native_usage(body: bytes) -> tuple[Usage | None, str | None]:
    """Usage and model of a native answer: one response, or the JSON array that `streamGenerateContent`
    sends without `alt=sse` (the last element with usage counts, as each carries the running total)."""
    try:
        answers = _responses.decode(body) if body.lstrip()[:1] == b"[" else [_response.decode(body)]
    except (msgspec.DecodeError, RecursionError):
        return None, None
    usage, model = None, None
    for answer in answers:
        if answer.usage_metadata is not None:
            usage = answer.usage_metadata.normalized()
        model = answer.model_version or model
    return usage, model


def upstream_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    slug: str,
    scrub: Callable[[str], str],
    native: bool,
) -> UpstreamStatus:
    """Google's `{"error": {code, message, status, details}}` as the gateway's error; a 429's RetryInfo
    becomes Retry-After when no header says it."""
    try:
        decoded = _error_body.decode(body)
    except (msgspec.DecodeError, RecursionError):
        decoded = _ErrorBody()
    if isinstance(decoded, list):
        decoded = decoded[0] if decoded else _ErrorBody()
    error = decoded.error or Status()
    kept = kept_headers(headers, _retry_delay(error))
    if status in (401, 403) or _is_key_error(error):
        return credential_refused(slug, status, kept)
    if native:
        return native_error(status, body, headers, kept, scrub)
    message = scrub(error.message or f"the upstream answered HTTP {status}")
    code = error.status or error.type or None
    if status == 400 and any(phrase in message for phrase in _CONTEXT_LENGTH):
        code = "context_length_exceeded"  # OpenAI's name, so route fallbacks see one code
    return UpstreamStatus(status, message, type=_ERROR_TYPES.get(status), code=code, headers=kept or None)


def _retry_delay(error: Status) -> str | None:
    for detail in error.details:
        delay = detail.get("retryDelay")
        if detail.get("@type") == _RETRY_INFO and isinstance(delay, str) and delay.endswith("s"):
            return retry_after(delay[:-1])
    return None


def _is_key_error(error: Status) -> bool:
    """The Gemini API answers a wrong key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID."""
    return any(detail.get("reason") == "API_KEY_INVALID" for detail in error.details)


class GeminiStream:
    """Translates Gemini's SSE (`alt=sse`) into OpenAI chunks, each event as it arrives."""

    __slots__ = ("_calls", "_ended", "_tail", "_text", "_writer", "error", "model", "usage")

    def __init__(self, model: str, include_usage: bool) -> None:
        self._writer = ChunkWriter(model, include_usage)
        self._tail = b""
        self._text: list[str] = []
        self._calls = 0
        self._ended = False
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
        out = b"".join(self._event(sse.data(event)) for event in sse.split(block))
        if not self._ended:  # the upstream stopped without a finish reason
            self._ended = True
            out += self._writer.end("tool_calls" if self._calls else "stop", self.usage)
        return out

    def completion_text(self) -> str:
        return "".join(self._text)

    def _event(self, payload: bytes) -> bytes:
        if not payload or self._ended:
            return b""
        try:
            answer = _response.decode(payload)
        except (msgspec.DecodeError, RecursionError):
            return b""
        if answer.error is not None:
            self._ended = True
            self.error = UpstreamStatus(
                answer.error.code or 500, answer.error.message, code=answer.error.status
            )
            return sse.event(self.error.body(), "error")
        if answer.model_version and self.model is None:
            self.model = self._writer.model = answer.model_version
        if answer.usage_metadata is not None:
            self.usage = answer.usage_metadata.normalized()
        if not answer.candidates:
            blocked = answer.prompt_feedback is not None and answer.prompt_feedback.block_reason
            return self._end("content_filter") if blocked else b""
        candidate = answer.candidates[0]
        out = [self._parts(candidate)]
        if candidate.finish_reason:
            out.append(self._end(finish_reason(candidate.finish_reason, self._calls > 0)))
        return b"".join(out)

    def _parts(self, candidate: Candidate) -> bytes:
        out = []
        for part in candidate.content.parts if candidate.content else ():
            if part.function_call is not None:
                arguments = orjson.dumps(part.function_call.args or {}).decode()
                name = part.function_call.name
                id = call_id(part.thought_signature)
                out.append(self._writer.tool_call(self._calls, id, name, arguments))
                self._text.append(name + arguments)
                self._calls += 1
            elif part.text and not part.thought:
                out.append(self._writer.text(part.text))
                self._text.append(part.text)
        return b"".join(out)

    def _end(self, reason: FinishReason) -> bytes:
        self._ended = True
        return self._writer.end(reason, self.usage)


class NativeStream:
    """`/proxy/`: the vendor's SSE relayed untouched; usage and model read from the events that carry it
    (each carries the running total, so the last one counts)."""

    __slots__ = ("_tail", "_text", "error", "model", "usage")

    def __init__(self) -> None:
        self._tail = b""
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
        self._scan(block)
        return block

    def finish(self) -> bytes:
        block, self._tail = self._tail, b""
        self._scan(block)
        return block

    def completion_text(self) -> str:
        return "".join(self._text)

    def _scan(self, block: bytes) -> None:
        for event in sse.split(block):
            try:
                answer = _response.decode(sse.data(event))
            except (msgspec.DecodeError, RecursionError):
                continue
            if answer.usage_metadata is not None:
                self.usage = answer.usage_metadata.normalized()
            self.model = answer.model_version or self.model
            for candidate in answer.candidates[:1]:
                self._text.append(_message(candidate)[0])
