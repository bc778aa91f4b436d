"""MockAzureOpenAI: Azure OpenAI's data plane as an ASGI app, on top of MockOpenAI's answers and validation.

Azure runs OpenAI's models behind its own front door, so requests are validated and answered as
MockOpenAI does, with Azure's envelope around them:

- URLs `/openai/deployments/{deployment}/chat/completions|embeddings?api-version=...` and
  `/openai/models?api-version=...`; the deployment decides the model (the body's `model` is ignored);
- `api-key` header (401 `{"error": {"code": "401", ...}}` when missing or wrong); no `api-version`: 404
  "Resource not found" (what Azure answers, not 400); an unknown version: 400; `stream_options` before
  2024-08-01-preview: 400 like any unknown field; an unknown deployment: 404 `DeploymentNotFound`;
  chat on an embeddings deployment or the reverse: 400 `OperationNotSupported`;
- content filtering: answers carry `prompt_filter_results` and per-choice `content_filter_results`,
  streams open with a choice-less prompt-filter chunk; the `content_filter` knob makes the filter refuse
  the prompt ("prompt": 400 `content_filter` with `innererror`) or cut the answer ("completion":
  finish_reason `content_filter`).

Standalone: python -m mocks.azure --port 9302 [--api-key K]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl

import msgspec
import orjson
import uvicorn

from mocks.asgi import RecordedRequest, Reply
from mocks.openai import MockOpenAI
from mocks.openai_answer import random_id
from mocks.openai_errors import ApiError, JsonObject
from mocks.openai_models import MODELS, count_tokens
from mocks.openai_validate import parse_body

DEFAULT_DEPLOYMENTS: dict[str, str] = {
    "gpt-4o-mini": "gpt-4o-mini",
    "gpt-4o": "gpt-4o",
    "chat-prod": "gpt-4o-mini",
    "text-embedding-3-small": "text-embedding-3-small",
    "embed-prod": "text-embedding-3-small",
}
API_VERSIONS = frozenset(
    {
        "2023-05-15",
        "2024-02-01",
        "2024-06-01",
        "2024-10-21",
        "2024-08-01-preview",
        "2024-09-01-preview",
        "2024-10-01-preview",
        "2024-12-01-preview",
        "2025-01-01-preview",
        "2025-03-01-preview",
        "2025-04-01-preview",
    }
)
STREAM_OPTIONS_SINCE = "2024-08-01"
_DEPLOYMENTS_PREFIX = "/openai/deployments/"
_OPERATIONS = {"chat/completions": ("chat", "chatCompletion"), "embeddings": ("embedding", "embeddings")}
_NO_ACCESS = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)
_NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the deployment within the last "
    "5 minutes, please wait a moment and try again."
)
_FILTERED_PROMPT = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry. To learn more about our content filtering policies please read "
    "our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
_SAFE = {"filtered": False, "severity": "safe"}
_CHOICE_RESULTS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_PROMPT_RESULTS = {**_CHOICE_RESULTS, "jailbreak": {"filtered": False, "detected": False}}
_FILTERED = {**_CHOICE_RESULTS, "violence": {"filtered": True, "severity": "medium"}}
_JSON = (b"content-type", b"application/json")
_SSE = (b"content-type", b"text/event-stream; charset=utf-8")

ContentFilter = Literal["prompt", "completion"] | None


class AzureError(ApiError):
    """Azure's own errors (its front door, not the model's): `{"error": {"code", "message", ...}}`."""

    def __init__(self, http_status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(http_status, message, code=code)
        self.extra = extra

    def body(self) -> bytes:
        return orjson.dumps({"error": {"code": self.code, "message": self.message, **self.extra}})


def _headers(kind: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    request_id = random_id("", 32).encode()
    return [kind, (b"apim-request-id", request_id), (b"x-request-id", request_id)]


def _event(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class MockAzureOpenAI(MockOpenAI):
    """Azure OpenAI's chat completions, embeddings and model list.

    Knobs: MockOpenAI's (cached_tokens, chunk_delay_s, first_byte_delay_s, omit_usage, fail_status,
    fail_message, fail_retry_after) and `content_filter`; `deployments` maps deployment names to models.
    """

    content_filter: ContentFilter

    def __init__(
        self,
        api_key: str | None = None,
        *,
        deployments: dict[str, str] | None = None,
        record_requests: bool = True,
    ) -> None:
        super().__init__(api_key, record_requests=record_requests)
        self.deployments = dict(DEFAULT_DEPLOYMENTS if deployments is None else deployments)

    def reset(self) -> None:
        super().reset()
        self.content_filter = None

    def _reply(self, request: RecordedRequest) -> Reply:
        try:
            self._check_failure()
            self._check_key(request.headers.get("api-key"))
            version = _api_version(request.query_string)
            return self._azure_route(request)(request, version)
        except ApiError as error:
            return Reply(error.status, [*_headers(_JSON), *error.headers], error.body())

    def _check_failure(self) -> None:
        if self.fail_status is None:
            return
        retry = self.fail_retry_after
        error = AzureError(self.fail_status, str(self.fail_status), self.fail_message)
        error.headers = [(b"retry-after", retry.encode("latin-1"))] if retry is not None else []
        raise error

    def _check_key(self, key: str | None) -> None:
        if self.api_key is not None and key != self.api_key:
            raise AzureError(401, "401", _NO_ACCESS)

    def _azure_route(self, request: RecordedRequest) -> Callable[[RecordedRequest, str], Reply]:
        path = request.path
        if path == "/openai/models" and request.method == "GET":
            return self._model_list
        if path.startswith(_DEPLOYMENTS_PREFIX) and request.method == "POST":
            deployment, _, operation = path[len(_DEPLOYMENTS_PREFIX) :].partition("/")
            if operation in _OPERATIONS:
                return lambda request, version: self._deployment_call(request, version, deployment, operation)
        raise AzureError(404, "404", "Resource not found")

    # --- endpoints --------------------------------------------------------------------------------------

    def _deployment_call(
        self, request: RecordedRequest, version: str, deployment: str, operation: str
    ) -> Reply:
        model = self.deployments.get(deployment)
        if model is None:
            raise AzureError(404, "DeploymentNotFound", _NO_DEPLOYMENT)
        kind, name = _OPERATIONS[operation]
        if MODELS[model].kind != kind:
            message = (
                f"The {name} operation does not work with the specified model, {model}. Please choose "
                "different model and try again. You can learn more about which models can be used with each "
                "operation here: https://go.microsoft.com/fwlink/?linkid=2197993."
            )
            raise AzureError(400, "OperationNotSupported", message)
        body = parse_body(request.body)
        body["model"] = model  # the deployment decides, whatever the body says
        if kind == "embedding":
            return self._embeddings(_with_body(request, body))
        if body.get("stream_options") is not None and version[:10] < STREAM_OPTIONS_SINCE:
            raise ApiError(400, "Unrecognized request argument supplied: stream_options")
        if self.content_filter == "prompt":
            innererror = {"code": "ResponsibleAIPolicyViolation", "content_filter_result": _FILTERED}
            raise AzureError(
                400,
                "content_filter",
                _FILTERED_PROMPT,
                param="prompt",
                type=None,
                status=400,
                innererror=innererror,
            )
        reply = self._chat(_with_body(request, body))
        cut = self.content_filter == "completion"
        if reply.events is None:
            return Reply(reply.status, _headers(_JSON), _filtered_answer(orjson.loads(reply.body), cut))
        return Reply(200, _headers(_SSE), events=_filtered_stream(reply.events, cut))

    def _model_list(self, request: RecordedRequest, version: str) -> Reply:
        data = [_model_card(name) for name in MODELS]
        data.append(
            {**_model_card("gpt-4o-mini"), "id": "gpt-35-turbo-0301", "capabilities": _FINE_TUNE_ONLY}
        )
        return Reply(200, _headers(_JSON), orjson.dumps({"data": data, "object": "list"}))


# --- Azure's additions to OpenAI's answers ----------------------------------------------------------------

_FINE_TUNE_ONLY = {"fine_tune": True, "inference": False, "completion": False, "chat_completion": False,
                   "embeddings": False}  # fmt: skip


def _api_version(query: str) -> str:
    version = dict(parse_qsl(query)).get("api-version")
    if version is None:
        raise AzureError(404, "404", "Resource not found")
    if version not in API_VERSIONS:
        raise AzureError(400, "BadRequest", "API version not supported")
    return version


def _with_body(request: RecordedRequest, body: JsonObject) -> RecordedRequest:
    return msgspec.structs.replace(request, body=orjson.dumps(body))


def _model_card(name: str) -> JsonObject:
    info = MODELS[name]
    capabilities = {
        "fine_tune": False,
        "inference": True,
        "completion": False,
        "chat_completion": info.kind == "chat",
        "embeddings": info.kind == "embedding",
    }
    return {
        "status": "succeeded",
        "capabilities": capabilities,
        "lifecycle_status": "generally-available",
        "deprecation": {"inference": info.created + 2 * 365 * 86400},
        "id": info.id,
        "created_at": info.created,
        "object": "model",
    }


def _cut(text: str) -> str:
    """What the filter lets through of an answer it stops: its first half."""
    return text[: len(text) // 2]


def _filtered_answer(answer: JsonObject, cut: bool) -> bytes:
    answer["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _PROMPT_RESULTS}]
    for choice in answer["choices"]:
        choice["content_filter_results"] = _FILTERED if cut else _CHOICE_RESULTS
        message = choice["message"]
        if cut and message.get("content"):
            message["content"] = _cut(message["content"])
            choice["finish_reason"] = "content_filter"
            _count_completion(answer.get("usage"), count_tokens(message["content"]))
    return orjson.dumps(answer)


def _count_completion(usage: JsonObject | None, completion: int) -> None:
    if usage is not None:
        usage["completion_tokens"] = completion
        usage["total_tokens"] = usage["prompt_tokens"] + completion


def _filtered_stream(events: list[bytes], cut: bool) -> list[bytes]:
    """Azure's stream: the prompt-filter chunk first, then the chunks with their choices' filter results;
    a cut answer stops halfway with finish_reason `content_filter`."""
    prompt_results = [{"prompt_index": 0, "content_filter_results": _PROMPT_RESULTS}]
    opening = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
               "prompt_filter_results": prompt_results}  # fmt: skip
    out = [_event(opening)]
    chunks = [orjson.loads(event[len(b"data: ") :]) for event in events[:-1]]  # the last one is [DONE]
    texts = [
        i
        for i, chunk in enumerate(chunks)
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content")
    ]
    dropped = set(texts[max(1, len(texts) // 2) :]) if cut else set()
    completion = 0
    for index, chunk in enumerate(chunks):
        if index in dropped:
            continue
        for choice in chunk["choices"]:
            finished = choice["finish_reason"] is not None
            if cut and finished:
                choice["finish_reason"] = "content_filter"
            text = choice["delta"].get("content")
            if text:
                completion += count_tokens(text)
            choice["content_filter_results"] = (
                _CHOICE_RESULTS if text else _FILTERED if cut and finished else {}
            )
        if cut:
            _count_completion(chunk.get("usage"), completion)
        out.append(_event(chunk))
    return [*out, events[-1]]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mocks.azure", description="Serve a mock of Azure OpenAI."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9302)
    parser.add_argument("--api-key", default=None, help="require 'api-key: <this>'")
    args = parser.parse_args(argv)
    uvicorn.run(
        MockAzureOpenAI(api_key=args.api_key, record_requests=False),
        host=args.host,
        port=args.port,
        access_log=False,
        lifespan="off",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
