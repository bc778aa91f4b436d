"""MockMistral: Mistral's /v1 chat completions, embeddings and models, as an ASGI app for tests.

It speaks Mistral's wire format (mocks/mistral_answer.py), rejects what Mistral rejects with Mistral's
errors (mocks/mistral_validate.py: 422 for the body's shape, unknown fields included; 400 for the rules
across fields), and reuses MockOpenAI's serving, recording and knobs: requests, reset(), cached_tokens,
chunk_delay_s, first_byte_delay_s, omit_usage, fail_status, fail_message, fail_retry_after, disconnects.

Standalone: python -m mocks.mistral --port 9303 [--api-key K]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import orjson
import uvicorn

from mocks.asgi import RecordedRequest, Reply
from mocks.mistral_answer import (
    MODELS,
    MistralModel,
    completion_body,
    completion_tokens,
    embeddings_body,
    model_card,
    plan,
    prompt_tokens,
    random_id,
    stream_events,
    usage,
)
from mocks.mistral_validate import CHAT, EMBEDDINGS, MistralError, Unprocessable, check_conversation, validate
from mocks.openai import MockOpenAI
from mocks.openai_errors import JsonObject

_JSON = (b"content-type", b"application/json")
_SSE = (b"content-type", b"text/event-stream; charset=utf-8")
_MODEL_LIST = orjson.dumps({"object": "list", "data": [model_card(model) for model in MODELS.values()]})
_FAILURE_TYPES = {429: ("rate_limited", "1300"), 500: ("internal_error", "1000")}


class Detail(Exception):
    """FastAPI's own errors: `{"detail": "Not Found"}` and the like."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail

    def body(self) -> bytes:
        return orjson.dumps({"detail": self.detail})


def _headers(kind: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [kind, (b"mistral-correlation-id", random_id(32).lower().encode())]


class MockMistral(MockOpenAI):
    def __init__(self, api_key: str | None = None, *, record_requests: bool = True) -> None:
        super().__init__(api_key, record_requests=record_requests)
        self._endpoints: dict[str, tuple[str, Callable[[RecordedRequest], Reply]]] = {
            "/v1/chat/completions": ("POST", self._mistral_chat),
            "/v1/embeddings": ("POST", self._mistral_embeddings),
            "/v1/models": ("GET", lambda request: Reply(200, _headers(_JSON), _MODEL_LIST)),
        }

    def _reply(self, request: RecordedRequest) -> Reply:
        try:
            self._check_failure()
            self._check_bearer(request.headers.get("authorization", ""))
            method, handler = self._endpoints.get(request.path) or ("", None)
            if handler is None:
                raise Detail(404, "Not Found")
            if request.method != method:
                raise Detail(405, "Method Not Allowed")
            return handler(request)
        except (MistralError, Unprocessable, Detail) as error:
            status = error.status if not isinstance(error, Unprocessable) else 422
            extra = error.headers if isinstance(error, MistralError) else []
            return Reply(status, [*_headers(_JSON), *extra], error.body())

    def _check_failure(self) -> None:
        status = self.fail_status
        if status is None:
            return
        kind, code = _FAILURE_TYPES.get(status, ("invalid_request_error", None))
        error = MistralError(status, self.fail_message, kind, code)
        if self.fail_retry_after is not None:
            error.headers = [(b"retry-after", self.fail_retry_after.encode("latin-1"))]
        raise error

    def _check_bearer(self, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        if self.api_key is not None and (scheme.lower() != "bearer" or token.strip() != self.api_key):
            raise Detail(401, "Unauthorized")

    # --- endpoints ----------------------------------------------------------------------------------------

    def _mistral_chat(self, request: RecordedRequest) -> Reply:
        body = _json(request.body)
        validate(CHAT, body)
        model = _model(body["model"], "chat")
        check_conversation(body["messages"])
        answer = plan(body)
        n: int = body.get("n") or 1
        used = None
        if not self.omit_usage:
            prompt = prompt_tokens(body["messages"])
            used = usage(prompt, completion_tokens(answer, model) * n, self.cached_tokens)
        if body.get("stream") is True:
            return Reply(200, _headers(_SSE), events=stream_events(answer, model, used))
        return Reply(200, _headers(_JSON), completion_body(answer, model, n, used))

    def _mistral_embeddings(self, request: RecordedRequest) -> Reply:
        body = _json(request.body)
        validate(EMBEDDINGS, body)
        model = _model(body["model"], "embedding")
        inputs: list[str] = [body["input"]] if isinstance(body["input"], str) else body["input"]
        if not inputs:
            raise MistralError(400, "Input must not be empty")
        dimensions = body.get("output_dimension")
        if dimensions is not None and not model.max_dimensions:
            raise MistralError(400, f"Model {model.id} does not support output_dimension")
        if dimensions is not None and dimensions > model.max_dimensions:
            message = f"output_dimension must be at most {model.max_dimensions} for model {model.id}"
            raise MistralError(400, message)
        encoding = body.get("encoding_format") or "float"
        payload = embeddings_body(model, inputs, dimensions or model.dimensions, encoding)
        return Reply(200, _headers(_JSON), payload)


def _json(raw: bytes) -> JsonObject:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ["body", exc.pos], "msg": "JSON decode error", "input": {},
                 "ctx": {"error": exc.msg}}  # fmt: skip
        raise Unprocessable([error]) from None
    if not isinstance(body, dict):
        message = "Input should be a valid dictionary or object to extract fields from"
        error = {"type": "model_attributes_type", "loc": ["body"], "msg": message, "input": body}
        raise Unprocessable([error])
    return body


def _model(name: str, kind: str) -> MistralModel:
    model = MODELS.get(name)
    if model is None:
        raise MistralError(400, f"Invalid model: {name}", "invalid_model", "1500")
    if model.kind != kind:
        operation = "chat completions" if kind == "chat" else "embeddings"
        raise MistralError(400, f"Model {name} does not support {operation}", "invalid_model", "1500")
    return model


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mocks.mistral", description="Serve a mock of Mistral's API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9303)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <this>'")
    args = parser.parse_args(argv)
    uvicorn.run(
        MockMistral(api_key=args.api_key, record_requests=False),
        host=args.host,
        port=args.port,
        access_log=False,
        lifespan="off",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
