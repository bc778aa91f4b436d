"""OpenAI Chat Completions and embeddings → Gemini `generateContent` / embeddings bodies.

Shared by the Gemini API (`providers/gemini.py`) and Vertex AI (`providers/vertex.py`): both take the same
`GenerateContentRequest`. Schemas go out as JSON Schema (`parametersJsonSchema`, `responseJsonSchema`):
OpenAI clients write JSON Schema, which the older OpenAPI-subset fields (`parameters`, `responseSchema`)
reject as soon as it uses `additionalProperties`, `$ref` or `strict`-mode idioms.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.errors import InvalidRequest
from providers.answer import new_id
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
    data_url,
)

JsonObject = dict[str, Any]

# Gemini returns no call ids, and may sign a function call ("thought signature") that it wants back with
# the call on the next turn (Gemini 3 refuses the turn without it). The OpenAI tool call id is the one
# thing a client echoes back verbatim, so the signature rides in it.
_SIGNATURE_MARK = "__thought__"
# Media types by file extension, for http(s) URLs: Gemini's fileData needs one and a URL has none.
_MEDIA_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
    "mp3": "audio/mp3",
    "wav": "audio/wav",
    "mp4": "video/mp4",
}
_CALLING_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}


def call_id(signature: str | None = None) -> str:
    """A fresh OpenAI tool call id, carrying the function call's thought signature when it has one."""
    base = new_id("call_")
    return f"{base}{_SIGNATURE_MARK}{signature}" if signature else base


def signature_of(tool_call_id: str) -> str | None:
    _, mark, signature = tool_call_id.partition(_SIGNATURE_MARK)
    return signature if mark and signature else None


def chat_body(chat: ChatRequest) -> JsonObject:
    """The `generateContent` body for an OpenAI chat request."""
    system, contents = _contents(chat.messages)
    if not contents:
        raise InvalidRequest("Gemini needs at least one user or assistant message besides system messages")
    body: JsonObject = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    config = _generation_config(chat)
    if config:
        body["generationConfig"] = config
    if chat.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(tool) for tool in chat.tools]}]
    if chat.tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": _calling_config(chat.tool_choice)}
    return body


def batch_embed_body(request: EmbeddingsRequest, model: str) -> JsonObject:
    """The Gemini API's `batchEmbedContents` body: one request per input, each naming the model."""
    name = f"models/{model}"
    extra: JsonObject = {"outputDimensionality": request.dimensions} if request.dimensions else {}
    return {
        "requests": [
            {"model": name, "content": {"parts": [{"text": text}]}, **extra} for text in request.texts()
        ]
    }


def predict_embed_body(request: EmbeddingsRequest) -> JsonObject:
    """Vertex AI's `predict` body for its text embedding models."""
    body: JsonObject = {"instances": [{"content": text} for text in request.texts()]}
    if request.dimensions:
        body["parameters"] = {"outputDimensionality": request.dimensions}
    return body


# --- messages ---------------------------------------------------------------------------------------------


def _contents(messages: list[Message]) -> tuple[list[JsonObject], list[JsonObject]]:
    """(system parts, contents): system and developer messages become the system instruction; the rest
    alternate between `user` and `model`, consecutive turns of one role merged into one content."""
    system: list[JsonObject] = []
    contents: list[JsonObject] = []
    names: dict[str, str] = {}  # tool call id → function name, for the function responses
    for message in messages:
        if message.role in ("system", "developer"):
            system.extend(_system_parts(message))
            continue
        if message.role == "assistant":
            role, parts = "model", _assistant_parts(message, names)
        elif message.role in ("tool", "function"):
            role, parts = "user", [_function_response(message, names)]
        else:
            role, parts = "user", [_part(part) for part in message.parts() if not _empty(part)]
        if not parts:
            continue  # Gemini refuses a content without parts
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _empty(part: Part) -> bool:
    return isinstance(part, TextPart) and not part.text  # proto3: an empty text is no text at all


def _system_parts(message: Message) -> list[JsonObject]:
    parts = message.parts()
    if any(not isinstance(part, TextPart) for part in parts):
        raise InvalidRequest("Gemini takes text only in system instructions")
    return [{"text": part.text} for part in parts if isinstance(part, TextPart) and part.text]


