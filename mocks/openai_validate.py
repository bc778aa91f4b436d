"""What OpenAI's API rejects, per endpoint, with its wording, `param` and `code`."""

from __future__ import annotations

from typing import Any

import orjson

from mocks.openai_errors import (
    ANY,
    BOOLEAN,
    OBJECT,
    STRING,
    ApiError,
    Check,
    JsonObject,
    array_too_long,
    check_fields,
    check_name,
    decimal,
    empty_array,
    integer,
    invalid_type,
    list_of,
    missing,
    model_not_found,
    one_of,
    only_with,
    require,
)
from mocks.openai_messages import check_messages, message_text
from mocks.openai_models import MODELS, Kind, ModelInfo

_UNPARSABLE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. "
    "If you have trouble figuring out how to fix this, please contact us through our help center at "
    "help.openai.com.)"
)
_WRONG_ENDPOINT: dict[Kind, str] = {
    "chat": "This is not a chat model and thus not supported in the v1/chat/completions endpoint.",
    "embedding": "This is a chat model and not supported in the v1/embeddings endpoint.",
}
_BAD_INPUT = (
    "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
)
MAX_EMBEDDING_INPUTS = 2048
MAX_TOOLS = 128


def parse_body(raw: bytes) -> JsonObject:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, _UNPARSABLE) from None
    if not isinstance(body, dict):
        raise ApiError(400, _UNPARSABLE)
    return body


def resolve_model(body: JsonObject, kind: Kind) -> ModelInfo:
    name = body.get("model")
    if name is None:
        raise ApiError(400, "you must provide a model parameter")
    STRING("model", name)
    info = MODELS.get(name)
    if info is None:
        raise model_not_found(name)
    if info.kind != kind:
        raise ApiError(400, _WRONG_ENDPOINT[kind], "model")
    return info


# --- Chat Completions: nested parameter shapes ---------------------------------------------------------


def _optional(obj: JsonObject, param: str, checks: dict[str, Check]) -> None:
    for key, check in checks.items():
        value = obj.get(key)
        if value is not None:
            check(f"{param}.{key}", value)


def _function_def(param: str, value: Any) -> None:
    OBJECT(param, value)
    require(value, "name", f"{param}.name", check_name)
    _optional(value, param, {"description": STRING, "parameters": OBJECT, "strict": BOOLEAN})


def _tool(param: str, value: Any) -> None:
    OBJECT(param, value)
    kind = require(value, "type", f"{param}.type", one_of("function", "custom"))
    spec = require(value, kind, f"{param}.{kind}", OBJECT)
    if kind == "function":
        _function_def(f"{param}.function", spec)
    else:
        require(spec, "name", f"{param}.custom.name", check_name)


def _tools(param: str, value: Any) -> None:
    if isinstance(value, list) and not value:
        raise empty_array(param)
    list_of(_tool, MAX_TOOLS)(param, value)


def _named(param: str, value: JsonObject, kinds: tuple[str, ...]) -> None:
    kind = require(value, "type", f"{param}.type", one_of(*kinds))
    spec = require(value, kind, f"{param}.{kind}", OBJECT)
    if kind == "allowed_tools":
        require(spec, "mode", f"{param}.{kind}.mode", one_of("auto", "required"))
        require(spec, "tools", f"{param}.{kind}.tools", list_of(OBJECT))
    else:
        require(spec, "name", f"{param}.{kind}.name", STRING)


def _tool_choice(param: str, value: Any) -> None:
    if isinstance(value, str):
        one_of("none", "auto", "required")(param, value)
    elif isinstance(value, dict):
        _named(param, value, ("function", "custom", "allowed_tools"))
    else:
        raise invalid_type(param, "one of a string or object", value)


def _function_call(param: str, value: Any) -> None:
    if isinstance(value, str):
        one_of("none", "auto")(param, value)
    elif isinstance(value, dict):
        require(value, "name", f"{param}.name", STRING)
    else:
        raise invalid_type(param, "one of a string or object", value)


