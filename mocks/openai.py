"""MockOpenAI: a raw ASGI app that speaks OpenAI's wire format, for tests and as a benchmark upstream.

It answers deterministically, rejects what the real API rejects (see openai_validate), and exposes
plain attributes that tests flip between requests to inject latency, failures and missing usage.

Standalone: python -m mocks.openai --host 127.0.0.1 --port 9301 [--api-key K]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import uvicorn

from mocks.asgi import (
    Headers,
    MockApp,
    RecordedRequest,
    Reply,
)
from mocks.openai_answer import (
    completion_body,
    plan_answer,
    prompt_tokens,
    random_id,
    service_tier,
    stream_events,
    usage,
)
from mocks.openai_embed import embeddings_body
from mocks.openai_errors import ApiError, model_not_found
from mocks.openai_models import MODELS
from mocks.openai_validate import parse_body, validate_chat, validate_embeddings

_JSON = (b"content-type", b"application/json")
_SSE = (b"content-type", b"text/event-stream; charset=utf-8")
_KEY_URL = "https://platform.openai.com/account/api-keys"
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username and password. You can "
    f"obtain an API key from {_KEY_URL}."
)
_MODELS_PREFIX = "/v1/models/"


def _model_json(name: str) -> dict[str, Any]:
    info = MODELS[name]
    return {"id": info.id, "object": "model", "created": info.created, "owned_by": info.owned_by}


# The catalog never changes, so its answers are encoded once.
_MODEL_LIST = orjson.dumps({"object": "list", "data": [_model_json(name) for name in MODELS]})
_MODEL_BODIES = {name: orjson.dumps(_model_json(name)) for name in MODELS}


Handler = Callable[[RecordedRequest], Reply]


def _headers(kind: tuple[bytes, bytes]) -> Headers:
    return [kind, (b"x-request-id", random_id("req_", 32).encode())]


def _mask(key: str) -> str:
    """How OpenAI echoes a wrong key: first 5 and last 4 characters."""
    if len(key) <= 9:
        return "*" * len(key)
    return key[:5] + "*" * (len(key) - 9) + key[-4:]


class MockOpenAI(MockApp):
    """OpenAI's /v1 chat completions, embeddings and models, as an ASGI app.

    Knobs (plain attributes; tests may set them from another thread between requests):
    cached_tokens, chunk_delay_s, first_byte_delay_s, omit_usage, fail_status, fail_message, fail_code,
    fail_retry_after, fail_times (fail only the next N requests; None: all), break_after_events (a
    stream's connection drops after that many events).
    Observations: `requests` (every RecordedRequest) and `disconnects`
    (streams the client abandoned). `reset()` clears both and restores the knobs' defaults.
    `record_requests=False` keeps `requests` empty, for long benchmark runs.
    """

    requests: list[RecordedRequest]
    disconnects: int
    cached_tokens: int
    chunk_delay_s: float
    first_byte_delay_s: float
    omit_usage: bool
    fail_status: int | None
    fail_message: str
    fail_retry_after: str | None
    fail_code: str | None
    fail_times: int | None
    break_after_events: int | None

    def __init__(self, api_key: str | None = None, *, record_requests: bool = True) -> None:
        self.api_key = api_key
        # A long benchmark run would otherwise keep every request body it ever received.
        self.record_requests = record_requests
        self.requests = []
        self._routes: dict[str, tuple[str, Handler]] = {
            "/v1/chat/completions": ("POST", self._chat),
            "/v1/embeddings": ("POST", self._embeddings),
            "/v1/models": ("GET", self._models),
        }
        self.reset()

    def reset(self) -> None:
        self.requests.clear()  # in place: a request being served still appends to this list
        self.disconnects = 0
        self.cached_tokens = 0
        self.chunk_delay_s = 0.0
        self.first_byte_delay_s = 0.0
        self.omit_usage = False
        self.fail_status = None
        self.fail_message = "mock failure"
        self.fail_retry_after = None
        self.fail_code = None
        self.fail_times = None
        self.break_after_events = None

    # --- routing, auth, injected failures -------------------------------------------------------------

    def _reply(self, request: RecordedRequest) -> Reply:
        try:
            self._check_failure()
            self._check_auth(request.headers.get("authorization", ""))
            return self._route(request.method, request.path)(request)
        except ApiError as error:
            return Reply(error.status, [*_headers(_JSON), *error.headers], error.body())

    def _check_failure(self) -> None:
        status = self.fail_status
        if status is None or self.fail_times == 0:
            return
        if self.fail_times is not None:
            self.fail_times -= 1
        kind, code = "invalid_request_error", self.fail_code
        if status == 429:
            kind, code = "requests", "rate_limit_exceeded"
        elif status >= 500:
            kind = "server_error"
        retry = self.fail_retry_after
        headers = [(b"retry-after", retry.encode("latin-1"))] if retry is not None else []
        raise ApiError(status, self.fail_message, None, code, kind, headers)

    def _check_auth(self, authorization: str) -> None:
        if self.api_key is None:
            return
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, _NO_KEY)
        if token != self.api_key:
            message = f"Incorrect API key provided: {_mask(token)}. You can find your API key at {_KEY_URL}."
            raise ApiError(401, message, None, "invalid_api_key")

    def _route(self, method: str, path: str) -> Handler:
        route = self._routes.get(path)
        if route is None and path.startswith(_MODELS_PREFIX) and len(path) > len(_MODELS_PREFIX):
            route = ("GET", self._model)
        if route is None:
            raise ApiError(404, f"Invalid URL ({method} {path})")
        allowed, handler = route
        if method != allowed:
            raise ApiError(
                405, f"Invalid method for URL ({method} {path})", headers=[(b"allow", allowed.encode())]
            )
        return handler

    # --- endpoints --------------------------------------------------------------------------------------

    def _chat(self, request: RecordedRequest) -> Reply:
        body = parse_body(request.body)
        info = validate_chat(body)
        answer = plan_answer(body)
        n: int = body.get("n") or 1
        tier = service_tier(body)
        stream = body.get("stream") is True
        wants_usage = not stream or bool((body.get("stream_options") or {}).get("include_usage"))
        used = None
        if wants_usage and not self.omit_usage:
            used = usage(prompt_tokens(body["messages"]), answer.tokens * n, self.cached_tokens)
        if stream:
            events = stream_events(answer, info.snapshot, n, tier, used, include_usage=used is not None)
            return Reply(200, _headers(_SSE), events=events)
        return Reply(200, _headers(_JSON), completion_body(answer, info.snapshot, n, tier, used))

    def _embeddings(self, request: RecordedRequest) -> Reply:
        body = parse_body(request.body)
        info, inputs, dimensions = validate_embeddings(body)
        encoding_format = body.get("encoding_format") or "float"
        payload = embeddings_body(info, inputs, dimensions, encoding_format, with_usage=not self.omit_usage)
        return Reply(200, _headers(_JSON), payload)

    def _models(self, request: RecordedRequest) -> Reply:
        return Reply(200, _headers(_JSON), _MODEL_LIST)

    def _model(self, request: RecordedRequest) -> Reply:
        name = request.path[len(_MODELS_PREFIX) :]
        body = _MODEL_BODIES.get(name)
        if body is None:
            raise model_not_found(name)
        return Reply(200, _headers(_JSON), body)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mocks.openai", description="Serve a mock of OpenAI's API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9301)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <this>'")
    args = parser.parse_args(argv)
    uvicorn.run(
        MockOpenAI(api_key=args.api_key, record_requests=False),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        lifespan="off",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
