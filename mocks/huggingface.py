"""MockHuggingFace: Hugging Face's Inference Providers router and a Text Embeddings Inference server, in one
ASGI app for tests.

- `/v1/chat/completions`, `/v1/models`: the router's OpenAI-compatible API. Bodies are validated as
  MockOpenAI validates them (the router passes OpenAI's format to the providers) and answered with the
  same deterministic text, under Hugging Face model ids, optionally with a provider suffix
  (`meta-llama/Llama-3.1-8B-Instruct:novita`). A model the router does not serve: 400 in OpenAI's shape.
- `/hf-inference/models/{model}/pipeline/feature-extraction`: the router's HF Inference embeddings
  (`{"inputs": [...]}` → one vector per input, no usage).
- `/v1/embeddings`: TEI's OpenAI-compatible embeddings (TEI serves one model, whatever `model` says).
- Errors Hugging Face's own way, `{"error": "message"}` (TEI adds `error_type`): bad token, unknown
  pipeline model, TEI validation, and the `fail_status` knob.

Knobs: MockOpenAI's (requests, reset(), cached_tokens, chunk_delay_s, first_byte_delay_s, omit_usage,
fail_status, fail_message, fail_retry_after, disconnects).

Standalone: python -m mocks.huggingface --port 9304 [--api-key K]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import uvicorn

from mocks.asgi import RecordedRequest, Reply
from mocks.openai import MockOpenAI
from mocks.openai_answer import completion_body, plan_answer, prompt_tokens, stream_events, usage
from mocks.openai_embed import vector
from mocks.openai_errors import ApiError
from mocks.openai_models import encode
from mocks.openai_validate import parse_body, validate_chat

CHAT_MODELS: dict[str, int] = {  # id → created
    "meta-llama/Llama-3.1-8B-Instruct": 1721260800,
    "Qwen/Qwen2.5-VL-7B-Instruct": 1737936000,
    "openai/gpt-oss-120b": 1754352000,
}
EMBEDDING_MODELS: dict[str, int] = {
    "BAAI/bge-small-en-v1.5": 384,
    "sentence-transformers/all-MiniLM-L6-v2": 384,
}
TEI_MODEL = "BAAI/bge-small-en-v1.5"
PROVIDERS = frozenset({"novita", "together", "fireworks-ai", "groq", "hf-inference", "nebius", "sambanova",
                       "cerebras", "fastest", "cheapest"})  # fmt: skip
_PIPELINE_PREFIX = "/hf-inference/models/"
_PIPELINE_SUFFIX = "/pipeline/feature-extraction"
_VALIDATION_MODEL = "gpt-4o-mini"  # MockOpenAI's checks are run as for this model
_JSON = (b"content-type", b"application/json")
_SSE = (b"content-type", b"text/event-stream; charset=utf-8")


class HfError(ApiError):
    """Hugging Face's string errors: `{"error": "message"}`, with TEI's `error_type` when it has one."""

    def __init__(self, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(status, message)
        self.error_type = error_type

    def body(self) -> bytes:
        body: dict[str, Any] = {"error": self.message}
        if self.error_type is not None:
            body["error_type"] = self.error_type
        return orjson.dumps(body)


def _model_json(name: str) -> dict[str, Any]:
    provider = {
        "provider": "novita",
        "status": "live",
        "supports_tools": True,
        "supports_structured_output": True,
    }
    return {"id": name, "object": "model", "created": CHAT_MODELS[name], "owned_by": name.split("/")[0],
            "providers": [provider]}  # fmt: skip


_MODEL_LIST = orjson.dumps({"object": "list", "data": [_model_json(name) for name in CHAT_MODELS]})


class MockHuggingFace(MockOpenAI):
    def _reply(self, request: RecordedRequest) -> Reply:
        try:
            self._check_failure()
            self._check_token(request.headers.get("authorization", ""))
            return self._hf_route(request)(request)
        except ApiError as error:
            return Reply(error.status, [_JSON, *error.headers], error.body())

    def _check_failure(self) -> None:
        if self.fail_status is None:
            return
        error = HfError(self.fail_status, self.fail_message)
        if self.fail_retry_after is not None:
            error.headers = [(b"retry-after", self.fail_retry_after.encode("latin-1"))]
        raise error

    def _check_token(self, authorization: str) -> None:
        if self.api_key is None:
            return
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HfError(401, "Invalid credentials in Authorization header")
        if token.strip() != self.api_key:
            raise HfError(401, "Invalid username or password.")

    def _hf_route(self, request: RecordedRequest) -> Callable[[RecordedRequest], Reply]:
        path, method = request.path, request.method
        if path == "/v1/chat/completions" and method == "POST":
            return self._router_chat
        if path == "/v1/models" and method == "GET":
            return lambda request: Reply(200, [_JSON], _MODEL_LIST)
        if path == "/v1/embeddings" and method == "POST":
            return self._tei_embeddings
        if path.startswith(_PIPELINE_PREFIX) and path.endswith(_PIPELINE_SUFFIX) and method == "POST":
            return self._feature_extraction
        raise HfError(404, "Not Found")

    # --- endpoints --------------------------------------------------------------------------------------

    def _router_chat(self, request: RecordedRequest) -> Reply:
        body = parse_body(request.body)
        name = body.get("model")
        validate_chat({**body, "model": _VALIDATION_MODEL})
        model = _served_model(name)
        answer = plan_answer(body)
        n: int = body.get("n") or 1
        stream = body.get("stream") is True
        wants_usage = not stream or bool((body.get("stream_options") or {}).get("include_usage"))
        used = None
        if wants_usage and not self.omit_usage:
            used = usage(prompt_tokens(body["messages"]), answer.tokens * n, self.cached_tokens)
        if stream:
            events = stream_events(answer, model, n, "default", used, include_usage=used is not None)
            return Reply(200, [_SSE], events=events)
        return Reply(200, [_JSON], completion_body(answer, model, n, "default", used))

    def _feature_extraction(self, request: RecordedRequest) -> Reply:
        model = request.path[len(_PIPELINE_PREFIX) : -len(_PIPELINE_SUFFIX)]
        if model not in EMBEDDING_MODELS:
            raise HfError(404, f"Model {model} does not exist")
        inputs = _inputs(_json(request.body).get("inputs"), "inputs")
        vectors = [vector(model, encode(text), EMBEDDING_MODELS[model]).tolist() for text in inputs]
        return Reply(200, [_JSON], orjson.dumps(vectors))

    def _tei_embeddings(self, request: RecordedRequest) -> Reply:
        body = _json(request.body)
        inputs = _inputs(body.get("input"), "input")
        token_lists = [encode(text) for text in inputs]
        size = EMBEDDING_MODELS[TEI_MODEL]
        dimensions = body.get("dimensions") or size
        if not isinstance(dimensions, int) or not 0 < dimensions <= size:
            raise HfError(422, f"`dimensions` must be between 1 and {size}", "Validation")
        data = [
            {
                "object": "embedding",
                "embedding": vector(TEI_MODEL, tokens, dimensions).tolist(),
                "index": index,
            }
            for index, tokens in enumerate(token_lists)
        ]
        used = sum(len(tokens) for tokens in token_lists)
        answer = {"object": "list", "data": data, "model": TEI_MODEL,
                  "usage": {"prompt_tokens": used, "total_tokens": used}}  # fmt: skip
        return Reply(200, [_JSON], orjson.dumps(answer))


def _served_model(name: Any) -> str:
    """The id the router answers under; 400 for a model or provider it does not serve."""
    model, _, provider = str(name).partition(":")
    if model not in CHAT_MODELS or (provider and provider not in PROVIDERS):
        message = f"The requested model '{name}' is not supported by any provider you have enabled."
        raise ApiError(400, message, "model", "model_not_supported")
    return model


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HfError(
            422, f"Failed to deserialize the JSON body into the target type: {exc}", "Validation"
        ) from None
    if not isinstance(body, dict):
        raise HfError(
            422, "Failed to deserialize the JSON body into the target type: expected an object", "Validation"
        )
    return body


def _inputs(value: Any, name: str) -> list[str]:
    inputs = [value] if isinstance(value, str) else value
    if (
        not isinstance(inputs, list)
        or not inputs
        or not all(isinstance(item, str) and item for item in inputs)
    ):
        raise HfError(
            422, f"`{name}` must be a non-empty string or a list of non-empty strings", "Validation"
        )
    return inputs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mocks.huggingface", description="Serve a mock of Hugging Face."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9304)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <this>'")
    args = parser.parse_args(argv)
    uvicorn.run(
        MockHuggingFace(api_key=args.api_key, record_requests=False),
        host=args.host,
        port=args.port,
        access_log=False,
        lifespan="off",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
