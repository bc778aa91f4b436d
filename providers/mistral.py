"""Mistral: OpenAI-like Chat Completions and Embeddings, translated both ways (Mistral refuses OpenAI's
extra fields and answers with its own variations; see mistral_request and mistral_answer).

Errors come in three shapes, all read here: `{"object": "error", "message", "type", "param", "code"}`,
FastAPI's 422 `{"detail": [{"loc", "msg", "type"}]}` (also found nested in `message`), and
`{"detail": "Unauthorized"}` / `{"message": ...}` from its edge. `/proxy/` paths are relative to the
server root (`https://api.mistral.ai`, the `api_base` without its `/v1`), as the mistralai SDK's
`server_url` is: its requests name `v1/chat/completions`, `v1/embeddings`, ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec

from gateway.errors import TollgateError, UpstreamStatus, UpstreamUnavailable
from providers import mistral_answer as answers
from providers.answer import chat_completion, embeddings, model_list
from providers.base import Call, Operation, Reply, StreamRelay, UpstreamRequest, Usage
from providers.chat import parse_embeddings
from providers.failures import common_failure, kept_headers, scrubber
from providers.mistral_request import chat_body, embeddings_body
from providers.openai import CONNECT_TIMEOUT_S, OpenAIStream
from sync.model import Llm

DEFAULT_BASE = "https://api.mistral.ai/v1"
# Mistral's `type` names the error's class; these are too generic to serve as the gateway's code.
_GENERIC_TYPES = frozenset({"invalid_request_error", "internal_error", "internal_error_proxy"})


class _Detail(msgspec.Struct):
    loc: list[str | int] = []
    msg: str = ""


class _Error(msgspec.Struct):
    message: str | dict[str, Any] | None = None
    type: str | None = None
    code: str | int | None = None
    param: str | None = None
    detail: list[_Detail] | str | None = None


class _Named(msgspec.Struct):
    model: str | None = None
    usage: answers.MistralUsage | None = None


class _Model(msgspec.Struct):
    id: str


class _ModelList(msgspec.Struct):
    data: list[_Model] = []


_error = msgspec.json.Decoder(_Error)
_named = msgspec.json.Decoder(_Named)
_model_list = msgspec.json.Decoder(_ModelList)


class Mistral:
    vendor = "mistral"

    def __init__(self, llm: Llm, api_key: str | None) -> None:
        self.slug = llm.slug
        base = (llm.api_base or DEFAULT_BASE).rstrip("/")
        self._urls = {
            Operation.CHAT: base + "/chat/completions",
            Operation.EMBEDDINGS: base + "/embeddings",
            Operation.MODELS: base + "/models",
        }
        self._root = base.removesuffix("/v1")
        self._auth: dict[str, str] = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._json_headers = {"content-type": "application/json", **self._auth}
        self._scrub = scrubber(api_key)  # the credential never reaches a client in an error
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=llm.timeout_s
        )

    async def request(self, call: Call) -> UpstreamRequest:
        if call.op is Operation.PROXY:
            url = f"{self._root}/{call.path}" + (f"?{call.query}" if call.query else "")
            return UpstreamRequest(call.method, url, {**call.headers, **self._auth}, call.body or None)
        if call.op is Operation.MODELS:
            return UpstreamRequest("GET", self._urls[call.op], self._auth, None)
        if call.op is Operation.CHAT:
            body = chat_body(call.body, call.model, call.stream)
        else:
            body = embeddings_body(call.body, call.model)
        return UpstreamRequest("POST", self._urls[call.op], self._json_headers, body)

    def response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> Reply:
        if call.op is Operation.PROXY:  # the native answer goes back as it is; only its usage is read
            try:
                named = _named.decode(body)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
                return Reply(body)
            return Reply(body, named.usage.normalized() if named.usage else None, named.model)
        try:
            if call.op is Operation.EMBEDDINGS:
                return self._embeddings(call, answers.embedding_list.decode(body))
            return self._completion(call, answers.completion.decode(body))
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            raise UpstreamUnavailable(f"LLM '{self.slug}': the upstream's answer is not Mistral's") from None

    def _completion(self, call: Call, answer: answers.Completion) -> Reply:
        if not answer.choices or answer.choices[0].message is None:
            raise UpstreamUnavailable(f"LLM '{self.slug}': the upstream's answer has no message")
        choice = answer.choices[0]
        assert choice.message is not None
        content, calls = answers.message_parts(choice.message)
        finish = answers.FINISH.get(choice.finish_reason or "stop", "stop")
        usage = answer.usage.normalized() if answer.usage else None
        model = answer.model or call.model
        return Reply(chat_completion(model, content, finish, usage, calls), usage, model)

    def _embeddings(self, call: Call, answer: answers.EmbeddingList) -> Reply:
        usage = answer.usage.normalized() if answer.usage else Usage()
        model = answer.model or call.model
        encoding = parse_embeddings(call.body).encoding_format
        return Reply(embeddings(model, answer.vectors(), usage, encoding), usage, model)

    def stream(self, call: Call) -> StreamRelay:
        if call.op is Operation.PROXY:  # native bytes untouched; the usage is on the last chunk
            return OpenAIStream(drop_usage_chunk=False)
        return answers.MistralStream(call.model, call.include_usage)

    def error(self, call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> TollgateError:
        shared = common_failure(call, self.slug, status, body, headers, self._scrub)
        if shared is not None:
            return shared
        kept = kept_headers(headers) or None
        try:
            error = _error.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            error = _Error()
        message = self._scrub(_message(error) or f"the upstream answered HTTP {status}")
        code = "rate_limit_exceeded" if status == 429 else None
        if code is None and error.type and error.type not in _GENERIC_TYPES:
            code = error.type
        return UpstreamStatus(status, message, code=code, param=error.param, headers=kept)

    def models(self, body: bytes) -> list[dict[str, Any]]:
        try:
            listed = _model_list.decode(body).data
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            message = f"LLM '{self.slug}': the upstream's model list is not Mistral's"
            raise UpstreamUnavailable(message) from None
        return model_list(dict.fromkeys(m.id for m in listed), owned_by="mistralai")

    def proxy_model(self, path: str, body: bytes) -> str:
        if not body:
            return ""
        try:
            return _named.decode(body).model or ""
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return ""


def _message(error: _Error) -> str:
    """The error's text, whichever of Mistral's shapes carried it."""
    detail = error.detail
    if isinstance(error.message, dict):  # a validation error wrapped in the error envelope
        try:
            detail = msgspec.convert(error.message.get("detail"), list[_Detail] | str | None)
        except msgspec.ValidationError:
            return str(error.message)
    if isinstance(detail, str):
        return detail
    if detail:
        return "; ".join(f"{_where(item.loc)}: {item.msg}" for item in detail)
    return error.message if isinstance(error.message, str) else ""


def _where(loc: list[str | int]) -> str:
    """FastAPI's `["body", "messages", 0, "role"]` as `messages[0].role`."""
    path = ""
    for part in loc[1:] if loc[:1] == ["body"] else loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path or "body"
