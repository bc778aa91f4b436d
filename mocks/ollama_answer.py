"""MockOllama's answers: the deterministic reply, its token counts, and Ollama's JSON and NDJSON encodings.

The reply quotes the last user message ("Mock answer to: ..."), or calls the first offered tool the
message names with `{"location": "Paris"}`; `format` makes it a JSON object, `options.stop` cuts it and
`options.num_predict` truncates it (done_reason "length"). Tokens are counted with cl100k (close enough
for a mock) over each message's role and content plus a few template tokens, and 576 per image (a
LLaVA image's patch count).
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
import orjson

from mocks.ollama_validate import MODELS, JsonObject, ModelInfo, OllamaError
from mocks.openai_embed import vector
from mocks.openai_models import ENCODING, count_tokens, encode

TOOL_ARGUMENTS: JsonObject = {"location": "Paris"}
QUOTE_CHARS = 60
IMAGE_TOKENS = 576
_PER_MESSAGE = 4  # the chat template's markers around each message
_WORDS = re.compile(r"\s*\S+|\s+")
_NS = 1_000_000_000


class Answer(msgspec.Struct, frozen=True):
    text: str  # "" for a tool call
    tool: str | None
    done_reason: str
    tokens: int


class Usage(msgspec.Struct, frozen=True):
    prompt: int
    cached: int  # the part of `prompt` served from the KV cache (0: the field is left out)
    output: int
    omit_prompt: bool  # as Ollama before 0.12 did when the whole prompt was cached


def created_at() -> str:
    """Go's RFC 3339 with nanoseconds, as Ollama writes `created_at`."""
    now = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // _NS)) + f".{now % _NS:09d}Z"


def _text(message: JsonObject) -> str:
    return message.get("content") or ""


def prompt_tokens(messages: list[JsonObject], tools: list[Any]) -> int:
    total = 1  # the beginning-of-text token
    for message in messages:
        total += _PER_MESSAGE + count_tokens(message["role"]) + count_tokens(_text(message))
        total += IMAGE_TOKENS * len(message.get("images") or ())
        for call in message.get("tool_calls") or ():
            total += count_tokens(orjson.dumps(call.get("function") or {}).decode())
    if tools:
        total += count_tokens(orjson.dumps(tools).decode())
    return total


def _tool(body: JsonObject, messages: list[JsonObject]) -> str | None:
    """The offered tool the last message names; after a tool result the model answers it instead."""
    if not messages or messages[-1]["role"] != "user":
        return None
    names = [tool["function"].get("name") or "" for tool in body.get("tools") or () if tool.get("function")]
    return next((name for name in names if name and name in _text(messages[-1])), None)


def _cut(text: str, options: JsonObject) -> tuple[str, str, int]:
    """The text as `stop` and `num_predict` leave it, its done_reason and its token count."""
    for stop in options.get("stop") or ():
        if stop and stop in text:
            text = text[: text.index(stop)]
    tokens = encode(text)
    limit = options.get("num_predict")
    if isinstance(limit, int | float) and 0 <= limit < len(tokens):
        return ENCODING.decode(tokens[: int(limit)]), "length", int(limit)
    return text, "stop", len(tokens)


def plan(body: JsonObject, messages: list[JsonObject], prompt: str | None = None) -> Answer:
    """The answer to a chat (`messages`) or, with `prompt`, to a generate request."""
    tool = _tool(body, messages) if prompt is None else None
    if tool is not None:
        call = {"name": tool, "arguments": TOOL_ARGUMENTS}
        return Answer("", tool, "stop", count_tokens(orjson.dumps(call).decode()))
    if prompt is not None:
        quoted, images = prompt, len(body.get("images") or ())
    else:
        last = messages[-1] if messages else {"role": "user"}
        quoted, images = _text(last), len(last.get("images") or ())
    text = (
        "Mock answer to tool result: " if messages and messages[-1]["role"] == "tool" else "Mock answer to: "
    )
    text += quoted[:QUOTE_CHARS] + (f" (with {images} image{'s' if images > 1 else ''})" if images else "")
    if body.get("format") not in (None, ""):
        text = orjson.dumps({"answer": text}).decode()
    text, reason, tokens = _cut(text, body.get("options") or {})
    return Answer(text, None, reason, tokens)


