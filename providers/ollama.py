"""Ollama's native API (`/api/chat`, `/api/embed`, `/api/tags`), translated to and from OpenAI's.

A local Ollama needs no credential; one behind an authenticating proxy (or ollama.com) takes a Bearer
token, sent when the LLM has an `api_key`. Request translation lives in `ollama_request`, answers and
NDJSON streams in `ollama_answer`; `/proxy/` passes native bodies and streams through untouched and only
reads their usage (Ollama's OpenAI-compatible `/v1/` answers are read as OpenAI's).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp
import msgspec

from gateway.errors import TollgateError, UpstreamStatus, UpstreamUnavailable
from providers import answer
from providers.base import Call, Operation, Reply, StreamRelay, UpstreamRequest, Usage
from providers.chat import parse_chat, parse_embeddings
from providers.failures import common_failure, kept_headers, scrubber
from providers.ollama_answer import ChatStream, NativeStream, chat_completion, decode
from providers.ollama_request import chat_body, embed_body
from providers.openai import OpenAI
from sync.model import Llm

DEFAULT_BASE = "http://127.0.0.1:11434"
CONNECT_TIMEOUT_S = 10.0
# Ollama's own OpenAI-compatible /v1/models names this owner for local models.
OWNER = "library"


class _Embedded(msgspec.Struct):
    embeddings: list[list[float]] = []
    prompt_eval_count: int | None = None


class _Listed(msgspec.Struct):
    name: str | None = None
    model: str | None = None
    modified_at: str | None = None


class _Tags(msgspec.Struct):
    models: list[_Listed]


class _Named(msgspec.Struct):
    model: str | None = None
    name: str | None = None  # older endpoints (/api/show, /api/pull) name the model here


class _Error(msgspec.Struct):
    error: str | None = None


class _EncodingView(msgspec.Struct):
    encoding_format: str | None = None


_embedded = msgspec.json.Decoder(_Embedded)
_tags = msgspec.json.Decoder(_Tags)
_named = msgspec.json.Decoder(_Named)
_error = msgspec.json.Decoder(_Error)
_encoding = msgspec.json.Decoder(_EncodingView)


class Ollama:
    vendor = "ollama"

    def __init__(self, llm: Llm, api_key: str | None) -> None:
        self.slug = llm.slug
        self._base = (llm.api_base or DEFAULT_BASE).rstrip("/")
        self._urls = {
            Operation.CHAT: self._base + "/api/chat",
            Operation.EMBEDDINGS: self._base + "/api/embed",
            Operation.MODELS: self._base + "/api/tags",
        }
        self._auth: dict[str, str] = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._json_headers = {"content-type": "application/json", **self._auth}
        self._scrub = scrubber(api_key)  # the credential never reaches a client in an error
        # Ollama also serves OpenAI's API under /v1/: native clients of that one get OpenAI's accounting.
        self._openai = OpenAI(llm, api_key)
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=llm.timeout_s
        )

    async def request(self, call: Call) -> UpstreamRequest:
        if call.op is Operation.PROXY:
            url = f"{self._base}/{call.path}" + (f"?{call.query}" if call.query else "")
            headers = {**call.headers, **self._auth} if call.headers else dict(self._auth)
            return UpstreamRequest(call.method, url, headers, call.body or None)
        if call.op is Operation.MODELS:
            return UpstreamRequest("GET", self._urls[call.op], self._auth, None)
        if call.op is Operation.CHAT:
            body = chat_body(parse_chat(call.body), call.model, call.stream)
        else:
            body = embed_body(parse_embeddings(call.body), call.model)
        return UpstreamRequest("POST", self._urls[call.op], self._json_headers, body)

    def response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> Reply:
        if call.op is Operation.PROXY:
            return self._openai.response(call, body, headers) if _openai_path(call) else self._native(body)
        if call.op is Operation.EMBEDDINGS:
            return self._embeddings(call, body)
        completion, reply = chat_completion(self.slug, call.model, body)
        return Reply(completion, reply.usage(), reply.model)

    def _native(self, body: bytes) -> Reply:
        try:
            reply = decode(body)
        except (msgspec.DecodeError, RecursionError):
            return Reply(body)
        return Reply(body, reply.usage(partial=True), reply.model)

    def _embeddings(self, call: Call, body: bytes) -> Reply:
        try:
            embedded = _embedded.decode(body)
            encoding_format = _encoding.decode(call.body).encoding_format or "float"
        except (msgspec.DecodeError, RecursionError):
            raise UpstreamUnavailable(
                f"LLM '{self.slug}': the upstream's embeddings are not Ollama's"
            ) from None
        count = embedded.prompt_eval_count
        # Without a count the client sees 0 and the gateway books its own tiktoken count.
        usage = Usage(input_tokens=count) if count is not None else None
        payload = answer.embeddings(call.model, embedded.embeddings, usage or Usage(), encoding_format)
        return Reply(payload, usage, call.model)

    def stream(self, call: Call) -> StreamRelay:
        if call.op is Operation.PROXY:
            return self._openai.stream(call) if _openai_path(call) else NativeStream()
        return ChatStream(call.model, call.include_usage, self._scrub)

    def error(self, call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> TollgateError:
        shared = common_failure(call, self.slug, status, body, headers, self._scrub)
        if shared is not None:
            return shared
        kept = kept_headers(headers) or None
        try:
            reason = _error.decode(body).error
        except (msgspec.DecodeError, RecursionError):
            reason = None  # e.g. gin's plain-text "404 page not found"
        message = self._scrub(reason or f"the upstream answered HTTP {status}")
        code = "model_not_found" if status == 404 and reason and reason.startswith("model ") else None
        return UpstreamStatus(status, message, code=code, headers=kept)

    def models(self, body: bytes) -> list[dict[str, Any]]:
        try:
            listed = _tags.decode(body).models
        except (msgspec.DecodeError, RecursionError):
            raise UpstreamUnavailable(
                f"LLM '{self.slug}': the upstream's model list is not Ollama's"
            ) from None
        models = []
        for model in listed:
            name = model.name or model.model
            if name:
                models += answer.model_list([name], OWNER, _unix(model.modified_at))
        return models

    def proxy_model(self, path: str, body: bytes) -> str:
        if not body:
            return ""
        try:
            named = _named.decode(body)
        except (msgspec.DecodeError, RecursionError):
            return ""
        return named.model or named.name or ""


def _openai_path(call: Call) -> bool:
    return call.path.startswith("v1/")


def _unix(timestamp: str | None) -> int:
    """Seconds of Ollama's RFC 3339 `modified_at` (nanosecond fractions included); 0 if unreadable."""
    if not timestamp:
        return 0
    head, dot, rest = timestamp.partition(".")
    if dot:  # Python reads at most microseconds: cut the fraction, keep the offset
        digits = len(rest) - len(rest.lstrip("0123456789"))
        timestamp = head + "." + rest[: min(digits, 6)] + rest[digits:]
    try:
        return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0
