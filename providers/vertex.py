"""Vertex AI (`vertex`): Gemini models through a Google Cloud project, authorised by OAuth access tokens
minted from the service-account JSON held in the LLM's `api_key`.

The Gemini translation is the Gemini API's (`providers/gemini.py`, which this adapter extends); what
differs is the URL (`/v1/projects/{project}/locations/{region}/publishers/google/models/{model}`), the
Bearer token, embeddings through `:predict`, and the publisher model list. Claude models (`claude-…`)
go to the Anthropic publisher (`:rawPredict` / `:streamRawPredict`), translated by the Anthropic adapter's
functions (`providers/anthropic_messages.py`, `providers/anthropic_stream.py`).
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Mapping
from urllib.parse import quote

import google.auth.exceptions
import google.auth.transport.requests
import msgspec
import orjson
from google.oauth2 import service_account

from gateway.errors import InvalidRequest, UpstreamStatus, UpstreamUnavailable
from providers.anthropic_messages import asks_json_object, from_anthropic, message_decoder, to_anthropic
from providers.anthropic_stream import AnthropicStream
from providers.anthropic_stream import NativeStream as AnthropicNativeStream
from providers.base import Call, Operation, Reply, StreamRelay, Usage
from providers.chat import EmbeddingsRequest, parse_chat
from providers.gemini import GoogleAI, unversioned
from providers.gemini_request import JsonObject, predict_embed_body
from sync.model import Llm

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
ANTHROPIC_VERSION = "vertex-2023-10-16"  # Claude on Vertex: in the body, instead of a header
DEFAULT_REGION = "us-central1"
# A token is used until this long before it expires, so no request carries one that lapses in flight.
REFRESH_MARGIN = datetime.timedelta(minutes=5)


class _Statistics(msgspec.Struct):
    token_count: float = 0  # a float in Vertex's schema


class _Values(msgspec.Struct):
    values: list[float] = []
    statistics: _Statistics | None = None


class _Prediction(msgspec.Struct):
    embeddings: _Values


class _Predictions(msgspec.Struct):
    predictions: list[_Prediction] = []


class _PublisherModel(msgspec.Struct):
    name: str = ""


class _PublisherModels(msgspec.Struct, rename="camel"):
    publisher_models: list[_PublisherModel] = []


_predictions = msgspec.json.Decoder(_Predictions)
_publisher_models = msgspec.json.Decoder(_PublisherModels)


class ServiceAccountToken:
    """OAuth access tokens for one service account, minted with google-auth at the JSON's `token_uri`.

    google-auth is blocking (requests), so a refresh runs in a thread; one refresh at a time (a lock), and
    a token is reused until `REFRESH_MARGIN` before it expires.
    """

    def __init__(self, api_key: str | None, slug: str) -> None:
        self.slug = slug
        self.project_id: str | None = None
        self._problem: str | None = None
        self._credentials: service_account.Credentials | None = None
        try:
            info = json.loads(api_key or "")
            if not isinstance(info, dict):
                raise ValueError("not a JSON object")
            self._credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=[SCOPE]
            )
            project = info.get("project_id")
            self.project_id = project if isinstance(project, str) else None
        except (ValueError, TypeError) as exc:  # the JSON, or a field google-auth cannot use
            # The reason only: the text may quote the private key.
            self._problem = f"its api_key is not a usable service-account JSON ({type(exc).__name__})"
        self._lock = asyncio.Lock()
        self._transport = google.auth.transport.requests.Request()

    async def bearer(self) -> str:
        credentials = self._credentials
        if credentials is None:
            raise UpstreamStatus(401, f"LLM '{self.slug}': {self._problem}", code="upstream_auth_error")
        if not self._fresh(credentials):
            async with self._lock:
                if not self._fresh(credentials):  # another request may have refreshed it meanwhile
                    await self._refresh(credentials)
        return str(credentials.token)

    @staticmethod
    def _fresh(credentials: service_account.Credentials) -> bool:
        expiry = credentials.expiry  # naive UTC, as google-auth keeps it
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        return bool(credentials.token) and expiry is not None and expiry - now > REFRESH_MARGIN

    async def _refresh(self, credentials: service_account.Credentials) -> None:
        try:
            await asyncio.to_thread(credentials.refresh, self._transport)
        except google.auth.exceptions.RefreshError as exc:
            message = f"LLM '{self.slug}': the token endpoint refused the service account ({exc.args[0]})"
            raise UpstreamStatus(401, message, code="upstream_auth_error") from None
        except google.auth.exceptions.TransportError as exc:
            message = f"LLM '{self.slug}': cannot reach the token endpoint ({type(exc).__name__})"
            raise UpstreamUnavailable(message) from None


class Vertex(GoogleAI):
    vendor = "vertex"

    def __init__(self, llm: Llm, api_key: str | None) -> None:
        super().__init__(llm, None)  # no API key header: a Bearer token per request instead
        self._secret = api_key
        region = llm.region or DEFAULT_REGION
        host = "aiplatform.googleapis.com" if region == "global" else f"{region}-aiplatform.googleapis.com"
        self._base = unversioned((llm.api_base or f"https://{host}").replace("{region}", region))
        self._token = ServiceAccountToken(api_key, llm.slug)
        project = llm.project or self._token.project_id
        self._project = project
        self._location = f"{self._base}/v1/projects/{project}/locations/{region}"

    async def _headers(self) -> dict[str, str]:
        if not self._project:
            raise UpstreamUnavailable(
                f"LLM '{self.slug}' names no project: set its 'project', or use a service-account JSON "
                "with a 'project_id'"
            )
        return {"authorization": f"Bearer {await self._token.bearer()}"}

    def _models_url(self) -> str:
        # Publisher models are listed by the v1beta1 API only.
        return f"{self._base}/v1beta1/publishers/google/models?pageSize=1000"

    def _chat_url(self, model: str) -> str:
        return f"{self._location}/publishers/google/models/{quote(model, safe='@')}"

    def _chat_request(self, model: str, call: Call) -> tuple[str, bytes]:
        if not _is_claude(model):
            return super()._chat_request(model, call)
        # Claude: the Messages body without `model` (it is in the path), the version in the body.
        body = to_anthropic(parse_chat(call.body), None, call.stream)
        body["anthropic_version"] = ANTHROPIC_VERSION
        method = ":streamRawPredict" if call.stream else ":rawPredict"
        url = f"{self._location}/publishers/anthropic/models/{quote(model, safe='@')}{method}"
        return url, orjson.dumps(body)

    def _embeddings_request(self, model: str, request: EmbeddingsRequest) -> tuple[str, JsonObject]:
        if _is_claude(model):
            raise InvalidRequest(f"LLM '{self.slug}': Claude models have no embeddings")
        return self._chat_url(model) + ":predict", predict_embed_body(request)

    def _embeddings_answer(self, body: bytes) -> tuple[list[list[float]], Usage | None]:
        predictions = _predictions.decode(body).predictions
        counted = [p.embeddings.statistics for p in predictions if p.embeddings.statistics is not None]
        usage = Usage(round(sum(s.token_count for s in counted))) if counted else None
        return [p.embeddings.values for p in predictions], usage

    def response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> Reply:
        if not _speaks_anthropic(call):
            return super().response(call, body, headers)
        try:
            message = message_decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):
            if call.op is Operation.PROXY:
                return Reply(body)
            raise UpstreamUnavailable(f"LLM '{self.slug}': the upstream's answer is not Claude's") from None
        if call.op is Operation.PROXY:
            return Reply(body, message.usage.normalized() if message.usage else None, message.model)
        answer, usage = from_anthropic(message, call.model, asks_json_object(call.body))
        return Reply(answer, usage, message.model)

    def stream(self, call: Call) -> StreamRelay:
        if not _speaks_anthropic(call):
            return super().stream(call)
        if call.op is Operation.PROXY:
            return AnthropicNativeStream()
        return AnthropicStream(call.model, call.include_usage, json_tool=asks_json_object(call.body))

    def _model_ids(self, body: bytes) -> list[str]:
        models = _publisher_models.decode(body).publisher_models
        return [m.name.rpartition("/")[2] for m in models if m.name]


def _is_claude(model: str) -> bool:
    return model.startswith("claude-")


def _speaks_anthropic(call: Call) -> bool:
    """Claude's answers are Anthropic's Messages format, on /openai/ and on /proxy/ alike."""
    if call.op is Operation.PROXY:
        return "/publishers/anthropic/" in call.path
    return call.op is Operation.CHAT and _is_claude(call.model)
