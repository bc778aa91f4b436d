"""Amazon Bedrock: chat through Converse / ConverseStream, embeddings through InvokeModel (Titan, Cohere),
the model list from the control plane, and native pass-through, every request signed with SigV4.

Signing is botocore's (`SigV4Auth` over an `AWSRequest`, service `bedrock`): the URL, headers and body
signed are exactly the ones sent. Model ids are percent-encoded in the path as the AWS SDKs send them
(`:` as `%3A`); the relay sends URLs as built, so the signed path is the path on the wire.

The model list comes from the control plane (`GET bedrock.{region}.amazonaws.com/foundation-models`,
`bedrock:ListFoundationModels`): the runtime has no list, and the catalog is what an operator filters
with `allowed_models`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import msgspec
import orjson
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from gateway.errors import InvalidRequest, TollgateError, UpstreamStatus, UpstreamUnavailable, retry_after
from providers.answer import model_list
from providers.base import Call, Operation, Reply, UpstreamRequest, Usage
from providers.bedrock_convert import (
    TokenUsage,
    chat_answer,
    converse_answer,
    converse_body,
    embeddings_answer,
    embeddings_body,
)
from providers.bedrock_stream import ConverseRelay, NativeRelay
from providers.chat import parse_chat, parse_embeddings
from providers.failures import scrubber
from sync.model import Llm

DEFAULT_REGION = "us-east-1"
DEFAULT_BASE = "https://bedrock-runtime.{region}.amazonaws.com"
SIGNING_NAME = "bedrock"  # the runtime's and the control plane's signing name
CONNECT_TIMEOUT_S = 10.0
# The client's own signature headers: the gateway signs again with its credentials.
_CLIENT_SIGNATURE = frozenset({"x-amz-date", "x-amz-security-token", "x-amz-content-sha256", "expect"})
_JSON = {"content-type": "application/json"}
_INVOKE = {"content-type": "application/json", "accept": "application/json"}
_ERROR_TYPES = {404: "not_found_error", 408: "timeout_error", 429: "rate_limit_error"}


class _Error(msgspec.Struct):
    message: str | None = None
    Message: str | None = None  # some AWS front ends capitalise it


class _Summary(msgspec.Struct):
    modelId: str
    providerName: str = ""


class _Catalog(msgspec.Struct):
    modelSummaries: list[_Summary] = []


class _ConverseUsage(msgspec.Struct):
    usage: TokenUsage | None = None


_error = msgspec.json.Decoder(_Error)
_catalog = msgspec.json.Decoder(_Catalog)
_converse_usage = msgspec.json.Decoder(_ConverseUsage)


def _control_plane(runtime_base: str) -> str:
    """The control plane beside a runtime endpoint (`bedrock-runtime.` → `bedrock.`); an endpoint of
    another shape (a mock, a private proxy) is taken to serve both."""
    scheme, sep, rest = runtime_base.partition("://")
    host, slash, path = rest.partition("/")
    if "bedrock-runtime" not in host:
        return runtime_base
    return scheme + sep + host.replace("bedrock-runtime", "bedrock", 1) + slash + path


def _credentials(api_key: str | None) -> Credentials | None:
    """`ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]` (keys and tokens never contain `:`)."""
    parts = (api_key or "").split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        return None
    return Credentials(parts[0], parts[1], parts[2] if len(parts) == 3 and parts[2] else None)


def _header(headers: Mapping[str, str], name: str) -> str:
    return headers.get(name) or headers.get(name.title()) or ""


class Bedrock:
    vendor = "bedrock"

    def __init__(self, llm: Llm, api_key: str | None) -> None:
        self.slug = llm.slug
        self.region = llm.region or DEFAULT_REGION
        self._base = (llm.api_base or DEFAULT_BASE).replace("{region}", self.region).rstrip("/")
        self._models_url = _control_plane(self._base) + "/foundation-models"
        credentials = _credentials(api_key)
        self._signer = SigV4Auth(credentials, SIGNING_NAME, self.region) if credentials else None
        self._scrub = scrubber(*(s for s in (api_key or "").split(":") if len(s) >= 8))
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=llm.timeout_s
        )

    # --- requests ---------------------------------------------------------------------------------------

    async def request(self, call: Call) -> UpstreamRequest:
        if call.op is Operation.PROXY:
            url = f"{self._base}/{call.path}" + (f"?{call.query}" if call.query else "")
            headers = {k: v for k, v in call.headers.items() if k.lower() not in _CLIENT_SIGNATURE}
            return self._signed(call.method, url, headers, call.body)
        if call.op is Operation.MODELS:
            return self._signed("GET", self._models_url, {}, b"")
        if not call.model:
            raise InvalidRequest(
                f"LLM '{self.slug}' has no default model: name a Bedrock model id in 'model'"
            )
        model = quote(call.model, safe="")  # as the AWS SDKs encode a path label: `:` and `/` too
        if call.op is Operation.EMBEDDINGS:
            body = orjson.dumps(embeddings_body(call.model, parse_embeddings(call.body)))
            return self._signed("POST", f"{self._base}/model/{model}/invoke", dict(_INVOKE), body)
        action = "converse-stream" if call.stream else "converse"
        body = orjson.dumps(converse_body(parse_chat(call.body)))
        return self._signed("POST", f"{self._base}/model/{model}/{action}", dict(_JSON), body)

    def _signed(self, method: str, url: str, headers: dict[str, str], body: bytes) -> UpstreamRequest:
        if self._signer is None:
            raise UpstreamUnavailable(
                f"LLM '{self.slug}' has no AWS credentials: its api_key must be "
                "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]"
            )
        signed = AWSRequest(method=method, url=url, headers=headers, data=body)
        self._signer.add_auth(signed)
        sent: dict[str, str] = dict(signed.headers.items())
        return UpstreamRequest(method, url, sent, body or None)

    # --- answers ----------------------------------------------------------------------------------------

    def response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> Reply:
        try:
            if call.op is Operation.CHAT:
                translated, usage = chat_answer(call.model, converse_answer.decode(body))
                return Reply(translated, usage)
            if call.op is Operation.EMBEDDINGS:
                request = parse_embeddings(call.body)
                translated, usage = embeddings_answer(call.model, request, body, headers)
                return Reply(translated, usage)
        except (msgspec.DecodeError, RecursionError):
            raise UpstreamUnavailable(f"LLM '{self.slug}': the upstream's answer is not Bedrock's") from None
        return Reply(body, self._native_usage(call.path, body, headers))

    def _native_usage(self, path: str, body: bytes, headers: Mapping[str, str]) -> Usage | None:
        """Usage of a pass-through answer: Converse's JSON, or InvokeModel's token-count headers."""
        action = path.partition("?")[0].rstrip("/").rpartition("/")[2]
        if action == "converse":
            try:
                usage = _converse_usage.decode(body).usage
            except (msgspec.DecodeError, RecursionError):
                return None
            return usage.normalized() if usage else None
        counts = [_header(headers, f"x-amzn-bedrock-{name}-token-count") for name in
                  ("input", "output", "cache-read-input", "cache-write-input")]  # fmt: skip
        if not counts[0].isdigit():
            return None
        read, write = (int(c) if c.isdigit() else 0 for c in counts[2:])
        output = int(counts[1]) if counts[1].isdigit() else 0
        # Like Converse's inputTokens, the input count leaves the cached parts out.
        return Usage(int(counts[0]) + read + write, output, read, write)

    def stream(self, call: Call) -> ConverseRelay | NativeRelay:
        if call.op is Operation.CHAT:
            return ConverseRelay(call.model, call.include_usage, self.slug)
        return NativeRelay()

    def error(self, call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> TollgateError:
        wait = retry_after(_header(headers, "retry-after")) if _header(headers, "retry-after") else None
        kept = {"retry-after": wait} if wait is not None else {}
        error_type = _header(headers, "x-amzn-errortype")
        kind = error_type.partition(":")[0]
        native = call.op is Operation.PROXY
        if native and error_type:
            kept["x-amzn-errortype"] = error_type  # the AWS SDKs read the error's class from it
        if status in (401, 403):
            # The vendor's message may quote the gateway's credential; the client must not see it.
            message = f"the upstream refused the gateway's credentials for LLM '{self.slug}' (HTTP {status})"
            if native:
                raw = orjson.dumps({"message": message})
                return UpstreamStatus(status, message, headers=kept, raw=raw)
            return UpstreamStatus(status, message, code="upstream_auth_error", headers=kept)
        if native:
            content_type = _header(headers, "content-type") or "application/json"
            raw = self._scrub(body.decode("utf-8", "replace")).encode()
            return UpstreamStatus(status, "", headers=kept, raw=raw, content_type=content_type)
        try:
            parsed = _error.decode(body)
            text = parsed.message or parsed.Message
        except (msgspec.DecodeError, RecursionError):
            text = None
        message = self._scrub(text or f"the upstream answered HTTP {status}")
        code = kind or None
        if kind == "ValidationException" and "too long" in message.lower():
            code = "context_length_exceeded"  # as OpenAI names the context-window error
        return UpstreamStatus(status, message, type=_ERROR_TYPES.get(status), code=code, headers=kept or None)

    def models(self, body: bytes) -> list[dict[str, Any]]:
        try:
            listed = _catalog.decode(body).modelSummaries
        except (msgspec.DecodeError, RecursionError):
            raise UpstreamUnavailable(
                f"LLM '{self.slug}': the upstream's model list is not Bedrock's"
            ) from None
        return [model_list([m.modelId], m.providerName.lower() or "bedrock")[0] for m in listed]

    def proxy_model(self, path: str, body: bytes) -> str:
        head, _, rest = path.partition("/")
        return unquote(rest.partition("/")[0]) if head == "model" else ""
