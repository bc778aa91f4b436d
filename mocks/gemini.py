"""MockGemini: a raw ASGI app that speaks the Gemini API (generativelanguage.googleapis.com), for tests.

`/v1beta/` and `/v1/` models, `generateContent`, `streamGenerateContent` (`alt=sse`, else a streamed JSON
array), `batchEmbedContents` and `embedContent`, with the API key in `x-goog-api-key` or `?key=`. It
answers deterministically and rejects what the real API rejects (mocks/gemini_validate.py). MockVertex
(mocks/vertex.py) extends it with Vertex AI's paths and OAuth.

Standalone: python -m mocks.gemini --host 127.0.0.1 --port 9302 [--api-key K]
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
import uvicorn

from mocks import gemini_answer as answers
from mocks.asgi import MockApp, RecordedRequest, Reply, Scope
from mocks.gemini_errors import GoogleError, failure, key_invalid, key_missing
from mocks.gemini_validate import check_batch_embed, check_generate, parse

JsonObject = dict[str, Any]

JSON = (b"content-type", b"application/json; charset=UTF-8")
SSE = (b"content-type", b"text/event-stream")
_PATH = re.compile(r"^/(v1|v1beta)/models(?:/([^:/]+)(?::([A-Za-z]+))?)?$")


def sse_events(chunks: list[JsonObject]) -> list[bytes]:
    # The API ends each event with CRLF CRLF.
    return [b"data: " + orjson.dumps(chunk) + b"\r\n\r\n" for chunk in chunks]


def json_array_events(chunks: list[JsonObject]) -> list[bytes]:
    """`streamGenerateContent` without `alt=sse`: one JSON array, sent element by element."""
    pieces = [orjson.dumps(chunk) for chunk in chunks]
    return [b"[" + pieces[0], *(b",\r\n" + piece for piece in pieces[1:]), b"]"]


class MockGemini(MockApp):
    """The Gemini API as an ASGI app.

    Knobs (plain attributes; tests set them between requests): cached_tokens, thoughts_tokens,
    omit_usage, block_reason, finish_reason, input_token_limit, chunk_delay_s, first_byte_delay_s,
    fail_status, fail_message, fail_retry_after (a RetryInfo `retryDelay` such as "30s", as the API sends
    it), fail_retry_header (a Retry-After header, which the API does not send). Observations: `requests`,
    `disconnects`. `reset()` clears both and restores the defaults.
    """

    namespace = "google.ai.generativelanguage.v1beta"
    requests: list[RecordedRequest]
    disconnects: int
    cached_tokens: int
    thoughts_tokens: int
    omit_usage: bool
    block_reason: str | None
    finish_reason: str | None
    input_token_limit: int | None
    chunk_delay_s: float
    first_byte_delay_s: float
    fail_status: int | None
    fail_message: str | None
    fail_retry_after: str | None
    fail_retry_header: str | None

    def __init__(self, api_key: str | None = None, *, record_requests: bool = True) -> None:
        self.api_key = api_key
        self.record_requests = record_requests
        self.requests = []
        self.reset()

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects = 0
        self.cached_tokens = 0
        self.thoughts_tokens = 0
        self.omit_usage = False
        self.block_reason = None
        self.finish_reason = None
        self.input_token_limit = None
        self.chunk_delay_s = 0.0
        self.first_byte_delay_s = 0.0
        self.fail_status = None
        self.fail_message = None
        self.fail_retry_after = None
        self.fail_retry_header = None

    def _knobs(self) -> answers.Knobs:
        return answers.Knobs(
            self.cached_tokens, self.thoughts_tokens, self.omit_usage, self.block_reason, self.finish_reason
        )

    def _path(self, scope: Scope) -> str:
        # route on the path as sent, decoded once: model names carry `:` (`:generateContent`)
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        return unquote(raw.decode("latin-1"))

    def _reply(self, request: RecordedRequest) -> Reply:
        try:
            self._check_failure()
            self._authorize(request)
            return self._route(request)
        except GoogleError as error:
            return Reply(error.code, [JSON, *error.headers], error.body())

    def _check_failure(self) -> None:
        if self.fail_status is None:
            return
        error = failure(self.fail_status, self.fail_message, self.fail_retry_after)
        if self.fail_retry_header is not None:
            error.headers = [(b"retry-after", self.fail_retry_header.encode("latin-1"))]
        raise error

    def _authorize(self, request: RecordedRequest) -> None:
        if self.api_key is None:
            return
        key = request.headers.get("x-goog-api-key") or dict(parse_qsl(request.query_string)).get("key")
        if not key:
            raise key_missing()
        if key != self.api_key:
            raise key_invalid()

    # --- routing ----------------------------------------------------------------------------------------

    def _route(self, request: RecordedRequest) -> Reply:
        match = _PATH.match(request.path)
        if match is None:
            raise GoogleError(404, f"Method not found: {request.method} {request.path}")
        version, model, method = match.groups()
        if model is None:
            return self._expect(request, "GET", lambda: self._list())
        if method is None:
            return self._expect(request, "GET", lambda: self._model(model, version))
        return self._expect(request, "POST", lambda: self.call(request, version, model, method))

    @staticmethod
    def _expect(request: RecordedRequest, method: str, handler: Callable[[], Reply]) -> Reply:
        if request.method != method:
            raise GoogleError(404, f"Method not found: {request.method} {request.path}")
        return handler()

    def _list(self) -> Reply:
        body = {"models": [answers.model_json(info) for info in answers.MODELS.values()]}
        return Reply(200, [JSON], orjson.dumps(body))

    def _model(self, model: str, version: str) -> Reply:
        info = answers.MODELS.get(model)
        if info is None:
            raise GoogleError(404, f"models/{model} is not found for API version {version}")
        return Reply(200, [JSON], orjson.dumps(answers.model_json(info)))

    def call(self, request: RecordedRequest, version: str, model: str, method: str) -> Reply:
        """One model method: `generateContent`, `streamGenerateContent`, `batchEmbedContents`, …"""
        info = answers.MODELS.get(model)
        wanted = "embedContent" if method == "batchEmbedContents" else method.replace("stream", "").lower()
        if info is None or not any(m.lower() == wanted.lower() for m in info.methods):
            raise GoogleError(
                404,
                f"models/{model} is not found for API version {version}, or is not supported for {method}. "
                "Call ListModels to see the list of available models and their supported methods.",
            )
        body = parse(request.body)
        if method in ("generateContent", "streamGenerateContent"):
            return self.generate(request, body, info, stream=method == "streamGenerateContent")
        if method == "batchEmbedContents":
            return self._batch_embed(body, info)
        if method == "embedContent":
            return self._embed(body, info)
        if method == "countTokens":
            inner = body.get("generateContentRequest") or body
            return Reply(200, [JSON], orjson.dumps({"totalTokens": answers.prompt_tokens(inner)}))
        raise GoogleError(404, f"Method not found: {request.method} {request.path}")

    def generate(
        self, request: RecordedRequest, body: JsonObject, info: answers.ModelInfo, *, stream: bool
    ) -> Reply:
        check_generate(body, self.namespace, role_required=self.namespace.startswith("google.cloud"))
        prompt = answers.prompt_tokens(body)
        limit = self.input_token_limit or info.input_limit
        if prompt > limit:
            raise GoogleError(
                400,
                f"The input token count ({prompt}) exceeds the maximum number of tokens allowed ({limit}).",
            )
        if not stream:
            return Reply(200, [JSON], orjson.dumps(answers.generate(body, info.name, self._knobs())))
        chunks = answers.stream(body, info.name, self._knobs())
        if "alt=sse" in request.query_string:
            return Reply(200, [SSE], events=sse_events(chunks))
        return Reply(200, [JSON], events=json_array_events(chunks))

    def _batch_embed(self, body: JsonObject, info: answers.ModelInfo) -> Reply:
        embeddings = [
            {"values": self._vector(request, info)}
            for request in check_batch_embed(body, info.name, self.namespace)
        ]
        return Reply(200, [JSON], orjson.dumps({"embeddings": embeddings}))

    def _embed(self, body: JsonObject, info: answers.ModelInfo) -> Reply:
        wrapped = {"requests": [{**body, "model": f"models/{info.name}"}]}
        request = check_batch_embed(wrapped, info.name, self.namespace)[0]
        return Reply(200, [JSON], orjson.dumps({"embedding": {"values": self._vector(request, info)}}))

    @staticmethod
    def _vector(request: JsonObject, info: answers.ModelInfo) -> list[float]:
        text = " ".join(p.get("text", "") for p in request["content"]["parts"])
        dimensions = int(request.get("outputDimensionality") or info.dimensions)
        if not 1 <= dimensions <= info.dimensions:
            raise GoogleError(
                400, f"* EmbedContentRequest.output_dimensionality: must be in [1, {info.dimensions}].\n"
            )
        return answers.vector(text, dimensions)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mocks.gemini", description="Serve a mock of the Gemini API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9302)
    parser.add_argument("--api-key", default=None, help="require this key in x-goog-api-key or ?key=")
    args = parser.parse_args(argv)
    app = MockGemini(api_key=args.api_key, record_requests=False)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        http="httptools",
        access_log=False,
        lifespan="off",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
