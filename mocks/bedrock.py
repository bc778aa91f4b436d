"""MockBedrock: a raw ASGI app that speaks Amazon Bedrock's wire format, for tests and local runs.

Runtime: `POST /model/{modelId}/converse`, `/converse-stream` (AWS event-stream frames) and `/invoke`
(Titan and Cohere text embeddings; the mock has no model-native chat bodies). Control plane:
`GET /foundation-models`. Every request must carry a valid SigV4 signature for one of the mock's
credentials (checked with botocore's signer, like AWS: 403 `InvalidSignatureException` /
`UnrecognizedClientException`); bodies are validated as Bedrock validates them (see bedrock_validate).

Knobs (plain attributes, set between requests): cache_read_tokens, cache_write_tokens, omit_usage,
chunk_delay_s, first_byte_delay_s, fail_status, fail_message, fail_retry_after, stream_exception (an
exception event, e.g. "throttlingException", sent after `stream_exception_after` events). Observations:
`requests` (every RecordedRequest, raw path included) and `disconnects`. `reset()` restores the defaults.

Standalone: python -m mocks.bedrock --port 9302 [--access-key AKID --secret-key SECRET]
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import uvicorn

from mocks.asgi import Headers, MockApp, RecordedRequest, Reply, Scope
from mocks.bedrock_answer import (
    MODELS,
    ModelInfo,
    cohere_json,
    converse_json,
    exception,
    foundation_models,
    plan_answer,
    prompt_tokens,
    random_id,
    stream_events,
    titan_json,
    usage_json,
)
from mocks.bedrock_errors import CLASS_BY_STATUS, AwsError, validation, verify_sigv4
from mocks.bedrock_validate import MALFORMED, parse_json, validate_cohere, validate_converse, validate_titan

TEST_ACCESS_KEY = "AKIDMOCKBEDROCK00001"
TEST_SECRET_KEY = "mock/bedrock/secret/key/0123456789abcdefgh"
_JSON = b"application/json"
_EVENT_STREAM = b"application/vnd.amazon.eventstream"
_INVALID_MODEL = "The provided model identifier is invalid."
_END_OF_LIFE = (
    "This model version has reached the end of its life. Please refer to the AWS documentation for more "
    "details."
)
_NOT_CHAT = (
    "This action doesn't support the model that you provided. Try again with a supported text or chat model."
)


def _headers(content_type: bytes, *extra: tuple[bytes, bytes]) -> Headers:
    return [(b"content-type", content_type), (b"x-amzn-requestid", random_id("", 32).encode()), *extra]


class MockBedrock(MockApp):
    requests: list[RecordedRequest]
    disconnects: int
    cache_read_tokens: int
    cache_write_tokens: int
    omit_usage: bool
    chunk_delay_s: float
    first_byte_delay_s: float
    fail_status: int | None
    fail_message: str
    fail_retry_after: str | None
    stream_exception: str | None
    stream_exception_after: int

    def __init__(
        self,
        credentials: Mapping[str, tuple[str, str | None]] | None = None,
        region: str = "us-east-1",
        *,
        record_requests: bool = True,
    ) -> None:
        """`credentials`: access key id → (secret key, session token or None); None accepts any caller."""
        self.credentials = credentials
        self.region = region
        self.record_requests = record_requests
        self.requests = []
        self.reset()

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects = 0
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.omit_usage = False
        self.chunk_delay_s = 0.0
        self.first_byte_delay_s = 0.0
        self.fail_status = None
        self.fail_message = "mock failure"
        self.fail_retry_after = None
        self.stream_exception = None
        self.stream_exception_after = 2

    # --- routing, auth, injected failures -----------------------------------------------------------------

    def _path(self, scope: Scope) -> str:
        # the raw path, still percent-encoded: SigV4 signs it so, and model ids carry `%3A`
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        return raw.decode("latin-1")

    def _reply(self, request: RecordedRequest) -> Reply:
        try:
            self._check_auth(request)
            self._check_failure()
            return self._route(request)
        except AwsError as error:
            extra = [(b"x-amzn-errortype", error.error_type().encode()), *error.headers]
            return Reply(error.status, _headers(_JSON, *extra), error.body())

    def _check_auth(self, request: RecordedRequest) -> None:
        if self.credentials is None:
            return
        host = request.headers.get("host", "")
        url = f"http://{host}{request.path}" + (f"?{request.query_string}" if request.query_string else "")
        verify_sigv4(self.credentials, self.region, request.method, url, request.headers, request.body)

    def _check_failure(self) -> None:
        if self.fail_status is None:
            return
        retry = self.fail_retry_after
        headers = [(b"retry-after", retry.encode("latin-1"))] if retry is not None else []
        kind = CLASS_BY_STATUS.get(self.fail_status, "InternalServerException")
        raise AwsError(self.fail_status, kind, self.fail_message, headers)

    def _route(self, request: RecordedRequest) -> Reply:
        parts = request.path.split("/")
        if request.method == "GET" and request.path == "/foundation-models":
            return Reply(200, _headers(_JSON), foundation_models(self.region))
        if request.method == "POST" and len(parts) == 4 and parts[1] == "model":
            handler = {"converse": self._converse, "converse-stream": self._converse, "invoke": self._invoke}
            if parts[3] in handler:
                info = _model(unquote(parts[2]))
                return handler[parts[3]](info, parse_json(request.body), stream=parts[3] == "converse-stream")
        raise AwsError(
            404, "UnknownOperationException", f"No operation matches {request.method} {request.path}"
        )

    # --- operations -------------------------------------------------------------------------------------

    def _converse(self, info: ModelInfo, body: Any, *, stream: bool) -> Reply:
        if info.kind != "chat":
            raise validation(_NOT_CHAT)
        validate_converse(body, info)
        plan = plan_answer(body)
        usage = None
        if not self.omit_usage:
            usage = usage_json(prompt_tokens(body), plan.output_tokens, self.cache_read_tokens,
                               self.cache_write_tokens)  # fmt: skip
        if not stream:
            return Reply(200, _headers(_JSON), converse_json(plan, usage))
        events = stream_events(plan, usage)
        if self.stream_exception is not None:
            cut = self.stream_exception_after
            events = [*events[:cut], exception(self.stream_exception, self.fail_message)]
        return Reply(200, _headers(_EVENT_STREAM), events=events)

    def _invoke(self, info: ModelInfo, body: Any, *, stream: bool) -> Reply:
        if info.kind != "embed":
            raise validation(MALFORMED)  # the mock knows no model-native chat bodies
        if info.id.startswith("amazon.titan"):
            text, dimensions = validate_titan(body, info)
            payload, tokens = titan_json(text, dimensions)
        else:
            payload, tokens = cohere_json(validate_cohere(body), info.dimensions)
        extra = [(b"x-amzn-bedrock-invocation-latency", b"21")]
        if not self.omit_usage:
            extra.append((b"x-amzn-bedrock-input-token-count", str(tokens).encode()))
        return Reply(200, _headers(_JSON, *extra), payload)


def _model(model_id: str) -> ModelInfo:
    info = MODELS.get(model_id) or MODELS.get(model_id.rpartition("foundation-model/")[2])
    if info is None:
        raise validation(_INVALID_MODEL)
    if info.legacy:
        raise AwsError(404, "ResourceNotFoundException", _END_OF_LIFE)
    return info


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mocks.bedrock", description="Serve a mock of Amazon Bedrock."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9302)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--access-key", default=TEST_ACCESS_KEY)
    parser.add_argument("--secret-key", default=TEST_SECRET_KEY)
    parser.add_argument("--no-auth", action="store_true", help="accept unsigned requests")
    args = parser.parse_args(argv)
    credentials = None if args.no_auth else {args.access_key: (args.secret_key, None)}
    app = MockBedrock(credentials, args.region, record_requests=False)
    uvicorn.run(app, host=args.host, port=args.port, http="httptools", access_log=False, lifespan="off",
                log_level="warning")  # fmt: skip


if __name__ == "__main__":
    main()
