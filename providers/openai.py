"""OpenAI (and the OpenAI wire format): requests pass through byte for byte, usage is read on the way back.

The only edits to a client's body are the model (when `default_model` filled it) and
`stream_options.include_usage` on streams, so that the usage comes from the upstream itself; the extra
usage chunk is taken out of the client's stream again when the client did not ask for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec

from gateway.errors import TollgateError, UpstreamStatus, UpstreamUnavailable
from providers import sse
from providers.base import Call, Operation, Reply, UpstreamRequest, Usage
from providers.failures import common_failure, kept_headers, scrubber
from providers.jsonbody import merge_fields, prepend_fields
from sync.model import Llm

DEFAULT_BASE = "https://api.openai.com/v1"
CONNECT_TIMEOUT_S = 10.0
_USAGE_MARKS = (b'"usage":{', b'"usage": {')
_INCLUDE_USAGE = {"stream_options": {"include_usage": True}}


class _Details(msgspec.Struct):
    cached_tokens: int = 0


class _Usage(msgspec.Struct):
    # Chat Completions and Embeddings name them prompt/completion; the Responses API input/output.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    prompt_tokens_details: _Details | None = None
    input_tokens_details: _Details | None = None

    def normalized(self) -> Usage:
        details = self.prompt_tokens_details or self.input_tokens_details
        return Usage(
            input_tokens=self.prompt_tokens or self.input_tokens or 0,
            output_tokens=self.completion_tokens or self.output_tokens or 0,
            cache_read_tokens=details.cached_tokens if details else 0,
        )


class _Answer(msgspec.Struct):
    model: str | None = None
    usage: _Usage | None = None


class _StreamEvent(msgspec.Struct):
    model: str | None = None
    usage: _Usage | None = None
    choices: list[msgspec.Raw] | None = None
    response: _Answer | None = None  # Responses API: `response.completed` carries the usage


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []


class _ModelList(msgspec.Struct):
    data: list[dict[str, Any]] = []


class _Named(msgspec.Struct):
    model: str | None = None


class _Error(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None
    param: str | None = None


class _ErrorBody(msgspec.Struct):
    error: _Error | None = None


_answer = msgspec.json.Decoder(_Answer)
_stream_event = msgspec.json.Decoder(_StreamEvent)
_chunk = msgspec.json.Decoder(_Chunk)
_model_list = msgspec.json.Decoder(_ModelList)
_named = msgspec.json.Decoder(_Named)
_error_body = msgspec.json.Decoder(_ErrorBody)


class OpenAI:
    vendor = "openai"

    def __init__(self, llm: Llm, api_key: str | None) -> None:
        self.slug = llm.slug
        self._base = (llm.api_base or DEFAULT_BASE).rstrip("/")
        self._urls = {
            Operation.CHAT: self._base + "/chat/completions",
            Operation.EMBEDDINGS: self._base + "/embeddings",
            Operation.MODELS: self._base + "/models",
        }
        self._auth: dict[str, str] = {"authorization": f"Bearer {api_key}"} if api_key else {}
        if llm.organization:
            self._auth["openai-organization"] = llm.organization
        self._json_headers = {"content-type": "application/json", **self._auth}
        self._scrub = scrubber(api_key)  # the credential never reaches a client in an error
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=llm.timeout_s
        )

    async def request(self, call: Call) -> UpstreamRequest:
        if call.op is Operation.PROXY:
            return self._proxy_request(call)
        if call.op is Operation.MODELS:
            return UpstreamRequest("GET", self._urls[call.op], self._auth, None)
        body = call.body
        if call.stream and call.op is Operation.CHAT and not call.include_usage:
            if call.has_stream_options:
                body = merge_fields(body, _INCLUDE_USAGE)
            else:
                body = prepend_fields(body, _INCLUDE_USAGE)
        if not call.model_in_body:
            model = {"model": call.model}
            body = merge_fields(body, model) if call.model_key else prepend_fields(body, model)
        return UpstreamRequest("POST", self._urls[call.op], self._json_headers, body)

    def _proxy_request(self, call: Call) -> UpstreamRequest:
        url = f"{self._base}/{call.path}" + (f"?{call.query}" if call.query else "")
        headers = {**call.headers, **self._auth} if call.headers else dict(self._auth)
        return UpstreamRequest(call.method, url, headers, call.body or None)

    def response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> Reply:
        try:
            answer = _answer.decode(body)
        except (msgspec.DecodeError, RecursionError):
            return Reply(body)
        return Reply(body, answer.usage.normalized() if answer.usage else None, answer.model)

    def stream(self, call: Call) -> OpenAIStream:
        return OpenAIStream(drop_usage_chunk=call.op is Operation.CHAT and not call.include_usage)

    def error(self, call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> TollgateError:
        shared = common_failure(call, self.slug, status, body, headers, self._scrub)
        if shared is not None:
            return shared
        kept = kept_headers(headers) or None
        try:
            error = _error_body.decode(body).error or _Error()
        except (msgspec.DecodeError, RecursionError):
            error = _Error()
        message = self._scrub(error.message or f"the upstream answered HTTP {status}")
        code = str(error.code) if error.code is not None else None
        return UpstreamStatus(status, message, type=error.type, code=code, param=error.param, headers=kept)

    def models(self, body: bytes) -> list[dict[str, Any]]:
        try:
            listed = _model_list.decode(body).data
        except (msgspec.DecodeError, RecursionError):
            raise UpstreamUnavailable(
                f"LLM '{self.slug}': the upstream's model list is not OpenAI's"
            ) from None
        return [m for m in listed if isinstance(m.get("id"), str)]

    def proxy_model(self, path: str, body: bytes) -> str:
        if not body:
            return ""
        try:
            return _named.decode(body).model or ""
        except (msgspec.DecodeError, RecursionError):
            return ""


class OpenAIStream:
    """Relays OpenAI SSE as it arrives; complete events go out at once, partial ones wait for their end."""

    __slots__ = ("_blocks", "_drop_usage_chunk", "_tail", "error", "model", "usage")

    def __init__(self, *, drop_usage_chunk: bool) -> None:
        self._drop_usage_chunk = drop_usage_chunk
        self._tail = b""
        self._blocks: list[bytes] = []  # what was relayed, for counting when no usage comes
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
        return self._relay(block)

    def finish(self) -> bytes:
        block, self._tail = self._tail, b""
        return self._relay(block) if block.strip() else b""

    def _relay(self, block: bytes) -> bytes:
        self._blocks.append(block)
        if _USAGE_MARKS[0] not in block and _USAGE_MARKS[1] not in block:
            return block
        out = []
        for event in sse.split(block):
            if not self._take_usage(sse.data(event)):
                out.append(event + b"\n\n")
        return b"".join(out)

    def _take_usage(self, payload: bytes) -> bool:
        """Keep the usage an event carries; True when the event is the usage-only chunk to drop."""
        if payload == sse.DONE:
            return False
        try:
            event = _stream_event.decode(payload)
        except (msgspec.DecodeError, RecursionError):
            return False
        answer = event.response if event.response and event.response.usage else event
        if answer.usage is None:
            return False
        self.usage = answer.usage.normalized()
        self.model = answer.model or self.model
        return self._drop_usage_chunk and not event.choices

    def completion_text(self) -> str:
        parts: list[str] = []
        for block in self._blocks:
            for event in sse.split(block):
                payload = sse.data(event)
                if not payload or payload == sse.DONE:
                    continue
                try:
                    chunk = _chunk.decode(payload)
                except (msgspec.DecodeError, RecursionError):
                    continue
                parts.extend(c.delta.content for c in chunk.choices if c.delta and c.delta.content)
        return "".join(parts)
