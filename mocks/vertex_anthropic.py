"""Claude on Vertex AI for MockVertex: `publishers/anthropic/models/{model}:rawPredict` and
`:streamRawPredict` take the Anthropic Messages body without `model` and with
`"anthropic_version": "vertex-2023-10-16"`; answers and errors are Anthropic's (MockAnthropic's code)."""

from __future__ import annotations

import orjson

from mocks.anthropic_answer import (
    ALIASES,
    MODELS,
    message_json,
    plan_answer,
    prompt_tokens,
    random_id,
    stream_events,
    usage,
)
from mocks.anthropic_validate import ApiError, invalid, parse_body, validate_messages
from mocks.asgi import Reply
from mocks.gemini import JSON

VERTEX_VERSION = "vertex-2023-10-16"
_SSE = (b"content-type", b"text/event-stream; charset=utf-8")


def raw_predict(model: str, raw: bytes, *, stream: bool, cache_read: int = 0, cache_write: int = 0) -> Reply:
    """The answer of `rawPredict` (`stream` False) or `streamRawPredict` for `model` (`name@version`)."""
    try:
        return _answer(model, raw, stream, cache_read, cache_write)
    except ApiError as error:
        return Reply(error.status, [JSON], error.body(random_id("req_vrtx_")))


def _answer(model: str, raw: bytes, stream: bool, cache_read: int, cache_write: int) -> Reply:
    body = parse_body(raw)
    if "model" in body:
        raise invalid("model: Extra inputs are not permitted")
    if body.pop("anthropic_version", None) != VERTEX_VERSION:
        raise invalid(f"anthropic_version: Input should be '{VERTEX_VERSION}'")
    base = model.partition("@")[0]
    info = MODELS.get(ALIASES.get(base, base))
    if info is None:
        raise ApiError(404, "not_found_error", f"model: {model}")
    body["model"] = info.id
    validate_messages(body, "2023-06-01")
    if stream != (body.get("stream") is True):
        raise invalid('stream: streamRawPredict needs "stream": true, and rawPredict no stream')
    answer = plan_answer(body)
    used = usage(prompt_tokens(body), answer.output_tokens, cache_read, cache_write)
    if stream:
        return Reply(200, [_SSE], events=stream_events(answer, info.id, used))
    return Reply(200, [JSON], orjson.dumps(message_json(answer, info.id, used)))
