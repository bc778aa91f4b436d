"""MockOllama: a raw ASGI app that speaks Ollama's native API, for tests.

`/api/chat` and `/api/generate` (JSON, or NDJSON when `stream` is true or left out, as Ollama streams by
default), `/api/embed`, `/api/tags`, `/api/version` and `/`. It answers deterministically and rejects
what Ollama rejects (see ollama_validate), and exposes plain attributes that tests flip between requests.

Standalone: python -m mocks.ollama --host 127.0.0.1 --port 11434 [--api-key K]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import orjson
import uvicorn

from mocks.asgi import (
    MockApp,
    RecordedRequest,
    Reply,
)
from mocks.ollama_answer import (
    TAGS,
    Usage,
    chat_body,
    chat_lines,
    embed_body,
    generate_body,
    generate_lines,
    plan,
    prompt_tokens,
)
from mocks.ollama_validate import OllamaError, parse_body, validate_chat, validate_embed, validate_generate
from mocks.openai import Handler

VERSION = "0.12.6"
_JSON = (b"content-type", b"application/json; charset=utf-8")
_NDJSON = (b"content-type", b"application/x-ndjson")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_RUNNING = Reply(200, [_TEXT], b"Ollama is running")
_VERSION = Reply(200, [_JSON], orjson.dumps({"version": VERSION}))
_NOT_FOUND = Reply(404, [_TEXT], b"404 page not found")  # gin's own answer, for any other route


class MockOllama(MockApp):
    """Ollama's native API as an ASGI app.

    Knobs (plain attributes; tests may set them between requests): cached_tokens (reported as
    `prompt_eval_cached_count`), omit_usage (leaves `prompt_eval_count` out, as Ollama did for a cached
    prompt), chunk_delay_s, first_byte_delay_s, fail_status, fail_message, fail_retry_after.
    Observations: `requests` and `disconnects` (streams the client abandoned). `reset()` clears both
    and restores the knobs. With `api_key`, requests need `Authorization: Bearer <api_key>`, as an
    Ollama behind an authenticating proxy (or ollama.com) does.
    """

    requests: list[RecordedRequest]
    disconnects: int
    cached_tokens: int
    omit_usage: bool
    chunk_delay_s: float
    first_byte_delay_s: float
    fail_status: int | None
    fail_message: str
    fail_retry_after: str | None

    def __init__(self, api_key: str | None = None, *, record_requests: bool = True) -> None:
        self.api_key = api_key
        self.record_requests = record_requests
        self.requests = []
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/api/chat"): self._chat,
            ("POST", "/api/generate"): self._generate,
            ("POST", "/api/embed"): self._embed,
            ("GET", "/api/tags"): lambda request: Reply(200, [_JSON], TAGS),
            ("GET", "/api/version"): lambda request: _VERSION,
            ("GET", "/"): lambda request: _RUNNING,
            ("HEAD", "/"): lambda request: _RUNNING,
        }
        self.reset()

    def reset(self) -> None:
        self.requests.clear()  # in place: a request being served still appends to this list
        self.disconnects = 0
        self.cached_tokens = 0
        self.omit_usage = False
        self.chunk_delay_s = 0.0
        self.first_byte_delay_s = 0.0
        self.fail_status = None
        self.fail_message = "mock failure"
        self.fail_retry_after = None

    def _reply(self, request: RecordedRequest) -> Reply:
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            return _NOT_FOUND
        try:
            self._check_failure()
            self._check_auth(request.headers.get("authorization", ""))
            return handler(request)
        except OllamaError as error:
            return Reply(error.status, [_JSON, *error.headers], error.body())

    def _check_failure(self) -> None:
        if self.fail_status is None:
            return
        retry = self.fail_retry_after
        headers = [(b"retry-after", retry.encode("latin-1"))] if retry is not None else []
        raise OllamaError(self.fail_status, self.fail_message, headers)

    def _check_auth(self, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        if self.api_key is not None and (scheme.lower() != "bearer" or token.strip() != self.api_key):
            raise OllamaError(401, "unauthorized")

    def _usage(self, prompt: int, output: int) -> Usage:
        return Usage(prompt, self.cached_tokens, output, omit_prompt=self.omit_usage)

    def _chat(self, request: RecordedRequest) -> Reply:
        body = parse_body(request.body, "api.ChatRequest")
        _, messages = validate_chat(body)
        model = body["model"]
        if not messages:  # an empty chat only loads the model
            loaded = {"model": model, "message": {"role": "assistant", "content": ""}}
            return Reply(200, [_JSON], orjson.dumps({**loaded, "done_reason": "load", "done": True}))
        answer = plan(body, messages)
        usage = self._usage(prompt_tokens(messages, body.get("tools") or []), answer.tokens)
        if body.get("stream") is False:
            return Reply(200, [_JSON], chat_body(model, answer, usage))
        return Reply(200, [_NDJSON], events=chat_lines(model, answer, usage))

    def _generate(self, request: RecordedRequest) -> Reply:
        body = parse_body(request.body, "api.GenerateRequest")
        validate_generate(body)
        prompt: str = body.get("prompt") or ""
        messages = [{"role": "user", "content": prompt, "images": body.get("images") or []}]
        if body.get("system"):
            messages.insert(0, {"role": "system", "content": body["system"]})
        answer = plan(body, [], prompt)
        usage = self._usage(prompt_tokens(messages, []), answer.tokens)
        if body.get("stream") is False:
            return Reply(200, [_JSON], generate_body(body["model"], answer, usage))
        return Reply(200, [_NDJSON], events=generate_lines(body["model"], answer, usage))

    def _embed(self, request: RecordedRequest) -> Reply:
        body = parse_body(request.body, "api.EmbedRequest")
        info, texts = validate_embed(body)
        return Reply(200, [_JSON], embed_body(body, info, texts, with_usage=not self.omit_usage))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mocks.ollama", description="Serve a mock of Ollama's native API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <this>'")
    args = parser.parse_args(argv)
    uvicorn.run(
        MockOllama(api_key=args.api_key, record_requests=False),
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
