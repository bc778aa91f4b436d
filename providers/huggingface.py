"""Hugging Face: the Inference Providers router (OpenAI-compatible), or a TGI / TEI server of one's own.

Chat goes to `{api_base}/chat/completions` in OpenAI's format, so the OpenAI adapter does the work: the
body passes through (model ids like `meta-llama/Llama-3.1-8B-Instruct`, or with a provider suffix such
as `:novita`), usage is read back, streams are relayed. What differs is handled here:

- errors: the router and Hugging Face's own servers often answer `{"error": "message"}` (a string, with
  TGI/TEI's `error_type` beside it) rather than OpenAI's object; both become the OpenAI error shape;
- embeddings: the router has no `/v1/embeddings`, so when `api_base` is the router
  (`router.huggingface.co`), embeddings go to its HF Inference feature-extraction pipeline
  (`/hf-inference/models/{model}/pipeline/feature-extraction`, `{"inputs": [...]}` → one vector per
  input) and are answered in OpenAI's format with tiktoken's token count (the pipeline reports none).
  Any other `api_base` is taken as an OpenAI-compatible server, e.g. Text Embeddings Inference's
  `http://host:8080/v1`, and gets the request unchanged at `{api_base}/embeddings`.

`/proxy/` paths are relative to `api_base`, as for OpenAI (the openai SDK's `base_url`).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlsplit

import msgspec
import orjson

from gateway.errors import InvalidRequest, TollgateError, UpstreamStatus, UpstreamUnavailable
from providers import tokens
from providers.answer import embeddings
from providers.base import Call, Operation, Reply, UpstreamRequest, Usage
from providers.chat import parse_embeddings
from providers.failures import kept_headers
from providers.openai import OpenAI
from sync.model import Llm

DEFAULT_BASE = "https://router.huggingface.co/v1"
ROUTER_HOST = "router.huggingface.co"
_CODES = {429: "rate_limit_exceeded"}


class _StringError(msgspec.Struct):
    error: str
    error_type: str | None = None


_string_error = msgspec.json.Decoder(_StringError)
_vectors = msgspec.json.Decoder(list[list[float]])


class HuggingFace(OpenAI):
    vendor = "huggingface"

    def __init__(self, llm: Llm, api_key: str | None) -> None:
        super().__init__(msgspec.structs.replace(llm, api_base=llm.api_base or DEFAULT_BASE), api_key)
        parts = urlsplit(self._base)
        self._pipelines = (
            f"{parts.scheme}://{parts.netloc}/hf-inference/models/" if parts.hostname == ROUTER_HOST else None
        )

    async def request(self, call: Call) -> UpstreamRequest:
        if call.op is not Operation.EMBEDDINGS or self._pipelines is None:
            return await super().request(call)
        request = parse_embeddings(call.body)
        if request.dimensions is not None:
            raise InvalidRequest(
                f"LLM '{self.slug}': the Hugging Face router's feature-extraction pipeline has no "
                "`dimensions`; leave it out (the model's own size is returned)"
            )
        model = call.model.partition(":")[0]  # a provider suffix (":hf-inference") is not part of the path
        url = f"{self._pipelines}{quote(model, safe='/')}/pipeline/feature-extraction"
        return UpstreamRequest("POST", url, self._json_headers, orjson.dumps({"inputs": request.texts()}))

    def response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> Reply:
        if call.op is not Operation.EMBEDDINGS or self._pipelines is None:
            return super().response(call, body, headers)
        try:
            vectors = _vectors.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            raise UpstreamUnavailable(
                f"LLM '{self.slug}': the feature-extraction answer is not one vector per input "
                "(is the model a sentence-embedding model?)"
            ) from None
        request = parse_embeddings(call.body)
        usage = Usage(input_tokens=sum(tokens.count_text(text) for text in request.texts()))
        return Reply(embeddings(call.model, vectors, usage, request.encoding_format), usage, call.model)

    def error(self, call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> TollgateError:
        if status in (401, 403) or call.op is Operation.PROXY:
            return super().error(call, status, body, headers)
        try:
            error = _string_error.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return super().error(call, status, body, headers)  # OpenAI's shape, or no JSON at all
        kept = kept_headers(headers) or None
        return UpstreamStatus(status, self._scrub(error.error), code=_CODES.get(status), headers=kept)
