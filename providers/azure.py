"""Azure OpenAI: OpenAI's wire format at Azure's URLs, with Azure's key header, API version and errors.

A call goes to the deployment of its model (`deployments[model]`, else a deployment named after the
model) at `{api_base}/openai/deployments/{deployment}/{operation}?api-version={api_version}`, with the key
in `api-key`. Bodies and answers are OpenAI's, so usage, streams and errors go through the OpenAI
adapter; what Azure adds is handled here:

- a prompt its content filter refuses is 400 with code `content_filter` (kept as the error's code); an
  answer it cut ends with finish_reason `content_filter`, which is OpenAI's value too (passed through);
- its streams open with a `prompt_filter_results` chunk without choices: dropped on `/openai/`, whose
  clients expect every chunk but the usage one to carry a choice (`chunk.choices[0]`);
- numeric error codes ("401", "429") become the gateway's codes; `DeploymentNotFound` names the
  deployment the LLM called, since the operator's `deployments` map is the usual culprit;
- `stream_options` only exists from API version 2024-08-01-preview on: with an older `api_version` the
  gateway does not ask for the usage chunk and counts a stream's tokens with tiktoken.

The model list: the configured `deployments` (exactly what this LLM can call) when there are any, else
the resource's models from `GET /openai/models`, callable by the default convention that a deployment is
named after its model. `/proxy/` paths are relative to the resource endpoint, as the AzureOpenAI SDK's
`azure_endpoint` is (`openai/deployments/{deployment}/chat/completions?api-version=...`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

import msgspec

from gateway.errors import TollgateError, UpstreamStatus, UpstreamUnavailable
from providers import sse
from providers.answer import model_list
from providers.base import Call, Operation, UpstreamRequest
from providers.jsonbody import merge_fields, prepend_fields
from providers.openai import OpenAI, OpenAIStream
from sync.model import Llm

DEFAULT_API_VERSION = "2024-10-21"
_STREAM_USAGE_SINCE = "2024-08-01"  # the first API version (a preview) that takes stream_options
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}")
_OPERATIONS = {Operation.CHAT: "chat/completions", Operation.EMBEDDINGS: "embeddings"}
_INCLUDE_USAGE = {"stream_options": {"include_usage": True}}
_FILTER_MARK = b'"prompt_filter_results"'
_NUMERIC_CODES = {429: "rate_limit_exceeded"}


class _FilterChunk(msgspec.Struct):
    choices: list[msgspec.Raw] | None = None
    usage: dict[str, msgspec.Raw] | None = None
    prompt_filter_results: list[msgspec.Raw] | None = None


class _Capabilities(msgspec.Struct):
    inference: bool = True


class _Model(msgspec.Struct):
    id: str
    capabilities: _Capabilities | None = None


class _ModelList(msgspec.Struct):
    data: list[_Model] = []


_filter_chunk = msgspec.json.Decoder(_FilterChunk)
_model_list = msgspec.json.Decoder(_ModelList)


class AzureOpenAI(OpenAI):
    vendor = "azure_openai"

    def __init__(self, llm: Llm, api_key: str | None) -> None:
        super().__init__(llm, api_key)
        self._endpoint = (llm.api_base or "").rstrip("/")
        version = llm.api_version or DEFAULT_API_VERSION
        self._query = "api-version=" + quote(version, safe="")
        self._stream_usage = not _DATED.match(version) or version[:10] >= _STREAM_USAGE_SINCE
        self._deployments = dict(llm.deployments or {})
        self._models_of = {deployment: model for model, deployment in self._deployments.items()}
        self._key = {"api-key": api_key} if api_key else {}
        self._headers = {"content-type": "application/json", **self._key}

    def deployment(self, model: str) -> str:
        return self._deployments.get(model, model)

    async def request(self, call: Call) -> UpstreamRequest:
        if not self._endpoint:  # config validation requires it; a stored LLM without one still fails clearly
            message = f"LLM '{self.slug}': azure_openai needs api_base (the resource endpoint)"
            raise UpstreamUnavailable(message)
        if call.op is Operation.PROXY:
            url = f"{self._endpoint}/{call.path}" + (f"?{call.query}" if call.query else "")
            return UpstreamRequest(call.method, url, {**call.headers, **self._key}, call.body or None)
        if call.op is Operation.MODELS:
            return UpstreamRequest("GET", f"{self._endpoint}/openai/models?{self._query}", self._key, None)
        body = call.body
        if call.stream and call.op is Operation.CHAT and not call.include_usage and self._stream_usage:
            add = merge_fields if call.has_stream_options else prepend_fields
            body = add(body, _INCLUDE_USAGE)
        if not call.model_in_body:  # Azure reads the deployment from the URL; the model keeps the body whole
            model = {"model": call.model}
            body = merge_fields(body, model) if call.model_key else prepend_fields(body, model)
        deployment = quote(self.deployment(call.model), safe="")
        url = f"{self._endpoint}/openai/deployments/{deployment}/{_OPERATIONS[call.op]}?{self._query}"
        return UpstreamRequest("POST", url, self._headers, body)

    def stream(self, call: Call) -> AzureStream:
        chat = call.op is Operation.CHAT
        return AzureStream(drop_usage_chunk=chat and not call.include_usage, drop_filter_chunks=chat)

    def error(self, call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> TollgateError:
        error = super().error(call, status, body, headers)
        if not isinstance(error, UpstreamStatus) or error.raw is not None:
            return error
        if error.code.isdigit():  # Azure's gateway errors carry the HTTP status as their code
            error.code = _NUMERIC_CODES.get(status, "upstream_error")
        elif error.code == "DeploymentNotFound":
            error.message += (
                f" (LLM '{self.slug}' called deployment '{self.deployment(call.model)}' for model "
                f"'{call.model}'; the LLM's `deployments` maps models to deployment names)"
            )
        return error

    def models(self, body: bytes) -> list[dict[str, Any]]:
        if self._deployments:
            return model_list(self._deployments, owned_by="azure_openai")
        try:
            listed = _model_list.decode(body).data
        except (msgspec.DecodeError, RecursionError):
            raise UpstreamUnavailable(
                f"LLM '{self.slug}': the upstream's model list is not Azure OpenAI's"
            ) from None
        # Models the resource can only fine-tune are not callable.
        ids = [m.id for m in listed if m.capabilities is None or m.capabilities.inference]
        return model_list(dict.fromkeys(ids), owned_by="azure_openai")

    def proxy_model(self, path: str, body: bytes) -> str:
        parts = path.split("/", 3)
        if len(parts) >= 3 and parts[:2] == ["openai", "deployments"] and parts[2]:
            deployment = unquote(parts[2])
            return self._models_of.get(deployment, deployment)
        return super().proxy_model(path, body)


class AzureStream(OpenAIStream):
    """OpenAI's stream relay, which also drops Azure's choice-less prompt-filter chunks when asked."""

    __slots__ = ("_drop_filter_chunks",)

    def __init__(self, *, drop_usage_chunk: bool, drop_filter_chunks: bool) -> None:
        super().__init__(drop_usage_chunk=drop_usage_chunk)
        self._drop_filter_chunks = drop_filter_chunks

    def _relay(self, block: bytes) -> bytes:
        if self._drop_filter_chunks and _FILTER_MARK in block:
            kept = [event for event in sse.split(block) if not _filter_only(sse.data(event))]
            block = b"".join(event + b"\n\n" for event in kept)
            if not block:
                return b""
        return super()._relay(block)


def _filter_only(payload: bytes) -> bool:
    """The event is Azure's prompt-filter report: no choice, no usage, only `prompt_filter_results`."""
    if payload == sse.DONE:
        return False
    try:
        chunk = _filter_chunk.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return False
    return chunk.prompt_filter_results is not None and not chunk.choices and chunk.usage is None
