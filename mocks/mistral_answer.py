"""MockMistral's models and answers: deterministic text or a tool call, its token counts, and Mistral's JSON
and SSE encodings (the usage always rides on the stream's last chunk, with the finish reason; a
streamed tool call comes whole, in that same last chunk; reasoning models answer with a `thinking`
chunk before the text)."""

from __future__ import annotations

import base64
import random
import string
import time
from typing import Any, Literal

import msgspec
import orjson

from mocks.openai_answer import Answer, plan_answer
from mocks.openai_embed import vector
from mocks.openai_errors import JsonObject
from mocks.openai_messages import message_text
from mocks.openai_models import count_tokens, encode

THOUGHT = "The user wants a short answer."
TOOL_ARGUMENTS = '{"location": "Paris"}'
_ID_CHARS = string.ascii_letters + string.digits
_WORD_SPLIT = " "


class MistralModel(msgspec.Struct, frozen=True):
    id: str
    kind: Literal["chat", "embedding"]
    created: int
    vision: bool = False
    reasoning: bool = False
    dimensions: int = 0
    max_dimensions: int = 0  # output_dimension's bound; 0: the model has a fixed size


MODELS: dict[str, MistralModel] = {
    model.id: model
    for model in (
        MistralModel("mistral-small-latest", "chat", 1750118400, vision=True),
        MistralModel("mistral-small-2506", "chat", 1750118400, vision=True),
        MistralModel("mistral-large-latest", "chat", 1731369600),
        MistralModel("mistral-large-2411", "chat", 1731369600),
        MistralModel("magistral-medium-latest", "chat", 1749513600, reasoning=True),
        MistralModel("mistral-embed", "embedding", 1702944000, dimensions=1024),
        MistralModel("codestral-embed", "embedding", 1748390400, dimensions=1536, max_dimensions=3072),
    )
}


def random_id(size: int) -> str:
    return "".join(random.choices(_ID_CHARS, k=size))


def model_card(model: MistralModel) -> JsonObject:
    capabilities = {
        "completion_chat": model.kind == "chat",
        "function_calling": model.kind == "chat",
        "reasoning": model.reasoning,
        "vision": model.vision,
    }
    return {"id": model.id, "object": "model", "created": model.created, "owned_by": "mistralai",
            "capabilities": capabilities, "name": model.id, "max_context_length": 131072, "aliases": [],
            "deprecation": None, "type": "base"}  # fmt: skip


# --- chat ------------------------------------------------------------------------------------------------


def plan(body: JsonObject) -> Answer:
    """OpenAI's mock plan, read through Mistral's names (`any` forces a tool as `required` does, and a
    tool or a named tool choice may leave out `type`)."""
    choice = body.get("tool_choice")
    if choice == "any":
        choice = "required"
    elif isinstance(choice, dict):
        choice = {"type": "function", **choice}
    tools = [{"type": "function", **tool} for tool in body.get("tools") or ()]
    return plan_answer({**body, "tool_choice": choice, "tools": tools})


def prompt_tokens(messages: list[JsonObject]) -> int:
    total = 0
    for message in messages:
        total += 4 + count_tokens(message_text(message))
        for call in message.get("tool_calls") or ():
            arguments = call["function"]["arguments"]
            text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
            total += count_tokens(call["function"]["name"]) + count_tokens(text)
    return total


def usage(prompt: int, completion: int, cached: int) -> JsonObject:
    used: JsonObject = {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
    }
    if cached > 0:
        used["prompt_tokens_details"] = {"cached_tokens": min(cached, prompt)}
    return used


def _tool_call(name: str) -> JsonObject:
    return {"id": random_id(9), "function": {"name": name, "arguments": TOOL_ARGUMENTS}, "index": 0}


def _content(answer: Answer, model: MistralModel) -> Any:
    if not model.reasoning:
        return answer.text
    thinking = {"type": "thinking", "thinking": [{"type": "text", "text": THOUGHT}]}
    return [thinking, {"type": "text", "text": answer.text}]


def completion_tokens(answer: Answer, model: MistralModel) -> int:
    return answer.tokens + (count_tokens(THOUGHT) if model.reasoning and answer.tool is None else 0)


def completion_body(answer: Answer, model: MistralModel, n: int, used: JsonObject | None) -> bytes:
    choices = []
    for index in range(n):
        message: JsonObject = {"role": "assistant", "tool_calls": None, "prefix": False}
        if answer.tool is None:
            message["content"] = _content(answer, model)
        else:
            message["content"] = ""
            message["tool_calls"] = [_tool_call(answer.tool)]
        choices.append({"index": index, "message": message, "finish_reason": answer.finish_reason})
    body = {"id": random_id(32).lower(), "object": "chat.completion", "created": int(time.time()),
            "model": model.id, "choices": choices}  # fmt: skip
    if used is not None:
        body["usage"] = used
    return orjson.dumps(body)


def _words(text: str) -> list[str]:
    """Pieces that concatenate back to `text`, each word with the space before it."""
    words = text.split(_WORD_SPLIT)
    return [words[0]] + [_WORD_SPLIT + word for word in words[1:]]


def stream_events(answer: Answer, model: MistralModel, used: JsonObject | None) -> list[bytes]:
    head = {"id": random_id(32).lower(), "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model.id}  # fmt: skip

    def chunk(delta: JsonObject, finish: str | None = None, last: bool = False) -> bytes:
        data: JsonObject = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if last and used is not None:
            data["usage"] = used
        return b"data: " + orjson.dumps(data) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    if answer.tool is not None:
        events.append(chunk({"tool_calls": [_tool_call(answer.tool)]}, answer.finish_reason, last=True))
        return [*events, b"data: [DONE]\n\n"]
    if model.reasoning:
        events.append(
            chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": THOUGHT}]}]})
        )
    events += [chunk({"content": piece}) for piece in _words(answer.text or "")]
    events.append(chunk({"content": ""}, answer.finish_reason, last=True))
    return [*events, b"data: [DONE]\n\n"]


# --- embeddings ------------------------------------------------------------------------------------------


def embeddings_body(model: MistralModel, inputs: list[str], dimensions: int, encoding_format: str) -> bytes:
    token_lists = [encode(text) for text in inputs]
    data = []
    for index, tokens in enumerate(token_lists):
        values = vector(model.id, tokens, dimensions)
        embedding: Any = values.tolist()
        if encoding_format == "base64":
            embedding = base64.b64encode(values.tobytes()).decode("ascii")
        data.append({"object": "embedding", "embedding": embedding, "index": index})
    used = sum(len(tokens) for tokens in token_lists)
    body = {"id": "embd-" + random_id(32).lower(), "object": "list", "data": data, "model": model.id,
            "usage": {"prompt_tokens": used, "total_tokens": used, "completion_tokens": 0}}  # fmt: skip
    return orjson.dumps(body)