def _response_format(param: str, value: Any) -> None:
    OBJECT(param, value)
    kind = require(value, "type", f"{param}.type", one_of("text", "json_object", "json_schema"))
    if kind == "json_schema":
        schema = require(value, "json_schema", f"{param}.json_schema", OBJECT)
        require(schema, "name", f"{param}.json_schema.name", check_name)
        _optional(
            schema, f"{param}.json_schema", {"description": STRING, "schema": OBJECT, "strict": BOOLEAN}
        )


def _stop(param: str, value: Any) -> None:
    if not isinstance(value, str | list):
        raise invalid_type(param, "one of a string or array of strings", value)
    if isinstance(value, list):
        list_of(STRING, 4)(param, value)


def _stream_options(param: str, value: Any) -> None:
    OBJECT(param, value)
    _optional(value, param, {"include_usage": BOOLEAN, "include_obfuscation": BOOLEAN})


def _audio(param: str, value: Any) -> None:
    OBJECT(param, value)
    require(value, "format", f"{param}.format", one_of("wav", "aac", "mp3", "flac", "opus", "pcm16"))
    voice = require(value, "voice", f"{param}.voice", ANY)
    if not isinstance(voice, str | dict):
        raise invalid_type(f"{param}.voice", "one of a string or object", voice)


def _prediction(param: str, value: Any) -> None:
    OBJECT(param, value)
    require(value, "type", f"{param}.type", one_of("content"))
    content = require(value, "content", f"{param}.content", ANY)
    if not isinstance(content, str | list):
        raise invalid_type(f"{param}.content", "one of a string or array of objects", content)


def _map_of(item: Check, max_keys: int | None = None) -> Check:
    def check(param: str, value: Any) -> None:
        OBJECT(param, value)
        if max_keys is not None and len(value) > max_keys:
            message = f"Invalid '{param}': too many properties. Expected at most {max_keys} properties."
            raise ApiError(400, message, param, "object_above_max_properties")
        for key, element in value.items():
            item(f"{param}.{key}", element)

    return check


# Every parameter of the SDK's CompletionCreateParams; anything else is "Unrecognized".
CHAT_FIELDS: dict[str, Check] = {
    "model": STRING,
    "messages": check_messages,
    "audio": _audio,
    "frequency_penalty": decimal(-2, 2),
    "function_call": _function_call,
    "functions": list_of(_function_def, MAX_TOOLS),
    "logit_bias": _map_of(integer(-100, 100)),
    "logprobs": BOOLEAN,
    "max_completion_tokens": integer(1),
    "max_tokens": integer(1),
    "metadata": _map_of(STRING, 16),
    "modalities": list_of(one_of("text", "audio")),
    "moderation": OBJECT,
    "n": integer(1, 128),
    "parallel_tool_calls": BOOLEAN,
    "prediction": _prediction,
    "presence_penalty": decimal(-2, 2),
    "prompt_cache_key": STRING,
    "prompt_cache_options": OBJECT,
    "prompt_cache_retention": one_of("in_memory", "24h"),
    "reasoning_effort": one_of("none", "minimal", "low", "medium", "high", "xhigh", "max"),
    "response_format": _response_format,
    "safety_identifier": STRING,
    "seed": integer(),
    "service_tier": one_of("auto", "default", "flex", "scale", "priority", "fast"),
    "stop": _stop,
    "store": BOOLEAN,
    "stream": BOOLEAN,
    "stream_options": _stream_options,
    "temperature": decimal(0, 2),
    "tool_choice": _tool_choice,
    "tools": _tools,
    "top_logprobs": integer(0, 20),
    "top_p": decimal(0, 1),
    "user": STRING,
    "verbosity": one_of("low", "medium", "high"),
    "web_search_options": OBJECT,
}

# --- Chat Completions: rules across parameters ---------------------------------------------------------

# o-series models: these are refused outright, and sampling knobs only take their default.
_REASONING_UNSUPPORTED = ("max_tokens", "logprobs", "top_logprobs", "logit_bias")
_REASONING_DEFAULTS: dict[str, float] = {
    "temperature": 1,
    "top_p": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
}
_JSON_WORD = (
    "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'."
)


def _unsupported(name: str, hint: str = "") -> ApiError:
    message = f"Unsupported parameter: '{name}' is not supported with this model.{hint}"
    return ApiError(400, message, name, "unsupported_parameter")


