"""What the Gemini API and Vertex AI reject, with their error wording: proto-JSON parsing (unknown fields,
wrong types, bad base64, unknown enum values; camelCase and snake_case names both accepted), then the
semantic checks of `GenerateContentRequest` and `BatchEmbedContentsRequest`.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from mocks.gemini_errors import invalid, invalid_value, request_field, unknown_field

JsonObject = dict[str, Any]

# message → field (camelCase) → kind: a scalar, "any", a message name, "[kind]" (repeated), "map:kind"
# or "enum:Name". Only the messages a translating gateway sends are modelled field by field.
_MESSAGES: dict[str, dict[str, str]] = {
    "GenerateContentRequest": {
        "model": "string",
        "contents": "[Content]",
        "systemInstruction": "Content",
        "generationConfig": "GenerationConfig",
        "tools": "[Tool]",
        "toolConfig": "ToolConfig",
        "safetySettings": "[any]",
        "cachedContent": "string",
        "serviceTier": "string",
    },
    "Content": {"role": "string", "parts": "[Part]"},
    "Part": {
        "text": "string",
        "inlineData": "Blob",
        "fileData": "FileData",
        "functionCall": "FunctionCall",
        "functionResponse": "FunctionResponse",
        "executableCode": "any",
        "codeExecutionResult": "any",
        "thought": "bool",
        "thoughtSignature": "bytes",
        "videoMetadata": "any",
        "mediaResolution": "any",
        "partMetadata": "any",
    },
    "Blob": {"mimeType": "string", "data": "bytes", "displayName": "string"},
    "FileData": {"mimeType": "string", "fileUri": "string", "displayName": "string"},
    "FunctionCall": {"id": "string", "name": "string", "args": "any"},
    "FunctionResponse": {
        "id": "string",
        "name": "string",
        "response": "any",
        "willContinue": "bool",
        "scheduling": "string",
        "parts": "[any]",
    },
    "GenerationConfig": {
        "stopSequences": "[string]",
        "responseMimeType": "string",
        "responseSchema": "Schema",
        "responseJsonSchema": "any",
        "candidateCount": "int",
        "maxOutputTokens": "int",
        "temperature": "float",
        "topP": "float",
        "topK": "int",
        "seed": "int",
        "presencePenalty": "float",
        "frequencyPenalty": "float",
        "responseLogprobs": "bool",
        "logprobs": "int",
        "responseModalities": "[string]",
        "thinkingConfig": "any",
        "speechConfig": "any",
        "imageConfig": "any",
        "mediaResolution": "string",
    },
    "Tool": {
        "functionDeclarations": "[FunctionDeclaration]",
        "googleSearch": "any",
        "googleSearchRetrieval": "any",
        "codeExecution": "any",
        "urlContext": "any",
        "fileSearch": "any",
        "googleMaps": "any",
        "computerUse": "any",
    },
    "FunctionDeclaration": {
        "name": "string",
        "description": "string",
        "parameters": "Schema",
        "parametersJsonSchema": "any",
        "response": "Schema",
        "responseJsonSchema": "any",
        "behavior": "string",
    },
    # The OpenAPI 3.0 subset: JSON Schema words such as additionalProperties or $ref are unknown here.
    "Schema": {
        "type": "enum:Type",
        "format": "string",
        "title": "string",
        "description": "string",
        "nullable": "bool",
        "enum": "[string]",
        "maxItems": "int",
        "minItems": "int",
        "properties": "map:Schema",
        "required": "[string]",
        "minProperties": "int",
        "maxProperties": "int",
        "minLength": "int",
        "maxLength": "int",
        "pattern": "string",
        "example": "any",
        "anyOf": "[Schema]",
        "propertyOrdering": "[string]",
        "default": "any",
        "items": "Schema",
        "minimum": "float",
        "maximum": "float",
    },
    "ToolConfig": {"functionCallingConfig": "FunctionCallingConfig", "retrievalConfig": "any"},
    "FunctionCallingConfig": {"mode": "enum:FunctionCallingConfig.Mode", "allowedFunctionNames": "[string]"},
    "BatchEmbedContentsRequest": {"requests": "[EmbedContentRequest]"},
    "EmbedContentRequest": {
        "model": "string",
        "content": "Content",
        "taskType": "string",
        "title": "string",
        "outputDimensionality": "int",
    },
}
_ENUMS = {
    "Type": {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"},
    "FunctionCallingConfig.Mode": {"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"},
}
_SCALAR_TYPES = {"string": "TYPE_STRING", "int": "TYPE_INT32", "float": "TYPE_FLOAT", "bool": "TYPE_BOOL"}
_DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
                "codeExecutionResult")  # fmt: skip
MEDIA_TYPES = frozenset(
    {
        "image/png", "image/jpeg", "image/webp", "image/heic", "image/heif", "image/gif",
        "application/pdf", "text/plain", "audio/wav", "audio/mp3", "audio/mpeg", "audio/aiff", "audio/aac",
        "audio/ogg", "audio/flac", "video/mp4", "video/mpeg", "video/webm", "video/quicktime",
    }
)  # fmt: skip
_RESPONSE_TYPES = ("text/plain", "application/json", "application/xml", "application/yaml", "text/x.enum")
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")
_CAMEL = re.compile(r"_([a-z])")
_SNAKE = re.compile(r"([A-Z])")
_REQUEST = "GenerateContentRequest"


def parse(body: bytes) -> JsonObject:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid("Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(value, dict):
        raise invalid(
            f"Invalid JSON payload received. Expected an object.\n{body[:40].decode(errors='replace')}"
        )
    return value


def check_message(value: Any, message: str, path: str, namespace: str) -> None:
    """Proto-JSON parsing of `value` as `message`: unknown names and wrong types are refused."""
    if not isinstance(value, dict):
        raise invalid_value(path, f"type.googleapis.com/{namespace}.{message}", value)
    fields = _MESSAGES[message]
    for key, item in value.items():
        name = _CAMEL.sub(lambda m: m.group(1).upper(), key)
        kind = fields.get(name)
        if kind is None:
            raise unknown_field(key, path)
        if item is not None:  # null is "unset" in proto JSON
            child = _SNAKE.sub(lambda m: "_" + m.group(1).lower(), name)
            _check(item, kind, f"{path}.{child}" if path else child, namespace)


def _check(value: Any, kind: str, path: str, namespace: str) -> None:
    if kind == "any":
        return
    if kind.startswith("["):
        inner = kind[1:-1]
        if not isinstance(value, list):
            _check(value, inner, path, namespace)  # a single value where a list goes: its own type error
            raise invalid_value(path, inner, value)
        for index, item in enumerate(value):
            _check(item, inner, f"{path}[{index}]", namespace)
    elif kind.startswith("map:"):
        if not isinstance(value, dict):
            raise invalid_value(path, "map", value)
        for index, item in enumerate(value.values()):
            _check(item, kind[4:], f"{path}[{index}].value", namespace)
    elif kind.startswith("enum:"):
        enum = kind[5:]
        if not isinstance(value, str) or value.upper() not in _ENUMS[enum]:
            raise invalid_value(path, f"type.googleapis.com/{namespace}.{enum}", value)
    elif kind == "bytes":
        if not isinstance(value, str) or not _is_base64(value):
            raise invalid(
                f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for \"{value}\"", path
            )
    elif kind in _SCALAR_TYPES:
        if not _scalar_ok(value, kind):
            raise invalid_value(path, _SCALAR_TYPES[kind], value)
    else:
        check_message(value, kind, path, namespace)


def _scalar_ok(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return (isinstance(value, int | float) and float(value).is_integer()) or (
            isinstance(value, str) and value.lstrip("-").isdigit()
        )
    return isinstance(value, int | float)


def _is_base64(value: str) -> bool:
    text = value.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _get(obj: JsonObject, camel: str) -> Any:
    """A field by its camelCase or snake_case name, as the API reads both."""
    if camel in obj:
        return obj[camel]
    return obj.get(_SNAKE.sub(lambda m: "_" + m.group(1).lower(), camel))


# --- generateContent ----------------------------------------------------------------------------------


def check_generate(body: JsonObject, namespace: str, *, role_required: bool) -> None:
    check_message(body, _REQUEST, "", namespace)
    contents = _get(body, "contents") or []
    if not contents:
        raise request_field(_REQUEST, "contents", "contents is not specified")
    for index, content in enumerate(contents):
        _check_content(content, f"contents[{index}]", role_required)
    _check_turns(contents)
    system = _get(body, "systemInstruction")
    if system is not None:
        _check_content(system, "system_instruction", role_required=False)
    _check_config(_get(body, "generationConfig") or {})
    names = _check_tools(_get(body, "tools") or [])
    _check_tool_config(_get(body, "toolConfig") or {}, names)


def _check_content(content: JsonObject, path: str, role_required: bool) -> None:
    role = content.get("role")
    if (role is not None or role_required) and role not in ("user", "model"):
        raise invalid("Please use a valid role: user, model.")
    parts = content.get("parts") or []
    if not parts:
        raise request_field(_REQUEST, f"{path}.parts", "contents.parts must not be empty.")
    for index, part in enumerate(parts):
        present = [name for name in _DATA_FIELDS if _get(part, name) not in (None, "")]
        if not present:
            problem = "required oneof field 'data' must have one initialized field"
            raise request_field(_REQUEST, f"{path}.parts[{index}].data", problem)
        if len(present) > 1:
            raise invalid(
                f"Invalid JSON payload received. Oneof field 'data' is already set. Cannot set '{present[1]}'"
            )
        inline = _get(part, "inlineData")
        if inline is not None and _get(inline, "mimeType") not in MEDIA_TYPES:
            raise invalid(f"Unsupported MIME type: {_get(inline, 'mimeType')}")
        file = _get(part, "fileData")
        if file is not None and not _get(file, "fileUri"):
            raise request_field(_REQUEST, f"{path}.parts[{index}].file_data.file_uri", "file_uri is required")


def _check_turns(contents: list[JsonObject]) -> None:
    """A function call turn follows a user turn; the next turn answers each of its calls."""
    previous: JsonObject | None = None
    for content in contents:
        calls = _count(content, "functionCall")
        if calls and (previous is None or previous.get("role", "user") != "user"):
            raise invalid(
                "Please ensure that function call turn comes immediately after a user turn or after a "
                "function response turn."
            )
        answered = _count(content, "functionResponse")
        if answered and previous is not None and answered != _count(previous, "functionCall"):
            raise invalid(
                "Please ensure that the number of function response parts is equal to the number of function "
                "call parts of the function call turn."
            )
        previous = content


def _count(content: JsonObject, field: str) -> int:
    return sum(1 for part in content.get("parts") or () if _get(part, field) is not None)


def _check_config(config: JsonObject) -> None:
    mime = _get(config, "responseMimeType")
    if mime is not None and mime not in _RESPONSE_TYPES:
        allowed = "`text/plain`, `application/json`, `application/xml`, `application/yaml` and `text/x.enum`"
        raise request_field(
            _REQUEST, "generation_config.response_mime_type", f"allowed mimetypes are {allowed}."
        )
    schemas = [_get(config, name) is not None for name in ("responseSchema", "responseJsonSchema")]
    if all(schemas):
        problem = "response_schema and response_json_schema cannot both be set."
        raise request_field(_REQUEST, "generation_config.response_json_schema", problem)
    if any(schemas) and mime not in ("application/json", "text/x.enum"):
        problem = (
            "response_mime_type must be one of ['application/json', 'text/x.enum'] when a schema is set."
        )
        raise request_field(_REQUEST, "generation_config.response_mime_type", problem)
    count = _get(config, "candidateCount")
    if count is not None and not 1 <= int(count) <= 8:
        raise request_field(_REQUEST, "generation_config.candidate_count", "must be in the range [1, 8].")
    temperature = _get(config, "temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise request_field(_REQUEST, "generation_config.temperature", "must be in the range [0.0, 2.0].")
    top_p = _get(config, "topP")
    if top_p is not None and not 0 <= top_p <= 1:
        raise request_field(_REQUEST, "generation_config.top_p", "must be in the range [0.0, 1.0].")
    if len(_get(config, "stopSequences") or ()) > 5:
        raise request_field(_REQUEST, "generation_config.stop_sequences", "at most 5 stop sequences.")


def _check_tools(tools: list[JsonObject]) -> set[str]:
    names: set[str] = set()
    for t, tool in enumerate(tools):
        for d, declaration in enumerate(_get(tool, "functionDeclarations") or ()):
            path = f"tools[{t}].function_declarations[{d}]"
            name = declaration.get("name") or ""
            if not _FUNCTION_NAME.match(name):
                raise request_field(
                    _REQUEST,
                    f"{path}.name",
                    "Invalid function name. Must start with a letter or an underscore. Must be alphameric "
                    "(a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum "
                    "length of 128.",
                )
            if (
                _get(declaration, "parameters") is not None
                and _get(declaration, "parametersJsonSchema") is not None
            ):
                problem = "parameters and parameters_json_schema are mutually exclusive."
                raise request_field(_REQUEST, f"{path}.parameters", problem)
            names.add(name)
    return names


def _check_tool_config(config: JsonObject, names: set[str]) -> None:
    calling = _get(config, "functionCallingConfig") or {}
    allowed = _get(calling, "allowedFunctionNames")
    mode = str(calling.get("mode") or "AUTO").upper()
    path = "tool_config.function_calling_config.allowed_function_names"
    if allowed and mode not in ("ANY", "VALIDATED"):
        raise request_field(_REQUEST, path, "allowed_function_names may only be set when mode is ANY.")
    for name in allowed or ():
        if name not in names:
            raise request_field(_REQUEST, path, f"function '{name}' is not declared in tools.")


# --- embeddings ---------------------------------------------------------------------------------------


def check_batch_embed(body: JsonObject, model: str, namespace: str) -> list[JsonObject]:
    """The requests of a `batchEmbedContents` body for `models/{model}`."""
    check_message(body, "BatchEmbedContentsRequest", "", namespace)
    requests: list[JsonObject] = body.get("requests") or []
    if not requests:
        raise request_field("BatchEmbedContentsRequest", "requests", "at least one request is required.")
    if len(requests) > 100:
        raise request_field(
            "BatchEmbedContentsRequest", "requests", "at most 100 requests can be in one batch."
        )
    for index, request in enumerate(requests):
        name = request.get("model") or ""
        path = f"requests[{index}]"
        if not name.startswith("models/"):
            raise request_field("BatchEmbedContentsRequest", f"{path}.model", "unexpected model name format")
        if name != f"models/{model}":
            problem = (
                f"Model name in the request ({name}) does not match the model in the URL (models/{model})."
            )
            raise request_field("BatchEmbedContentsRequest", f"{path}.model", problem)
        content = request.get("content")
        if not content or not content.get("parts"):
            raise request_field("BatchEmbedContentsRequest", f"{path}.content", "content is not specified")
    return requests