def _metrics(usage: Usage) -> JsonObject:
    """Ollama's durations (nanoseconds) and counts, in its field order."""
    metrics: JsonObject = {"total_duration": 1_342_000_000, "load_duration": 21_000_000}
    if not usage.omit_prompt:
        metrics["prompt_eval_count"] = usage.prompt
        if usage.cached:
            metrics["prompt_eval_cached_count"] = min(usage.cached, usage.prompt)
        metrics["prompt_eval_duration"] = 110_000_000
    metrics["eval_count"] = usage.output
    metrics["eval_duration"] = 1_210_000_000
    return metrics


def _message(content: str, tool: str | None) -> JsonObject:
    message: JsonObject = {"role": "assistant", "content": content}
    if tool is not None:
        message["tool_calls"] = [{"function": {"name": tool, "arguments": TOOL_ARGUMENTS}}]
    return message


def chat_body(model: str, answer: Answer, usage: Usage) -> bytes:
    body: JsonObject = {
        "model": model,
        "created_at": created_at(),
        "message": _message(answer.text, answer.tool),
    }
    body |= {"done_reason": answer.done_reason, "done": True, **_metrics(usage)}
    return orjson.dumps(body)


def chat_lines(model: str, answer: Answer, usage: Usage) -> list[bytes]:
    """The NDJSON stream: a line per word (or one with the tool call), then the final line."""
    pieces = [_message(word, None) for word in _WORDS.findall(answer.text)]
    if answer.tool is not None:
        pieces.append(_message("", answer.tool))
    lines = [
        orjson.dumps({"model": model, "created_at": created_at(), "message": piece, "done": False}) + b"\n"
        for piece in pieces
    ]
    final: JsonObject = {"model": model, "created_at": created_at(), "message": _message("", None)}
    final |= {"done_reason": answer.done_reason, "done": True, **_metrics(usage)}
    return [*lines, orjson.dumps(final) + b"\n"]


def generate_body(model: str, answer: Answer, usage: Usage) -> bytes:
    body: JsonObject = {"model": model, "created_at": created_at(), "response": answer.text, "done": True}
    body |= {"done_reason": answer.done_reason, "context": encode(answer.text)[:32], **_metrics(usage)}
    return orjson.dumps(body)


def generate_lines(model: str, answer: Answer, usage: Usage) -> list[bytes]:
    lines = [
        orjson.dumps({"model": model, "created_at": created_at(), "response": word, "done": False}) + b"\n"
        for word in _WORDS.findall(answer.text)
    ]
    final: JsonObject = {"model": model, "created_at": created_at(), "response": "", "done": True}
    final |= {"done_reason": answer.done_reason, "context": encode(answer.text)[:32], **_metrics(usage)}
    return [*lines, orjson.dumps(final) + b"\n"]


def embed_body(body: JsonObject, info: ModelInfo, texts: list[str], with_usage: bool) -> bytes:
    """Unit vectors (renormalised after a `dimensions` cut, as Ollama does); inputs longer than the
    context are truncated unless `truncate` is false."""
    size = info.dimensions or 3072  # a chat model embeds with its hidden size
    dimensions = body.get("dimensions")
    if isinstance(dimensions, int) and 0 < dimensions < size:
        size = dimensions
    vectors, counted = [], 0
    for text in texts:
        tokens = encode(text)
        if len(tokens) > info.context_length:
            if body.get("truncate") is False:
                raise OllamaError(400, "the input length exceeds the context length")
            tokens = tokens[: info.context_length]
        counted += len(tokens)
        vectors.append(vector(info.name, tokens, size).tolist())
    answer: JsonObject = {"model": body["model"], "embeddings": vectors}
    answer |= {"total_duration": 14_000_000, "load_duration": 1_000_000}
    if with_usage and texts:
        answer["prompt_eval_count"] = counted
    return orjson.dumps(answer)


def _listed(info: ModelInfo) -> JsonObject:
    details = {
        "parent_model": "",
        "format": "gguf",
        "family": info.family,
        "families": [info.family],
        "parameter_size": info.parameter_size,
        "quantization_level": info.quantization,
    }
    return {
        "name": info.name,
        "model": info.name,
        "modified_at": info.modified_at,
        "size": info.size,
        "digest": info.digest,
        "details": details,
    }


TAGS = orjson.dumps({"models": [_listed(info) for info in MODELS.values()]})
