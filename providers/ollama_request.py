"""OpenAI requests as Ollama's native ones: `/api/chat` and `/api/embed` bodies.

Ollama's message is one string of content plus a list of base64 images, tool calls carry their arguments
as a JSON object, a tool result names its tool (`tool_name`) rather than the call's id, and sampling
settings travel in `options`. What Ollama cannot take is a 400 with the reason, never silently dropped
content.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import InvalidRequest
from providers.chat import (
    AudioPart,
    ChatRequest,
    EmbeddingsRequest,
    FilePart,
    ImagePart,
    Message,
    NamedToolChoice,
    Part,
    RefusalPart,
    TextPart,
    Tool,
    ToolCall,
    data_url,
)

_PART_NAMES: dict[type, str] = {ImagePart: "image", AudioPart: "audio", FilePart: "file"}


def chat_body(request: ChatRequest, model: str, stream: bool) -> bytes:
    """The `/api/chat` body; `stream` is always sent, as Ollama streams when it is left out."""
    if request.n is not None and request.n != 1:
        raise InvalidRequest("Ollama answers with one choice: 'n' must be 1")
    body: dict[str, Any] = {"model": model, "messages": messages(request.messages), "stream": stream}
    tools = _tools(request)
    if tools:
        body["tools"] = tools
    response_format = request.response_format
    if response_format is not None and response_format.type != "text":
        schema = response_format.json_schema.schema if response_format.json_schema else None
        body["format"] = schema if response_format.type == "json_schema" and schema else "json"
    options = _options(request)
    if options:
        body["options"] = options
    return orjson.dumps(body)


def embed_body(request: EmbeddingsRequest, model: str) -> bytes:
    texts = request.texts()
    body: dict[str, Any] = {"model": model, "input": texts[0] if isinstance(request.input, str) else texts}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    return orjson.dumps(body)


def messages(source: list[Message]) -> list[dict[str, Any]]:
    tool_names: dict[str, str] = {}  # tool call id -> function name, for the results that answer them
    out: list[dict[str, Any]] = []
    for message in source:
        if message.role in ("system", "developer"):
            out.append({"role": "system", "content": _text(message)})
        elif message.role == "user":
            out.append(_user(message))
        elif message.role == "assistant":
            out.append(_assistant(message, tool_names))
        else:  # "tool", and the legacy "function" result that names its function itself
            result: dict[str, Any] = {"role": "tool", "content": _text(message)}
            name = tool_names.get(message.tool_call_id or "") or (
                message.name if message.role == "function" else None
            )
            if name:
                result["tool_name"] = name
            out.append(result)
    return out


def _text(message: Message) -> str:
    """Text parts joined by newlines: Ollama's content is one string."""
    if isinstance(message.content, str) or message.content is None:
        return message.content or ""
    texts = []
    for part in message.content:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, RefusalPart):
            texts.append(part.refusal)
        else:
            raise InvalidRequest(f"Ollama takes no {_part_name(part)} parts in {message.role} messages")
    return "\n".join(texts)


def _user(message: Message) -> dict[str, Any]:
    if isinstance(message.content, str) or message.content is None:
        return {"role": "user", "content": message.content or ""}
    texts: list[str] = []
    images: list[str] = []
    for part in message.content:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ImagePart):
            images.append(_image(part.image_url.url))
        else:
            raise InvalidRequest(f"Ollama takes text and image parts only, not {_part_name(part)} parts")
    user: dict[str, Any] = {"role": "user", "content": "\n".join(texts)}
    if images:
        user["images"] = images
    return user


def _image(url: str) -> str:
    parsed = data_url(url)
    if parsed is None:
        raise InvalidRequest(
            "Ollama takes inline images only: send the image as a data URL "
            "(data:image/png;base64,...), not as a link"
        )
    data = parsed[1]
    return data + "=" * (-len(data) % 4)  # Ollama decodes strictly: padding is not optional


def _part_name(part: Part) -> str:
    return _PART_NAMES.get(type(part), "unknown")


def _assistant(message: Message, tool_names: dict[str, str]) -> dict[str, Any]:
    assistant: dict[str, Any] = {"role": "assistant", "content": _text(message)}
    calls = []
    for call in message.tool_calls or ():
        tool_names[call.id] = call.function.name
        calls.append({"function": {"name": call.function.name, "arguments": _arguments(call)}})
    if calls:
        assistant["tool_calls"] = calls
    return assistant


def _arguments(call: ToolCall) -> dict[str, Any]:
    """OpenAI's JSON-encoded arguments as the object Ollama wants."""
    text = call.function.arguments
    if not text.strip():
        return {}
    try:
        arguments = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"the arguments of tool call '{call.id}' are not valid JSON") from None
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"the arguments of tool call '{call.id}' must be a JSON object for Ollama")
    return arguments


def _tools(request: ChatRequest) -> list[dict[str, Any]]:
    """The tools to offer. Ollama has no tool_choice: "none" offers none, a named function is offered
    alone (the closest Ollama gets to forcing it), "required" cannot be enforced and offers them all."""
    tools = request.tools or []
    choice = request.tool_choice
    if choice == "none":
        return []
    if isinstance(choice, NamedToolChoice):
        tools = [tool for tool in tools if tool.function.name == choice.function.name]
        if not tools:
            raise InvalidRequest(f"tool_choice names the function '{choice.function.name}', not in tools")
    return [_tool(tool) for tool in tools]


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.function.name}
    if tool.function.description is not None:
        function["description"] = tool.function.description
    if tool.function.parameters is not None:
        function["parameters"] = tool.function.parameters
    return {"type": "function", "function": function}


def _options(request: ChatRequest) -> dict[str, Any]:
    values = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "num_predict": request.max_output,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "stop": request.stops or None,
    }
    return {name: value for name, value in values.items() if value is not None}
