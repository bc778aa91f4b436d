"""MockBedrock's answers: the model catalog, the deterministic Converse reply with its token counts, the
ConverseStream events in AWS event-stream framing, and InvokeModel embeddings (Titan, Cohere)."""

from __future__ import annotations

import hashlib
import math
import random
import re
import string
import struct
import zlib
from typing import Any

import msgspec
import orjson

from providers.tokens import count_text, encoding

JsonObject = dict[str, Any]
TOOL_INPUT = '{"location": "Paris"}'
QUOTE_CHARS = 60
IMAGE_TOKENS = 85  # a fixed count per image: the mock does not read the picture's size
_WORDS = re.compile(r"\s*\S+|\s+")
_ID_ALPHABET = string.ascii_letters + string.digits


class ModelInfo(msgspec.Struct, frozen=True):
    id: str
    provider: str
    name: str
    kind: str = "chat"  # chat | embed
    vision: bool = True
    tools: bool = True
    max_output: int = 4096
    dimensions: int = 0  # embeddings: the default size
    legacy: bool = False  # reached its end of life: ResourceNotFoundException


_CATALOG = [
    ModelInfo("anthropic.claude-3-haiku-20240307-v1:0", "Anthropic", "Claude 3 Haiku"),
    ModelInfo("anthropic.claude-3-5-sonnet-20240620-v1:0", "Anthropic", "Claude 3.5 Sonnet", max_output=8192),
    ModelInfo("amazon.nova-lite-v1:0", "Amazon", "Nova Lite", max_output=10000),
    ModelInfo("meta.llama3-8b-instruct-v1:0", "Meta", "Llama 3 8B Instruct", vision=False, tools=False,
              max_output=2048),
    ModelInfo("anthropic.claude-instant-v1", "Anthropic", "Claude Instant", vision=False, legacy=True),
    ModelInfo("amazon.titan-embed-text-v2:0", "Amazon", "Titan Text Embeddings V2", kind="embed",
              dimensions=1024),
    ModelInfo("amazon.titan-embed-text-v1", "Amazon", "Titan Embeddings G1 - Text", kind="embed",
              dimensions=1536),
    ModelInfo("cohere.embed-english-v3", "Cohere", "Embed English", kind="embed", dimensions=1024),
    ModelInfo("cohere.embed-multilingual-v3", "Cohere", "Embed Multilingual", kind="embed", dimensions=1024),
]  # fmt: skip
MODELS = {info.id: info for info in _CATALOG}


def random_id(prefix: str, size: int) -> str:
    return prefix + "".join(random.choices(_ID_ALPHABET, k=size))


def foundation_models(region: str) -> bytes:
    """The control plane's ListFoundationModels answer."""
    summaries = [
        {
            "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{info.id}",
            "modelId": info.id,
            "modelName": info.name,
            "providerName": info.provider,
            "inputModalities": ["TEXT", "IMAGE"] if info.vision and info.kind == "chat" else ["TEXT"],
            "outputModalities": ["TEXT"] if info.kind == "chat" else ["EMBEDDING"],
            "responseStreamingSupported": info.kind == "chat",
            "customizationsSupported": [],
            "inferenceTypesSupported": ["ON_DEMAND"],
            "modelLifecycle": {"status": "LEGACY" if info.legacy else "ACTIVE"},
        }
        for info in _CATALOG
    ]
    return orjson.dumps({"modelSummaries": summaries})


# --- Converse ------------------------------------------------------------------------------------------


class Plan(msgspec.Struct, frozen=True):
    """What the model says: `text`, or a call of the tool `tool`."""

    text: str | None
    tool: str | None
    stop_reason: str
    output_tokens: int


def _block_text(block: JsonObject) -> str:
    if "text" in block:
        return str(block["text"])
    if "toolResult" in block:
        return "".join(str(c.get("text") or orjson.dumps(c.get("json")).decode()) for c in
                       block["toolResult"]["content"])  # fmt: skip
    if "toolUse" in block:
        return str(block["toolUse"]["name"]) + orjson.dumps(block["toolUse"]["input"]).decode()
    return ""


def prompt_tokens(body: JsonObject) -> int:
    """Every text of the system prompt, the messages and the tool specs; a fixed count per image."""
    total = 3 + sum(count_text(str(b.get("text", ""))) for b in body.get("system") or ())
    for message in body["messages"]:
        total += 3
        for block in message["content"]:
            total += IMAGE_TOKENS if "image" in block else count_text(_block_text(block))
    for tool in (body.get("toolConfig") or {}).get("tools") or ():
        total += count_text(orjson.dumps(tool).decode())
    return total


