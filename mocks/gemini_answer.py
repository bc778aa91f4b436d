"""Gemini answers for the Gemini and Vertex mocks: the model catalog, the deterministic reply, its token
counts, its JSON and SSE encodings, and embeddings."""

from __future__ import annotations

import hashlib
import math
import random
import re
import string
from typing import Any

import msgspec
import orjson

from mocks.openai_models import ENCODING, count_tokens, encode

JsonObject = dict[str, Any]
TOOL_ARGS = {"location": "Paris"}
QUOTE_CHARS = 60
IMAGE_TOKENS = 258  # what Gemini counts for an image of up to 384×384 pixels
_WORDS = re.compile(r"\s*\S+|\s+")
_GENERATE = ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
_EMBED = ["embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent"]


class ModelInfo(msgspec.Struct, frozen=True):
    name: str
    display: str
    methods: list[str]
    input_limit: int
    output_limit: int
    dimensions: int = 0


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("gemini-2.5-pro", "Gemini 2.5 Pro", _GENERATE, 1048576, 65536),
        ModelInfo("gemini-2.5-flash", "Gemini 2.5 Flash", _GENERATE, 1048576, 65536),
        ModelInfo("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", _GENERATE, 1048576, 65536),
        ModelInfo("gemini-2.0-flash", "Gemini 2.0 Flash", _GENERATE, 1048576, 8192),
        ModelInfo("gemini-2.0-flash-lite", "Gemini 2.0 Flash-Lite", _GENERATE, 1048576, 8192),
        ModelInfo("gemini-embedding-001", "Gemini Embedding 001", _EMBED, 2048, 1, 3072),
        ModelInfo("text-embedding-004", "Text Embedding 004", _EMBED, 2048, 1, 768),
        ModelInfo("text-embedding-005", "Text Embedding 005", _EMBED, 2048, 1, 768),
    )
}


def model_json(info: ModelInfo) -> JsonObject:
    return {
        "name": f"models/{info.name}",
        "version": "001",
        "displayName": info.display,
        "description": f"Mock of {info.display}",
        "inputTokenLimit": info.input_limit,
        "outputTokenLimit": info.output_limit,
        "supportedGenerationMethods": info.methods,
        **({"temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2} if info.dimensions == 0 else {}),
    }


def response_id() -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=22))


class Knobs(msgspec.Struct):
    """The mock's switches that shape an answer (set by tests between requests)."""

    cached_tokens: int = 0
    thoughts_tokens: int = 0
    omit_usage: bool = False
    block_reason: str | None = None  # the prompt is blocked: no candidates, promptFeedback.blockReason
    finish_reason: str | None = None  # e.g. "SAFETY": the candidate ends so, without content


class Answer(msgspec.Struct, frozen=True):
    parts: list[JsonObject]  # one candidate's parts
    finish_reason: str
    tokens: int


# --- the reply ----------------------------------------------------------------------------------------


def _get(obj: JsonObject, camel: str) -> Any:
    snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)
    return obj.get(camel, obj.get(snake))


def _texts(content: JsonObject) -> list[str]:
    return [part["text"] for part in content.get("parts") or () if isinstance(part.get("text"), str)]


def last_user_text(contents: list[JsonObject]) -> str:
    for content in reversed(contents):
        if content.get("role", "user") == "user" and _texts(content):
            return " ".join(_texts(content))
    return ""


def _function_response(content: JsonObject) -> JsonObject | None:
    responses = (_get(part, "functionResponse") for part in content.get("parts") or ())
    return next((response for response in responses if response), None)


