"""What MockOllama refuses, worded as Ollama (a Go server) words it, and the models it has pulled.

Ollama binds each body into Go structs first: a field of the wrong JSON type fails with encoding/json's
`json: cannot unmarshal ...` (400), images that are not standard base64 with `illegal base64 data at input
byte N` (400). Then the handler checks the model (400 `model is required`, 404 `model "x" not found, try
pulling it first`) and its capabilities (400), and the runner reads `options` (500 for a wrong type, as
Ollama's scheduler reports it). Unknown fields and unknown options are ignored, as Go ignores them.
One rule is the mock's own: a message role other than system, user, assistant or tool is a 400 (Ollama
lowercases roles, and so does the mock).
"""

from __future__ import annotations

import binascii
import re
from typing import Any

import msgspec
import orjson

JsonObject = dict[str, Any]

ROLES = frozenset({"system", "user", "assistant", "tool"})
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_INT_OPTIONS = frozenset(
    {"num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "mirostat", "num_ctx", "num_batch"}
    | {"num_gpu", "main_gpu", "num_thread"}
)
_FLOAT_OPTIONS = frozenset(
    {"top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty"}
    | {"frequency_penalty", "mirostat_tau", "mirostat_eta"}
)
_BOOL_OPTIONS = frozenset({"penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock"})


class OllamaError(Exception):
    """One error answer: `status` and Ollama's `{"error": "..."}` body."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []

    def body(self) -> bytes:
        return orjson.dumps({"error": self.message})


class ModelInfo(msgspec.Struct, frozen=True):
    name: str
    family: str
    parameter_size: str
    quantization: str
    size: int
    digest: str
    modified_at: str
    capabilities: frozenset[str]
    context_length: int = 4096
    dimensions: int = 0  # embedding models


MODELS: dict[str, ModelInfo] = {
    model.name: model
    for model in (
        ModelInfo(
            "llama3.2:latest", "llama", "3.2B", "Q4_K_M", 2019393189,
            "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
            "2025-05-12T09:41:02.3375231+02:00", frozenset({"completion", "tools"}), 131072,
        ),
        ModelInfo(
            "llava:latest", "llama", "7B", "Q4_0", 4733363377,
            "8dd30f6b0cb19f555f2c7a7ebda861449ea2cc76bf1f44e262931f45fc81d081",
            "2025-04-03T18:07:55.941022861+02:00", frozenset({"completion", "vision"}),
        ),
        ModelInfo(
            "nomic-embed-text:latest", "nomic-bert", "137M", "F16", 274302450,
            "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
            "2025-03-21T11:20:14.113374+01:00", frozenset({"embedding"}), 2048, 768,
        ),
    )
}  # fmt: skip


def canonical(name: str) -> str:
    """Ollama's names default to the `latest` tag and compare case-insensitively."""
    name = name.lower()
    return name if ":" in name.rpartition("/")[2] else name + ":latest"


def find_model(name: Any, endpoint: str | None = None) -> ModelInfo:
    """The pulled model `name`; one that cannot complete text refuses `endpoint` ("chat", "generate")."""
    if not isinstance(name, str) or not name:
        raise OllamaError(400, "model is required")
    info = MODELS.get(canonical(name))
    if info is None:
        raise OllamaError(404, f'model "{name}" not found, try pulling it first')
    if endpoint and "completion" not in info.capabilities:
        raise OllamaError(400, f'"{name}" does not support {endpoint}')
    return info


# --- decoding like encoding/json ------------------------------------------------------------------------


def _go_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _mismatch(value: Any, field: str, go_type: str) -> OllamaError:
    return OllamaError(
        400, f"json: cannot unmarshal {_go_kind(value)} into Go struct field {field} of type {go_type}"
    )


def parse_body(raw: bytes, go_type: str) -> JsonObject:
    if not raw.strip():
        raise OllamaError(400, "missing request body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        rest = raw[exc.pos :].strip()
        if not rest:
            raise OllamaError(400, "unexpected EOF") from None
        raise OllamaError(400, f"invalid character '{chr(rest[0])}' looking for beginning of value") from None
    if not isinstance(body, dict):
        raise OllamaError(400, f"json: cannot unmarshal {_go_kind(body)} into Go value of type {go_type}")
    return body


def _check(body: JsonObject, key: str, kind: type | tuple[type, ...], field: str, go_type: str) -> Any:
    """The value of `key` (null is Go's zero value: no error), refused when of another JSON type."""
    value = body.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise _mismatch(value, field, go_type)
    return value


def _image(value: Any) -> None:
    if not isinstance(value, str):
        raise _mismatch(value, "ChatRequest.messages.images", "api.ImageData")
    data = value.encode().replace(b"\n", b"").replace(b"\r", b"")  # Go's decoder skips newlines
    valid = _BASE64.match(data)
    end = valid.end() if valid else 0
    if end < len(data) or len(data) % 4:
        raise OllamaError(400, f"illegal base64 data at input byte {min(end, len(data) - len(data) % 4)}")
    try:
        binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        raise OllamaError(400, f"illegal base64 data at input byte {end}") from None


def _message(message: Any) -> JsonObject:
    if not isinstance(message, dict):
        raise _mismatch(message, "ChatRequest.messages", "api.Message")
    role = _check(message, "role", str, "ChatRequest.messages.role", "string") or ""
    _check(message, "content", str, "ChatRequest.messages.content", "string")
    _check(message, "tool_name", str, "ChatRequest.messages.tool_name", "string")
    for image in _check(message, "images", list, "ChatRequest.messages.images", "[]api.ImageData") or ():
        _image(image)
    for call in (
        _check(message, "tool_calls", list, "ChatRequest.messages.tool_calls", "[]api.ToolCall") or ()
    ):
        if not isinstance(call, dict):
            raise _mismatch(call, "ChatRequest.messages.tool_calls", "api.ToolCall")
        function = (
            _check(call, "function", dict, "ChatRequest.messages.tool_calls.function", "api.ToolCallFunction")
            or {}
        )
        _check(function, "name", str, "ChatRequest.messages.tool_calls.function.name", "string")
        _check(
            function,
            "arguments",
            dict,
            "ChatRequest.messages.tool_calls.function.arguments",
            "api.ToolCallFunctionArguments",
        )
    if role.lower() not in ROLES:
        raise OllamaError(400, f"invalid role {role!r}: expected one of system, user, assistant, tool")
    return {**message, "role": role.lower()}


def _options(body: JsonObject, struct: str) -> None:
    options = _check(body, "options", dict, f"{struct}.options", "map[string]interface {}") or {}
    for name, value in options.items():
        if value is None:
            continue
        if name in _INT_OPTIONS and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise OllamaError(500, f'option "{name}" must be of type integer')
        if name in _FLOAT_OPTIONS and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise OllamaError(500, f'option "{name}" must be of type float32')
        if name in _BOOL_OPTIONS and not isinstance(value, bool):
            raise OllamaError(500, f'option "{name}" must be of type boolean')
        if name == "stop":
            if not isinstance(value, list):
                raise OllamaError(500, f'option "{name}" must be of type array')
            if not all(isinstance(item, str) for item in value):
                raise OllamaError(500, f'option "{name}" must be of an array of strings')


def _format(body: JsonObject) -> None:
    value = body.get("format")
    if value in (None, "", "json") or isinstance(value, dict):
        return
    shown = orjson.dumps(value).decode()
    raise OllamaError(500, f'invalid format: {shown!r}; expected "json" or a valid JSON Schema object')


def validate_chat(body: JsonObject) -> tuple[ModelInfo, list[JsonObject]]:
    """The model and the messages (roles lowercased) of a valid `/api/chat` body."""
    _check(body, "model", str, "ChatRequest.model", "string")
    _check(body, "stream", bool, "ChatRequest.stream", "bool")
    raw_messages = _check(body, "messages", list, "ChatRequest.messages", "[]api.Message") or []
    messages = [_message(message) for message in raw_messages]
    tools = _check(body, "tools", list, "ChatRequest.tools", "api.Tools") or []
    for tool in tools:
        if not isinstance(tool, dict):
            raise _mismatch(tool, "ChatRequest.tools", "api.Tool")
        _check(tool, "function", dict, "ChatRequest.tools.function", "api.ToolFunction")
    info = find_model(body.get("model"), "chat")
    if tools and "tools" not in info.capabilities:
        raise OllamaError(400, f"registry.ollama.ai/library/{info.name} does not support tools")
    _options(body, "ChatRequest")
    _format(body)
    return info, messages


def validate_generate(body: JsonObject) -> ModelInfo:
    for key in ("model", "prompt", "system", "suffix"):
        _check(body, key, str, f"GenerateRequest.{key}", "string")
    _check(body, "stream", bool, "GenerateRequest.stream", "bool")
    for image in _check(body, "images", list, "GenerateRequest.images", "[]api.ImageData") or ():
        _image(image)
    info = find_model(body.get("model"), "generate")
    _options(body, "GenerateRequest")
    _format(body)
    return info


def validate_embed(body: JsonObject) -> tuple[ModelInfo, list[str]]:
    """The model and the texts of a valid `/api/embed` body."""
    _check(body, "model", str, "EmbedRequest.model", "string")
    _check(body, "truncate", bool, "EmbedRequest.truncate", "bool")
    _check(body, "dimensions", int, "EmbedRequest.dimensions", "int")
    value = body.get("input")
    if isinstance(value, str):
        texts = [value] if value else []
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        texts = list(value)
    elif value is None:
        texts = []
    else:
        raise OllamaError(400, "invalid input type")
    return find_model(body.get("model")), texts