def _pick_tool(body: JsonObject) -> str | None:
    config = body.get("toolConfig")
    if not config:
        return None
    names = [t["toolSpec"]["name"] for t in config["tools"] if "toolSpec" in t]
    last = body["messages"][-1]
    if any("toolResult" in block for block in last["content"]):
        return None  # after a tool result the model answers it
    choice = config.get("toolChoice") or {"auto": {}}
    if "tool" in choice:
        return str(choice["tool"]["name"])
    text = "".join(_block_text(b) for b in last["content"])
    mentioned = next((name for name in names if name in text), None)
    return (mentioned or names[0]) if "any" in choice else mentioned


def plan_answer(body: JsonObject) -> Plan:
    tool = _pick_tool(body)
    if tool is not None:
        return Plan(None, tool, "tool_use", count_text(tool) + count_text(TOOL_INPUT))
    last = body["messages"][-1]
    results = [b for b in last["content"] if "toolResult" in b]
    quoted = "".join(_block_text(b) for b in (results or last["content"]))[:QUOTE_CHARS]
    text = ("Mock answer to tool result: " if results else "Mock answer to: ") + quoted
    config = body.get("inferenceConfig") or {}
    stop_reason = "end_turn"
    for stop in config.get("stopSequences") or ():
        if stop in text:
            text, stop_reason = text[: text.index(stop)], "stop_sequence"
    tokens = encoding().encode(text, disallowed_special=())
    limit = config.get("maxTokens")
    if limit is not None and len(tokens) > limit:
        return Plan(encoding().decode(tokens[:limit]), None, "max_tokens", limit)
    return Plan(text, None, stop_reason, len(tokens))


def usage_json(prompt: int, output: int, cache_read: int, cache_write: int) -> JsonObject:
    """Bedrock's counts: inputTokens leaves the cached parts out; totalTokens counts them."""
    usage: JsonObject = {"inputTokens": prompt, "outputTokens": output,
                         "totalTokens": prompt + output + cache_read + cache_write}  # fmt: skip
    if cache_read or cache_write:
        usage["cacheReadInputTokens"] = cache_read
        usage["cacheWriteInputTokens"] = cache_write
    return usage


def converse_json(plan: Plan, usage: JsonObject | None) -> bytes:
    content: list[JsonObject] = [{"text": plan.text}] if plan.text is not None else []
    if plan.tool is not None:
        tool_use = {
            "toolUseId": random_id("tooluse_", 22),
            "name": plan.tool,
            "input": orjson.loads(TOOL_INPUT),
        }
        content.append({"toolUse": tool_use})
    answer: JsonObject = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": plan.stop_reason,
        "metrics": {"latencyMs": 42},
    }
    if usage is not None:
        answer["usage"] = usage
    return orjson.dumps(answer)


# --- AWS event-stream framing ---------------------------------------------------------------------------


def frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One event-stream message: prelude (total and headers length, CRC), string headers, payload, CRC."""
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value.encode())) + value.encode()
        for name, value in headers
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, payload: JsonObject) -> bytes:
    # Bedrock pads every event with a `p` field of varying length, so sizes do not reveal the text.
    padded = {**payload, "p": _ID_ALPHABET[: 1 + len(orjson.dumps(payload)) % 30]}
    headers = [(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")]
    return frame(headers, orjson.dumps(padded))


def exception(kind: str, message: str) -> bytes:
    headers = [
        (":exception-type", kind),
        (":content-type", "application/json"),
        (":message-type", "exception"),
    ]
    return frame(headers, orjson.dumps({"message": message}))


def stream_events(plan: Plan, usage: JsonObject | None) -> list[bytes]:
    events = [event("messageStart", {"role": "assistant"})]
    if plan.tool is not None:
        start = {"toolUse": {"toolUseId": random_id("tooluse_", 22), "name": plan.tool}}
        events.append(event("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        pieces = [TOOL_INPUT[i : i + 7] for i in range(0, len(TOOL_INPUT), 7)]
        events += [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": p}}})
                   for p in pieces]  # fmt: skip
    else:
        events += [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word}})
                   for word in _WORDS.findall(plan.text or "")]  # fmt: skip
    events.append(event("contentBlockStop", {"contentBlockIndex": 0}))
    events.append(event("messageStop", {"stopReason": plan.stop_reason}))
    if usage is not None:
        events.append(event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}}))
    return events


# --- InvokeModel embeddings ------------------------------------------------------------------------------


def vector(text: str, size: int) -> list[float]:
    """A deterministic unit vector for `text`."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    values = [rng.gauss(0, 1) for _ in range(size)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def titan_json(text: str, size: int) -> tuple[bytes, int]:
    tokens = count_text(text)
    values = vector(text, size)
    return orjson.dumps({"embedding": values, "embeddingsByType": {"float": values},
                         "inputTextTokenCount": tokens}), tokens  # fmt: skip


def cohere_json(texts: list[str], size: int) -> tuple[bytes, int]:
    body = {"embeddings": [vector(t, size) for t in texts], "id": random_id("", 32),
            "response_type": "embeddings_floats", "texts": texts}  # fmt: skip
    return orjson.dumps(body), sum(count_text(t) for t in texts)
