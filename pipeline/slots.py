"""Where the texts are in the JSON bodies of every vendor format the gateway proxies.

A slot is a `(container, key)` pair such that `container[key]` is a str: a filter reads the text and may
assign a new one in place. Requests: `request_texts`. Answers and streamed events: `answer_slots`, whose
first item names the text's channel (a choice, a candidate, a content block), so a stream's pieces can be
put back together per channel; `answer_texts` is the same without the channel.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

Slot = tuple[Any, Any]  # (container, key): container[key] is a str
ChannelSlot = tuple[Hashable, Any, Any]  # (channel, container, key)


def request_texts(doc: Any) -> Iterator[Slot]:
    """The prompt texts of a request body: OpenAI chat, completions and embeddings, the Responses API,
    Anthropic Messages, Gemini, Bedrock Converse and InvokeModel embeddings, Ollama."""
    if not isinstance(doc, dict):
        return
    for key in ("system", "instructions", "prompt", "input", "inputText", "texts"):
        if key in doc:
            yield from _texts(doc, key)
    for key in ("messages", "contents", "requests"):  # chat turns; Gemini contents; Gemini batch embeddings
        if isinstance(turns := doc.get(key), list):
            for turn in turns:
                yield from _turn(turn)
    for key in ("systemInstruction", "system_instruction", "content"):  # Gemini: one Content
        if isinstance(value := doc.get(key), dict):
            yield from _blocks(value.get("parts"))


def _texts(container: Any, key: Any) -> Iterator[Slot]:
    """A string, or a list of strings and content blocks (or of messages, for the Responses API's input)."""
    value = container[key]
    if isinstance(value, str):
        yield container, key
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield value, i
            elif isinstance(item, dict):
                yield from _turn(item) if "role" in item else _block(item)


def _turn(turn: Any) -> Iterator[Slot]:
    """One message: `content` (a string or blocks), Gemini's `parts`, a Gemini embedding request."""
    if not isinstance(turn, dict):
        return
    content = turn.get("content")
    if isinstance(content, dict):  # Gemini batchEmbedContents: {"content": {"parts": [...]}}
        yield from _blocks(content.get("parts"))
    elif content is not None:
        yield from _texts(turn, "content")
    yield from _blocks(turn.get("parts"))


def _blocks(blocks: Any) -> Iterator[Slot]:
    if isinstance(blocks, list):
        for block in blocks:
            yield from _block(block)


def _block(block: Any) -> Iterator[Slot]:
    """A content block: any with a "text" (OpenAI, Anthropic, Gemini, Bedrock), and tool results, whose
    content is a string or blocks again (Anthropic `tool_result`, Bedrock `toolResult`)."""
    if not isinstance(block, dict):
        return
    if isinstance(block.get("text"), str):
        yield block, "text"
    if block.get("type") == "tool_result" and "content" in block:
        yield from _texts(block, "content")
    if isinstance(result := block.get("toolResult"), dict):
        yield from _blocks(result.get("content"))


def answer_texts(doc: Any) -> Iterator[Slot]:
    """The texts of a complete answer or of one streamed event (see `answer_slots`)."""
    for _, container, key in answer_slots(doc):
        yield container, key


def answer_slots(doc: Any) -> Iterator[ChannelSlot]:
    """The texts of an answer or of one streamed event, each with its channel: OpenAI chat and
    completions (choice index), Anthropic (content block index), Gemini (candidate index), Ollama (one
    channel), Bedrock Converse (content block index), the Responses API (output and content index)."""
    if not isinstance(doc, dict):
        return
    if isinstance(choices := doc.get("choices"), list):  # OpenAI: message, delta or text
        for i, choice in enumerate(choices):
            if isinstance(choice, dict):
                channel = ("choice", choice.get("index", i))
                for part in (choice.get("message"), choice.get("delta")):
                    if isinstance(part, dict) and isinstance(part.get("content"), str):
                        yield channel, part, "content"
                if isinstance(choice.get("text"), str):
                    yield channel, choice, "text"
        return  # (no other vendor's answer has choices)
    if isinstance(candidates := doc.get("candidates"), list):  # Gemini
        for i, candidate in enumerate(candidates):
            if isinstance(candidate, dict) and isinstance(content := candidate.get("content"), dict):
                channel = ("candidate", candidate.get("index", i))
                for _, block, key in _texted(content.get("parts")):
                    yield channel, block, key
    yield from _answer_blocks(doc)
    message = doc.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), str):  # Ollama chat
        yield "message", message, "content"
    if isinstance(doc.get("response"), str):  # Ollama generate
        yield "message", doc, "response"


def _answer_blocks(doc: dict[str, Any]) -> Iterator[ChannelSlot]:
    """Anthropic and Bedrock content blocks, whole or as streamed deltas, and the Responses API."""
    if isinstance(doc.get("content"), list):  # Anthropic message
        for i, block, key in _texted(doc["content"]):
            yield ("block", i), block, key
    output = doc.get("output")
    if isinstance(output, dict) and isinstance(message := output.get("message"), dict):  # Bedrock Converse
        for i, block, key in _texted(message.get("content")):
            yield ("block", i), block, key
    elif isinstance(output, list):  # Responses API
        for i, item in enumerate(output):
            if isinstance(item, dict):
                for j, block, key in _texted(item.get("content")):
                    yield ("output", i, j), block, key
    delta = doc.get("delta")
    if isinstance(delta, dict) and isinstance(delta.get("text"), str):  # Anthropic text_delta, Bedrock
        yield ("block", doc.get("index", doc.get("contentBlockIndex", 0))), delta, "text"
    elif isinstance(delta, str) and doc.get("type") == "response.output_text.delta":  # Responses API
        yield ("output", doc.get("output_index", 0), doc.get("content_index", 0)), doc, "delta"
    block = doc.get("content_block")
    if isinstance(block, dict) and isinstance(block.get("text"), str):  # Anthropic content_block_start
        yield ("block", doc.get("index", 0)), block, "text"


def _texted(blocks: Any) -> Iterator[tuple[int, Any, str]]:
    """(index, block, "text") for the blocks of a list that hold a text (not thoughts' signatures etc.)."""
    if isinstance(blocks, list):
        for i, block in enumerate(blocks):
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                yield i, block, "text"
