"""OpenAI Chat Completions ↔ Anthropic Messages, both ways, independent of any transport.

`to_anthropic` turns a parsed OpenAI request into a Messages API body; `from_anthropic` turns a Messages
API answer (decoded with `message_decoder`) into an OpenAI `chat.completion`; `asks_json_object` tells
both directions that the emulated JSON mode is on; streams are `anthropic_stream.AnthropicStream`. The
Anthropic adapter sends the body to api.anthropic.com; Vertex's Anthropic publisher takes the same body
without `model` (`to_anthropic(request, None, stream)`) plus its own `anthropic_version`.

Choices made where the two APIs differ (each is what a client of the OpenAI API can rely on):
- System and developer messages, wherever they are, become the top-level `system` prompt (joined by a
  blank line): models before Opus 4.8 refuse `system` turns inside `messages`.
- Tool results (role `tool`) become `tool_result` blocks of a user turn; consecutive turns of one role
  are merged into one turn, so the tool results of one assistant turn travel together.
- `max_tokens` is required by Anthropic: 4096 when the client sent neither `max_tokens` nor
  `max_completion_tokens`.
- `seed`, `presence_penalty`, `frequency_penalty` and `logprobs` have no Anthropic counterpart and are
  dropped; so are `temperature` and `top_p` for API versions that have no sampling knobs any more
  (`sampling=False`: anthropic-version 2026-10-21 and later answer 400 to them). `n` above 1 is a 400.
- `response_format` `json_schema` becomes Anthropic's structured output (`output_config.format`), which
  the vendor enforces. Anthropic has no schema-less JSON mode, so `json_object` is emulated as other
  gateways do: a forced tool whose input is any JSON object, handed back to the client as the message
  text with finish reason `stop` (refused together with client tools, which it would displace).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import orjson

from gateway.errors import InvalidRequest
from providers.answer import FinishReason, chat_completion, tool_call_json
from providers.base import Usage
from providers.chat import (
    AudioPart,
    ChatRequest,
    FilePart,
    FunctionCall,
    ImagePart,
    Message,
    NamedToolChoice,
    Part,
    RefusalPart,
    TextPart,
    data_url,
    parse_chat,
)

DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "json_object"  # the forced tool that emulates response_format json_object
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_JSON_TOOL_DEF = {
    "name": JSON_TOOL,
    "description": "Answer with a JSON object: your whole answer is this tool's input.",
    "input_schema": {"type": "object"},
}
_EMPTY_SCHEMA = {"type": "object", "properties": {}}
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
Role = Literal["user", "assistant"]


# --- OpenAI → Anthropic -----------------------------------------------------------------------------


def to_anthropic(
    request: ChatRequest, model: str | None, stream: bool, *, sampling: bool = True
) -> dict[str, Any]:
    """The Messages API body of an OpenAI chat request (`model` None: left out, as Vertex wants)."""
    if request.n is not None and request.n > 1:
        raise InvalidRequest("Anthropic answers with one choice: n must be 1")
    system, turns = conversation(request.messages)
    body: dict[str, Any] = {} if model is None else {"model": model}
    body["max_tokens"] = request.max_output if request.max_output is not None else DEFAULT_MAX_TOKENS
    if system:
        body["system"] = system
    body["messages"] = turns
    if sampling and request.temperature is not None:
        body["temperature"] = request.temperature
    if sampling and request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stops:
        body["stop_sequences"] = request.stops
    if request.user:
        body["metadata"] = {"user_id": request.user}
    body.update(_tools(request))
    if stream:
        body["stream"] = True
    return body


def asks_json_object(body: bytes) -> bool:
    """Whether an OpenAI request body asks for response_format json_object (a forced tool answers it)."""
    if b"json_object" not in body:  # the common case, without decoding the request again
        return False
    fmt = parse_chat(body).response_format
    return fmt is not None and fmt.type == "json_object"


def conversation(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, turns): system/developer text hoisted, same-role neighbours merged."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            system.append(message.text())
            continue
        role: Role
        if message.role == "tool":
            role, blocks = "user", [_tool_result(message)]
        elif message.role == "assistant":
            role, blocks = "assistant", _assistant_blocks(message)
        elif message.role == "user":
            role, blocks = "user", [_block(part) for part in message.parts()]
        else:
            raise InvalidRequest("the deprecated 'function' role is not supported: use tools and role 'tool'")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise InvalidRequest("Anthropic needs at least one user or assistant message besides system messages")
    return "\n\n".join(text for text in system if text), turns


def _tool_result(message: Message) -> dict[str, Any]:
    if not message.tool_call_id:
        raise InvalidRequest("a message with role 'tool' needs its 'tool_call_id'")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    text = message.text()
    if text:
        block["content"] = text
    return block


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in message.parts():
        text = _part_text(part)
        if text:  # Anthropic refuses empty text blocks; a tool-calling turn often has content ""
            blocks.append({"type": "text", "text": text})
    for call in message.tool_calls or ():
        input_ = _arguments(call.function)
        blocks.append({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input_})
    if not blocks:  # an empty assistant turn stays what the client sent: Anthropic says what is wrong
        blocks.append({"type": "text", "text": message.text()})
    return blocks


def _part_text(part: Part) -> str:
    if isinstance(part, TextPart):
        return part.text
    return part.refusal if isinstance(part, RefusalPart) else ""


def _arguments(function: FunctionCall) -> dict[str, Any]:
    try:
        value = orjson.loads(function.arguments or "{}")
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"the arguments of the tool call '{function.name}' must be a JSON object for Anthropic"
        )
    return value


def _block(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return image_block(part.image_url.url)
    if isinstance(part, FilePart):
        return _document(part.file)
    if isinstance(part, AudioPart):
        raise InvalidRequest("Anthropic takes no audio input")
    return {"type": "text", "text": part.refusal}


def image_block(url: str) -> dict[str, Any]:
    """An image block: a data URL inline (base64), an http(s) URL by reference."""
    inline = data_url(url)
    if inline is not None:
        media_type, data = inline
        if media_type not in IMAGE_TYPES:
            raise InvalidRequest(f"Anthropic takes JPEG, PNG, GIF and WebP images, not {media_type}")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("an image URL must be an http(s) URL or a base64 data: URL")


def _document(file: dict[str, Any]) -> dict[str, Any]:
    inline = data_url(file["file_data"]) if isinstance(file.get("file_data"), str) else None
    if inline is None or inline[0] != "application/pdf":
        raise InvalidRequest("Anthropic takes files as inline PDFs: file_data as a data:application/pdf URL")
    source = {"type": "base64", "media_type": inline[0], "data": inline[1]}
    document: dict[str, Any] = {"type": "document", "source": source}
    if isinstance(file.get("filename"), str):
        document["title"] = file["filename"]
    return document


def _tools(request: ChatRequest) -> dict[str, Any]:
    """`tools`, `tool_choice` and `output_config` of the request."""
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema is None:
            raise InvalidRequest("response_format json_schema needs its json_schema.schema")
        format_ = {"type": "json_schema", "schema": fmt.json_schema.schema}
        return {**_client_tools(request), "output_config": {"format": format_}}
    if fmt is not None and fmt.type == "json_object":
        if request.tools:
            raise InvalidRequest(
                "Anthropic has no JSON mode: response_format json_object is emulated with a forced tool, "
                "which cannot be combined with tools; use response_format json_schema instead"
            )
        return {"tools": [_JSON_TOOL_DEF], "tool_choice": {"type": "tool", "name": JSON_TOOL}}
    return _client_tools(request)


def _client_tools(request: ChatRequest) -> dict[str, Any]:
    if not request.tools:
        return {}
    tools = []
    for tool in request.tools:
        spec: dict[str, Any] = {"name": tool.function.name}
        if tool.function.description:
            spec["description"] = tool.function.description
        spec["input_schema"] = tool.function.parameters or _EMPTY_SCHEMA
        if tool.function.strict:
            spec["strict"] = True
        tools.append(spec)
    fields: dict[str, Any] = {"tools": tools}
    choice = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice:
        fields["tool_choice"] = choice
    return fields


def _tool_choice(choice: str | NamedToolChoice | None) -> dict[str, Any] | None:
    if isinstance(choice, NamedToolChoice):
        return {"type": "tool", "name": choice.function.name}
    return {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]} if choice else None


# --- Anthropic → OpenAI -----------------------------------------------------------------------------


class AnthropicUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None

    def update(self, later: AnthropicUsage) -> None:
        """Take the counts a later event reports (message_delta's are cumulative; absent ones stay)."""
        for name in self.__struct_fields__:
            value = getattr(later, name)
            if value is not None:
                setattr(self, name, value)

    def normalized(self) -> Usage:
        """Anthropic's `input_tokens` leaves out the cached parts; Tollgate's counts every prompt token."""
        read = self.cache_read_input_tokens or 0
        write = self.cache_creation_input_tokens or 0
        return Usage(
            input_tokens=(self.input_tokens or 0) + read + write,
            output_tokens=self.output_tokens or 0,
            cache_read_tokens=read,
            cache_write_tokens=write,
        )


class Block(msgspec.Struct):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw(b"{}")  # kept as sent: it is the client's `arguments` string


class AnthropicMessage(msgspec.Struct):
    model: str | None = None
    content: list[Block] = []
    stop_reason: str | None = None
    usage: AnthropicUsage | None = None


message_decoder = msgspec.json.Decoder(AnthropicMessage)


def finish_reason(stop_reason: str | None, json_tool: bool = False) -> FinishReason | None:
    if stop_reason is None:
        return None
    if stop_reason == "tool_use" and json_tool:
        return "stop"  # the emulated JSON mode's tool call is the answer itself
    return _FINISH.get(stop_reason, "stop")


def from_anthropic(
    message: AnthropicMessage, fallback_model: str, json_tool: bool = False
) -> tuple[bytes, Usage | None]:
    """The OpenAI `chat.completion` of a Messages API answer, and its usage."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "tool_use":
            arguments = bytes(block.input).decode()
            if json_tool and block.name == JSON_TOOL:
                texts.append(arguments)
            else:
                calls.append(tool_call_json(block.id or "", block.name or "", arguments))
    content = "".join(texts) if texts else (None if calls else "")
    usage = message.usage.normalized() if message.usage else None
    finish = finish_reason(message.stop_reason, json_tool) or "stop"
    return chat_completion(message.model or fallback_model, content, finish, usage, calls), usage
