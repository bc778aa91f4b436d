"""Google's Gemini API (`google_ai`): OpenAI chat and embeddings translated to `generateContent`,
`streamGenerateContent?alt=sse` and `batchEmbedContents`; `/proxy/` passes the native API through and
reads its usage. The translation itself lives in `gemini_request` / `gemini_reply`, shared with Vertex AI,
whose adapter (`providers/vertex.py`) extends this one with its own URLs and OAuth tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import msgspec
import orjson

from gateway.errors import InvalidRequest, TollgateError, UpstreamUnavailable
from providers.answer import embeddings, model_list
from providers.base import Call, Operation, Reply, StreamRelay, UpstreamRequest, Usage
from providers.chat import EmbeddingsRequest, parse_chat, parse_embeddings
from providers.failures import scrubber
from providers.gemini_reply import (
    GeminiStream,
    NativeStream,
    UsageMetadata,
    chat_reply,
    native_usage,
    upstream_error,
)
from providers.gemini_request import JsonObject, batch_embed_body, chat_body
from sync.model import Llm

DEFAULT_BASE = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"  # the Gemini API's features (system instructions, JSON schemas) land here first
CONNECT_TIMEOUT_S = 10.0
_MODEL_IN_PATH = re.compile(r"(?:^|/)models/([^/:?]+)")


class _Embedding(msgspec.Struct):
    values: list[float] = []


class _Embeddings(msgspec.Struct, rename="camel"):
    embeddings: list[_Embedding] = []
    usage_metadata: UsageMetadata | None = None  # newer models report it; older ones report nothing


class _Model(msgspec.Struct):
    name: str = ""


class _ModelList(msgspec.Struct):
    models: list[_Model] = []


_embeddings = msgspec.json.Decoder(_Embeddings)
_model_list = msgspec.json.Decoder(_ModelList)


class GoogleAI:
    vendor = "google_ai"

    def __init__(self, llm: Llm, api_key: str | None) -> None:
        self.slug = llm.slug
        self._base = unversioned(llm.api_base or DEFAULT_BASE)
        self._scrub = scrubber(api_key)  # the credential never reaches a client in an error
        self._auth: dict[str, str] = {"x-goog-api-key": api_key} if api_key else {}
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=llm.timeout_s
        )

    # --- what differs between the Gemini API and Vertex AI (overridden in providers/vertex.py) ----------

    async def _headers(self) -> dict[str, str]:
        return self._auth

    def _models_url(self) -> str:
        return f"{self._base}/{API_VERSION}/models?pageSize=1000"

    def _chat_url(self, model: str) -> str:
        return f"{self._base}/{API_VERSION}/models/{quote(model, safe='@')}"

    def _embeddings_request(self, model: str, request: EmbeddingsRequest) -> tuple[str, JsonObject]:
        url = f"{self._base}/{API_VERSION}/models/{quote(model, safe='@')}:batchEmbedContents"
        return url, batch_embed_body(request, model)

    def _embeddings_answer(self, body: bytes) -> tuple[list[list[float]], Usage | None]:
        answer = _embeddings.decode(body)
        usage = answer.usage_metadata
        # No usage: the gateway counts the input with tiktoken, as for any upstream that reports none.
        return [e.values for e in answer.embeddings], Usage(usage.prompt_token_count) if usage else None

    def _model_ids(self, body: bytes) -> list[str]:
        return [m.name.removeprefix("models/") for m in _model_list.decode(body).models if m.name]

    # --- the Provider protocol ----------------------------------------------------------------------------

    async def request(self, call: Call) -> UpstreamRequest:
        headers = await self._headers()
        if call.op is Operation.PROXY:
            url = f"{self._base}/{call.path}" + (f"?{call.query}" if call.query else "")
            forwarded = {**call.headers, **headers} if call.headers else dict(headers)
            return UpstreamRequest(call.method, url, forwarded, call.body or None)
        if call.op is Operation.MODELS:
            return UpstreamRequest("GET", self._models_url(), headers, None)
        json_headers = {"content-type": "application/json", **headers}
        model = call.model.removeprefix("models/")
        if call.op is Operation.EMBEDDINGS:
            url, body = self._embeddings_request(model, parse_embeddings(call.body))
            return UpstreamRequest("POST", url, json_headers, orjson.dumps(body))
        url, payload = self._chat_request(model, call)
        return UpstreamRequest("POST", url, json_headers, payload)

    def _chat_request(self, model: str, call: Call) -> tuple[str, bytes]:
        chat = parse_chat(call.body)
        if call.stream and chat.n is not None and chat.n > 1:
            raise InvalidRequest("n > 1 cannot be streamed from Gemini through the gateway; use stream=false")
        method = ":streamGenerateContent?alt=sse" if call.stream else ":generateContent"
        return self._chat_url(model) + method, orjson.dumps(chat_body(chat))

    def response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> Reply:
        if call.op is Operation.PROXY:
            usage, model = native_usage(body)
            return Reply(body, usage, model)
        try:
            if call.op is Operation.EMBEDDINGS:
                vectors, usage = self._embeddings_answer(body)
                format = parse_embeddings(call.body).encoding_format
                return Reply(embeddings(call.model, vectors, usage or Usage(), format), usage)
            return chat_reply(body, call.model)
        except (msgspec.DecodeError, RecursionError):
            raise UpstreamUnavailable(f"LLM '{self.slug}': the upstream's answer is not Gemini's") from None

    def stream(self, call: Call) -> StreamRelay:
        if call.op is Operation.PROXY:
            return NativeStream()
        return GeminiStream(call.model, call.include_usage)

    def error(self, call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> TollgateError:
        native = call.op is Operation.PROXY
        return upstream_error(status, body, headers, slug=self.slug, scrub=self._scrub, native=native)

    def models(self, body: bytes) -> list[dict[str, Any]]:
        try:
            ids = self._model_ids(body)
        except (msgspec.DecodeError, RecursionError):
            message = f"LLM '{self.slug}': the upstream's model list is not Google's"
            raise UpstreamUnavailable(message) from None
        return model_list(ids, "google")

    def proxy_model(self, path: str, body: bytes) -> str:
        """The model named in a native path: `v1beta/models/{model}:generateContent`, or Vertex's
        `…/publishers/google/models/{model}:…`."""
        match = _MODEL_IN_PATH.search(unquote(path))
        return match.group(1) if match else ""


def unversioned(base: str) -> str:
    """The base URL without an API version: the paths here, and the native SDKs' /proxy/ paths, carry it."""
    base = base.rstrip("/")
    for version in ("/v1beta1", "/v1beta", "/v1"):
        base = base.removesuffix(version)
    return base