def _check_model_params(body: JsonObject, info: ModelInfo) -> None:
    if not info.reasoning:
        if body.get("reasoning_effort") is not None:
            raise _unsupported("reasoning_effort")
        return
    for name in _REASONING_UNSUPPORTED:
        if body.get(name) is not None:
            raise _unsupported(name, " Use 'max_completion_tokens' instead." if name == "max_tokens" else "")
    for name, default in _REASONING_DEFAULTS.items():
        value = body.get(name)
        if value is not None and value != default:
            message = (
                f"Unsupported value: '{name}' does not support {value} with this model. "
                f"Only the default ({default:g}) value is supported."
            )
            raise ApiError(400, message, name, "unsupported_value")


def _check_tool_use(body: JsonObject) -> None:
    tools: list[JsonObject] = body.get("tools") or []
    choice = body.get("tool_choice")
    for name in ("tool_choice", "parallel_tool_calls"):
        if body.get(name) is not None and not tools:
            raise only_with(name, "tools")
    if body.get("function_call") is not None and not body.get("functions"):
        raise only_with("function_call", "functions")
    if isinstance(choice, dict) and choice["type"] in ("function", "custom"):
        kind, name = choice["type"], choice[choice["type"]]["name"]
        if name not in {tool[kind]["name"] for tool in tools if tool["type"] == kind}:
            message = f"Invalid value for 'tool_choice': {kind} '{name}' is not one of the provided 'tools'."
            raise ApiError(400, message, f"tool_choice.{kind}.name", "invalid_value")


def _check_cross(body: JsonObject, info: ModelInfo) -> None:
    if body.get("stream_options") is not None and body.get("stream") is not True:
        message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        raise ApiError(400, message, "stream_options")
    _check_tool_use(body)
    response_format = body.get("response_format") or {}
    json_mode = response_format.get("type") == "json_object"
    if json_mode and not any("json" in message_text(message).lower() for message in body["messages"]):
        raise ApiError(400, _JSON_WORD, "messages")
    _check_model_params(body, info)


def validate_chat(body: JsonObject) -> ModelInfo:
    """Raise the ApiError the real API would answer with, or return the model the request names."""
    info = resolve_model(body, "chat")
    if body.get("messages") is None:
        raise missing("messages")
    check_fields(body, CHAT_FIELDS)
    _check_cross(body, info)
    return info


# --- Embeddings ---------------------------------------------------------------------------------------

EMBEDDING_FIELDS: dict[str, Check] = {
    "model": STRING,
    "input": ANY,  # shape checked by _inputs, which also normalises it
    "dimensions": integer(1),
    "encoding_format": one_of("float", "base64"),
    "user": STRING,
}

EmbeddingInput = str | list[int]


def _is_tokens(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(token, int) and not isinstance(token, bool) and token >= 0 for token in value)
    )


def _inputs(value: Any) -> list[EmbeddingInput]:
    """One string, strings, one token list or token lists: always a list of non-empty items."""
    if isinstance(value, str) and value:
        return [value]
    if not isinstance(value, list) or not value:
        raise ApiError(400, _BAD_INPUT)
    if len(value) > MAX_EMBEDDING_INPUTS and not _is_tokens(value):
        raise array_too_long("input", MAX_EMBEDDING_INPUTS, len(value))
    if all(isinstance(item, str) and item for item in value):
        return list(value)
    if _is_tokens(value):
        return [value]
    if all(_is_tokens(item) for item in value):
        return list(value)
    raise ApiError(400, _BAD_INPUT)


def _check_dimensions(body: JsonObject, info: ModelInfo) -> int:
    dimensions = body.get("dimensions")
    if dimensions is None:
        return info.dimensions
    if not info.id.startswith("text-embedding-3"):
        raise ApiError(400, "This model does not support specifying dimensions.", "dimensions")
    integer(1, info.dimensions)("dimensions", dimensions)
    return int(dimensions)


def validate_embeddings(body: JsonObject) -> tuple[ModelInfo, list[EmbeddingInput], int]:
    """Return the model, the inputs as a list, and the vector size; or raise the real API's error."""
    info = resolve_model(body, "embedding")
    if body.get("input") is None:
        raise missing("input")
    check_fields(body, EMBEDDING_FIELDS)
    return info, _inputs(body["input"]), _check_dimensions(body, info)
