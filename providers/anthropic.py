"""Anthropic: OpenAI chat requests translated to the Messages API and back; `/proxy/` passed through.

The translation itself (`providers.anthropic_messages`, `providers.anthropic_stream`) knows nothing of
the transport, so Vertex's Anthropic publisher reuses it. Here: the URLs, the `x-api-key` and
`anthropic-version` headers, errors, the model list, and usage read from native answers.

`api_base` is `https://api.anthropic.com` (a trailing `/v1` is tolerated: it is dropped, since the paths
here and the `/proxy/` paths of Anthropic's SDK start with `/v1/`). Anthropic has no embeddings API: an
embeddings call is a 400 naming the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp
import msgspec
import orjson

from gateway.errors import InvalidRequest, TollgateError, UpstreamStatus, UpstreamUnavailable
from providers.answer import model_list
from providers.anthropic_messages import asks_json_object, from_anthropic, message_decoder, to_anthropic
from providers.anthropic_stream import AnthropicStream, NativeStream
from providers.base import Call, Operation, Reply, UpstreamRequest
from providers.chat import parse_chat
from providers.failures import common_failure, kept_headers, scrubber
from sync.model import Llm

DEFAULT_BASE = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
# From this API version on, temperature, top_p and top_k are refused (400), even at their defaults.
NO_SAMPLING_SINCE = "2026-10-21"
CONNECT_TIMEOUT_S = 10.0
MODEL_PAGE = 1000  # the largest page the models endpoint gives: one request lists them all
_CONTEXT_LENGTH = "prompt is too long"


class _ErrorDetail(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | None = None


class _ModelInfo(msgspec.Struct):
    id: str
    created_at: str | None = None


class _ModelList(msgspec.Struct):
    data: list[_ModelInfo] = []


class _Named(msgspec.Struct):
    model: str | None = None


_error_body = msgspec.json.Decoder(_ErrorBody)
_model_list = msgspec.json.Decoder(_ModelList)
_named = msgspec.json.Decoder(_Named)


class Anthropic:
    vendor = "anthropic"

    def __init__(self, llm: Llm, api_key: str | None) -> None:
        self.slug = llm.slug
        self._base = (llm.api_base or DEFAULT_BASE).rstrip("/").removesuffix("/v1")
        self._version = llm.anthropic_version or DEFAULT_VERSION
        self._sampling = self._version < NO_SAMPLING_SINCE  # versions are ISO dates: they sort as text
        self._messages_url = self._base + "/v1/messages"
        self._models_url = f"{self._base}/v1/models?limit={MODEL_PAGE}"
        self._auth: dict[str, str] = {"x-api-key": api_key} if api_key else {}
        self._headers = {"anthropic-version": self._version, **self._auth}
        self._json_headers = {"content-type": "application/json", **self._headers}
        self._scrub = scrubber(api_key)  # the credential never reaches a client in an error
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=llm.timeout_s
        )

    async def request(self, call: Call) -> UpstreamRequest:
        if call.op is Operation.CHAT:
            body = to_anthropic(parse_chat(call.body), call.model, call.stream, sampling=self._sampling)
            return UpstreamRequest("POST", self._messages_url, self._json_headers, orjson.dumps(body))
        if call.op is Operation.PROXY:
            url = f"{self._base}/{call.path}" + (f"?{call.query}" if call.query else "")
            # The client's SDK names the API version it speaks; the LLM's version is the fallback.
            headers = {"anthropic-version": self._version, **call.headers, **self._auth}
            return UpstreamRequest(call.method, url, headers, call.body or None)
        if call.op is Operation.MODELS:
            return UpstreamRequest("GET", self._models_url, self._headers, None)
        raise InvalidRequest(f"LLM '{self.slug}' is Anthropic, which has no embeddings API")

    def response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> Reply:
        try:
            message = message_decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):
            if call.op is Operation.PROXY:
                return Reply(body)  # not a message (e.g. a file or a batch): nothing to account
            raise UpstreamUnavailable(
                f"LLM '{self.slug}': the upstream's answer is not an Anthropic message"
            ) from None
        usage = message.usage.normalized() if message.usage else None
        if call.op is Operation.PROXY:
            return Reply(body, usage, message.model)
        answer, usage = from_anthropic(message, call.model, asks_json_object(call.body))
        return Reply(answer, usage, message.model)

    def stream(self, call: Call) -> AnthropicStream | NativeStream:
        if call.op is Operation.PROXY:
            return NativeStream()
        return AnthropicStream(call.model, call.include_usage, json_tool=asks_json_object(call.body))

    def error(self, call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> TollgateError:
        shared = common_failure(call, self.slug, status, body, headers, self._scrub)
        if shared is not None:
            return shared
        kept = kept_headers(headers) or None
        try:
            error = _error_body.decode(body).error or _ErrorDetail()
        except (msgspec.DecodeError, RecursionError):
            error = _ErrorDetail()
        message = self._scrub(error.message or f"the upstream answered HTTP {status}")
        # OpenAI's code for the context-window error, so that clients and routes recognise it.
        code = "context_length_exceeded" if _CONTEXT_LENGTH in message else error.type
        return UpstreamStatus(status, message, type=error.type, code=code, headers=kept)

    def models(self, body: bytes) -> list[dict[str, Any]]:
        try:
            listed = _model_list.decode(body).data
        except (msgspec.DecodeError, RecursionError):
            raise UpstreamUnavailable(
                f"LLM '{self.slug}': the upstream's model list is not Anthropic's"
            ) from None
        return [model_list([m.id], "anthropic", _epoch(m.created_at))[0] for m in listed]

    def proxy_model(self, path: str, body: bytes) -> str:
        if not body:
            return ""
        try:
            return _named.decode(body).model or ""
        except (msgspec.DecodeError, RecursionError):
            return ""


def _epoch(created_at: str | None) -> int:
    if not created_at:
        return 0
    try:
        return int(datetime.fromisoformat(created_at).timestamp())
    except ValueError:
        return 0