def _assistant_parts(message: Message, names: dict[str, str]) -> list[JsonObject]:
    parts: list[JsonObject] = []
    for part in message.parts():
        if isinstance(part, TextPart | RefusalPart):
            text = part.text if isinstance(part, TextPart) else part.refusal
            if text:
                parts.append({"text": text})
        else:
            raise InvalidRequest("assistant messages take text only")
    for call in message.tool_calls or ():
        names[call.id] = call.function.name
        function = {"name": call.function.name, "args": _arguments(call.function.arguments, call.id)}
        call_part: JsonObject = {"functionCall": function}
        signature = signature_of(call.id)
        if signature:
            call_part["thoughtSignature"] = signature
        parts.append(call_part)
    return parts


def _arguments(arguments: str, id: str) -> JsonObject:
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"the arguments of tool call '{id}' are not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"the arguments of tool call '{id}' must be a JSON object")
    return value


def _function_response(message: Message, names: dict[str, str]) -> JsonObject:
    if message.role == "function":
        name = message.name or ""
    else:
        name = names.get(message.tool_call_id or "", "")
        if not name:
            raise InvalidRequest(
                f"tool message '{message.tool_call_id}' answers no tool call of an earlier assistant message"
            )
    text = message.text()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    # `response` is a protobuf Struct: an object; anything else is wrapped.
    response = value if isinstance(value, dict) else {"result": value}
    return {"functionResponse": {"name": name, "response": response}}


def _part(part: Part) -> JsonObject:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if isinstance(part, ImagePart):
        return _media(part.image_url.url)
    if isinstance(part, AudioPart):
        data, format = part.input_audio.get("data"), part.input_audio.get("format")
        if not isinstance(data, str) or not isinstance(format, str):
            raise InvalidRequest("input_audio needs 'data' (base64) and 'format'")
        return {"inlineData": {"mimeType": f"audio/{format}", "data": data}}
    if isinstance(part, FilePart):
        file_data = part.file.get("file_data")
        if not isinstance(file_data, str) or data_url(file_data) is None:
            raise InvalidRequest("Gemini takes files as 'file_data' data URLs (not OpenAI file ids)")
        return _media(file_data)
    raise InvalidRequest("refusal parts belong to assistant messages")


def _media(url: str) -> JsonObject:
    inline = data_url(url)
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https", "gs"):
        raise InvalidRequest("image URLs must be http(s), gs:// or base64 data URLs")
    path = urlsplit(url).path
    extension = path.rpartition(".")[2].lower() if "." in path.rpartition("/")[2] else ""
    media_type = _MEDIA_TYPES.get(extension)
    if media_type is None:
        raise InvalidRequest(
            f"Gemini needs the media type of {url!r} and its extension does not tell it: use a URL "
            f"ending in {', '.join('.' + e for e in _MEDIA_TYPES)}, or a base64 data URL"
        )
    return {"fileData": {"mimeType": media_type, "fileUri": url}}


# --- generation settings and tools ---------------------------------------------------------------------


def _generation_config(chat: ChatRequest) -> JsonObject:
    config: JsonObject = {}
    for name, value in (
        ("temperature", chat.temperature),
        ("topP", chat.top_p),
        ("maxOutputTokens", chat.max_output),
        ("seed", chat.seed),
        ("presencePenalty", chat.presence_penalty),
        ("frequencyPenalty", chat.frequency_penalty),
    ):
        if value is not None:
            config[name] = value
    if chat.stops:
        config["stopSequences"] = chat.stops
    if chat.n is not None and chat.n != 1:
        config["candidateCount"] = chat.n
    format = chat.response_format
    if format is not None and format.type != "text":
        config["responseMimeType"] = "application/json"
        if format.json_schema is not None and format.json_schema.schema is not None:
            config["responseJsonSchema"] = format.json_schema.schema
    return config


def _declaration(tool: Tool) -> JsonObject:
    function = tool.function
    declaration: JsonObject = {"name": function.name}
    if function.description:
        declaration["description"] = function.description
    if function.parameters:
        declaration["parametersJsonSchema"] = function.parameters
    return declaration


def _calling_config(choice: str | NamedToolChoice) -> JsonObject:
    if isinstance(choice, NamedToolChoice):
        return {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}
    return {"mode": _CALLING_MODES[choice]}