def _pick_tool(body: JsonObject) -> str | None:
    names = [
        declaration["name"]
        for tool in _get(body, "tools") or ()
        for declaration in _get(tool, "functionDeclarations") or ()
    ]
    calling = _get(_get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    mode = str(calling.get("mode") or "AUTO").upper()
    allowed = _get(calling, "allowedFunctionNames") or names
    if not names or mode == "NONE":
        return None
    contents = _get(body, "contents")
    if mode in ("ANY", "VALIDATED"):
        return str(allowed[0])
    if _function_response(contents[-1]) is not None:
        return None  # after a function's answer the model answers, rather than calling again
    text = last_user_text(contents)
    return next((name for name in names if name in text), None)


def plan(body: JsonObject, knobs: Knobs) -> Answer:
    if knobs.finish_reason is not None:
        return Answer([], knobs.finish_reason, 0)
    tool = _pick_tool(body)
    if tool is not None:
        call = {"functionCall": {"name": tool, "args": TOOL_ARGS}}
        return Answer([call], "STOP", count_tokens(tool + orjson.dumps(TOOL_ARGS).decode()))
    contents = _get(body, "contents")
    answered = _function_response(contents[-1])
    if answered is not None:
        text = "Mock answer to tool result: " + orjson.dumps(answered.get("response")).decode()[:QUOTE_CHARS]
    else:
        text = "Mock answer to: " + last_user_text(contents)[:QUOTE_CHARS]
    config = _get(body, "generationConfig") or {}
    if _get(config, "responseMimeType") == "application/json":
        text = orjson.dumps({"answer": text}).decode()
    tokens = encode(text)
    limit = _get(config, "maxOutputTokens")
    if limit is None or len(tokens) <= int(limit):
        return Answer([{"text": text}], "STOP", len(tokens))
    return Answer([{"text": ENCODING.decode(tokens[: int(limit)])}], "MAX_TOKENS", int(limit))


def prompt_tokens(body: JsonObject) -> int:
    """Text, function calls and answers with cl100k (close enough for a mock); images at Gemini's rate."""
    total = 0
    contents = list(_get(body, "contents") or ())
    system = _get(body, "systemInstruction")
    for content in [system, *contents] if system else contents:
        for part in content.get("parts") or ():
            if isinstance(part.get("text"), str):
                total += count_tokens(part["text"])
            elif _get(part, "inlineData") or _get(part, "fileData"):
                total += IMAGE_TOKENS
            else:
                total += count_tokens(orjson.dumps(part).decode())
    if _get(body, "tools"):
        total += count_tokens(orjson.dumps(_get(body, "tools")).decode())
    return total


def usage_metadata(prompt: int, output: int, knobs: Knobs) -> JsonObject:
    usage: JsonObject = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output + knobs.thoughts_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if knobs.cached_tokens:
        usage["cachedContentTokenCount"] = min(knobs.cached_tokens, prompt)
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage["cachedContentTokenCount"]}]
    if knobs.thoughts_tokens:
        usage["thoughtsTokenCount"] = knobs.thoughts_tokens
    return usage


def _candidate(parts: list[JsonObject], finish: str | None, index: int, n: int) -> JsonObject:
    candidate: JsonObject = {}
    if parts:
        candidate["content"] = {"parts": parts, "role": "model"}
    if finish:
        candidate["finishReason"] = finish
    if n > 1:
        candidate["index"] = index
    return candidate


def _envelope(candidates: list[JsonObject], usage: JsonObject | None, model: str, rid: str) -> JsonObject:
    answer: JsonObject = {"candidates": candidates}
    if usage is not None:
        answer["usageMetadata"] = usage
    answer["modelVersion"] = model
    answer["responseId"] = rid
    return answer


def _blocked(reason: str, usage: JsonObject | None, model: str) -> JsonObject:
    answer: JsonObject = {"promptFeedback": {"blockReason": reason}}
    if usage is not None:
        answer["usageMetadata"] = usage
    return {**answer, "modelVersion": model, "responseId": response_id()}


def generate(body: JsonObject, model: str, knobs: Knobs) -> JsonObject:
    """The `generateContent` answer."""
    prompt = prompt_tokens(body)
    n = int(_get(_get(body, "generationConfig") or {}, "candidateCount") or 1)
    if knobs.block_reason:
        return _blocked(
            knobs.block_reason, None if knobs.omit_usage else usage_metadata(prompt, 0, knobs), model
        )
    answer = plan(body, knobs)
    usage = None if knobs.omit_usage else usage_metadata(prompt, answer.tokens * n, knobs)
    candidates = [_candidate(answer.parts, answer.finish_reason, i, n) for i in range(n)]
    return _envelope(candidates, usage, model, response_id())


def stream(body: JsonObject, model: str, knobs: Knobs) -> list[JsonObject]:
    """The chunks of `streamGenerateContent`: text a word at a time, usage so far on every chunk."""
    prompt = prompt_tokens(body)
    rid = response_id()
    if knobs.block_reason:
        return [
            _blocked(
                knobs.block_reason, None if knobs.omit_usage else usage_metadata(prompt, 0, knobs), model
            )
        ]
    answer = plan(body, knobs)
    pieces: list[list[JsonObject]] = [[part] for part in answer.parts if "text" not in part]
    for part in answer.parts:
        if "text" in part:
            pieces += [[{"text": word}] for word in _WORDS.findall(part["text"])]
    pieces = pieces or [[]]
    chunks = []
    produced = 0
    for index, parts in enumerate(pieces):
        last = index == len(pieces) - 1
        produced = answer.tokens if last else produced + sum(count_tokens(p.get("text", "")) for p in parts)
        usage = None if knobs.omit_usage else usage_metadata(prompt, produced, knobs)
        finish = answer.finish_reason if last else None
        chunks.append(_envelope([_candidate(parts, finish, 0, 1)], usage, model, rid))
    return chunks


# --- embeddings ---------------------------------------------------------------------------------------


def vector(text: str, dimensions: int) -> list[float]:
    """A unit vector determined by the text."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    values = [rng.uniform(-1, 1) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]
