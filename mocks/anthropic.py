"""MockAnthropic: a raw ASGI app that speaks Anthropic's Messages API wire format, for tests.

It answers deterministically, rejects what the real API rejects (see anthropic_validate), and has the
same test knobs as MockOpenAI where they apply, plus prompt-cache counts and a mid-stream error.

Standalone: python -m mocks.anthropic --host 127.0.0.1 --port 9302 [--api-key K]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import orjson
import uvicorn

from mocks.anthropic_answer import (
    ALIASES,
    MODELS,
    ModelInfo,
    message_json,
    model_json,
    plan_answer,
    prompt_tokens,
    random_id,
    stream_events,
    usage,
)
from mocks.anthropic_validate import ApiError, check_version, invalid, parse_body, validate_messages
from mocks.asgi import (
    MockApp,
    RecordedRequest,
    Reply,
)

_JSON = (b"content-type", b"application/json")
_SSE = (b"content-type", b"text/event-stream; charset=utf-8")
_MODELS_PREFIX = "/v1/models/"
# The error type the API answers each status with.
_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

Handler = Callable[[RecordedRequest], Reply]


class MockAnthropic(MockApp):
    """Anthropic's /v1/messages (stream or not), /v1/messages/count_tokens and /v1/models as an ASGI app.

    Knobs (plain attributes, set between requests): cache_read_tokens, cache_write_tokens (reported in
    usage as the API does: outside `input_tokens`), chunk_delay_s, first_byte_delay_s, fail_status,
    fail_message, fail_retry_after, stream_error (an error type: the stream is cut by an `error` event).
    Observations: `requests`, `disconnects`. `reset()` clears them and restores the defaults.
    """

    requests: list[RecordedRequest]
    disconnects: int
    cache_read_tokens: int
    cache_write_tokens: int
    chunk_delay_s: float
    first_byte_delay_s: float
    fail_status: int | None
    fail_message: str
    fail_retry_after: str | None
    stream_error: str | None

    def __init__(self, api_key: str | None = None, *, record_requests: bool = True) -> None:
        self.api_key = api_key
        self.record_requests = record_requests
        self.requests = []
        self._routes: dict[str, tuple[str, Handler]] = {
            "/v1/messages": ("POST", self._messages),
            "/v1/messages/count_tokens": ("POST", self._count_tokens),
            "/v1/models": ("GET", self._models),
        }
        self.reset()

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects = 0
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.chunk_delay_s = 0.0
        self.first_byte_delay_s = 0.0
        self.fail_status = None
        self.fail_message = "mock failure"
        self.fail_retry_after = None
        self.stream_error = None

    # --- routing, auth, injected failures -------------------------------------------------------------

    def _reply(self, request: RecordedRequest) -> Reply:
        request_id = random_id("req_")
        headers = [(b"request-id", request_id.encode()), (b"anthropic-organization-id", b"org-mock")]
        try:
            self._check_failure()
            self._check_auth(request.headers)
            reply = self._route(request.method, request.path)(request)
            return Reply(reply.status, [*reply.headers, *headers], reply.body, reply.events)
        except ApiError as error:
            status_headers = [_JSON, *headers, *error.headers]
            return Reply(error.status, status_headers, error.body(request_id))

    def _check_failure(self) -> None:
        status = self.fail_status
        if status is None:
            return
        retry = self.fail_retry_after
        headers = [(b"retry-after", retry.encode("latin-1"))] if retry is not None else []
        kind = _KINDS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        raise ApiError(status, kind, self.fail_message, headers)

    def _check_auth(self, headers: dict[str, str]) -> None:
        """`x-api-key`, else a Bearer token (SDK 2.x sends the key so); with both, x-api-key counts."""
        if self.api_key is None:
            return
        key = headers.get("x-api-key")
        if key is None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        if key is None:
            raise ApiError(401, "authentication_error", "x-api-key header is required")
        if key != self.api_key:
            raise ApiError(401, "authentication_error", "invalid x-api-key")

    def _route(self, method: str, path: str) -> Handler:
        route = self._routes.get(path)
        if route is None and path.startswith(_MODELS_PREFIX) and len(path) > len(_MODELS_PREFIX):
            route = ("GET", self._model)
        if route is None:
            raise ApiError(404, "not_found_error", "Not Found")
        allowed, handler = route
        if method != allowed:
            raise ApiError(405, "invalid_request_error", f"Method Not Allowed ({method} {path})")
        return handler

    # --- endpoints --------------------------------------------------------------------------------------

    def _messages(self, request: RecordedRequest) -> Reply:
        version = check_version(request.headers.get("anthropic-version"))
        body = parse_body(request.body)
        validate_messages(body, version)
        info = _model(body["model"])
        if body["max_tokens"] > info.max_tokens:
            raise invalid(
                f"max_tokens: {body['max_tokens']} > {info.max_tokens}, which is the maximum allowed "
                f"number of output tokens for {info.id}"
            )
        answer = plan_answer(body)
        used = usage(
            prompt_tokens(body), answer.output_tokens, self.cache_read_tokens, self.cache_write_tokens
        )
        if body.get("stream") is True:
            return Reply(200, [_SSE], events=stream_events(answer, info.id, used, self.stream_error))
        return Reply(200, [_JSON], orjson.dumps(message_json(answer, info.id, used)))

    def _count_tokens(self, request: RecordedRequest) -> Reply:
        version = check_version(request.headers.get("anthropic-version"))
        body = parse_body(request.body)
        validate_messages(body, version, count_only=True)
        _model(body["model"])
        return Reply(200, [_JSON], orjson.dumps({"input_tokens": prompt_tokens(body)}))

    def _models(self, request: RecordedRequest) -> Reply:
        check_version(request.headers.get("anthropic-version"))
        data = [model_json(info) for info in MODELS.values()]
        page = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        return Reply(200, [_JSON], orjson.dumps(page))

    def _model(self, request: RecordedRequest) -> Reply:
        check_version(request.headers.get("anthropic-version"))
        return Reply(200, [_JSON], orjson.dumps(model_json(_model(request.path[len(_MODELS_PREFIX) :]))))


def _model(name: str) -> ModelInfo:
    info = MODELS.get(ALIASES.get(name, name))
    if info is None:
        raise ApiError(404, "not_found_error", f"model: {name}")
    return info


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mocks.anthropic", description="Serve a mock of Anthropic's Messages API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9302)
    parser.add_argument(
        "--api-key", default=None, help="require this key in x-api-key (or as a Bearer token)"
    )
    args = parser.parse_args(argv)
    uvicorn.run(
        MockAnthropic(api_key=args.api_key, record_requests=False),
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
