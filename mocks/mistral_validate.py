"""What Mistral's API rejects, in its two ways: FastAPI/pydantic's 422 `{"detail": [...]}` for the shape of
the body (unknown fields are `extra_forbidden`: `stream_options`, `max_completion_tokens`, `seed`, ...),
and 400 `{"object": "error", ...}` for the rules across fields (message order, tool call ids, models).

The fields are the mistralai SDK's `ChatCompletionRequest` and `EmbeddingRequest`; pydantic's error
types and wording; locations as FastAPI gives them, messages' with their role tag
(`["body", "messages", 0, "user", "content"]`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from mocks.openai_errors import JsonObject

Loc = tuple[str | int, ...]
Errors = list[JsonObject]
Check = Callable[[Loc, Any, Errors], None]

_TOOL_ID = re.compile(r"[A-Za-z0-9]{9}")


class Unprocessable(Exception):
    """422 with pydantic's error list."""

    def __init__(self, errors: Errors) -> None:
        super().__init__(f"{len(errors)} validation errors")
        self.errors = errors

    def body(self) -> bytes:
        return orjson.dumps({"detail": self.errors})


class MistralError(Exception):
    """400-style errors: `{"object": "error", "message", "type", "param", "code"}`."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.headers: list[tuple[bytes, bytes]] = []

    def body(self) -> bytes:
        error = {
            "object": "error",
            "message": self.message,
            "type": self.kind,
            "param": None,
            "code": self.code,
        }
        return orjson.dumps(error)


def error(errors: Errors, kind: str, loc: Loc, msg: str, value: Any, **ctx: Any) -> None:
    item: JsonObject = {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}
    if ctx:
        item["ctx"] = ctx
    errors.append(item)


# --- field checks (None is "not given": every optional field of the SDK is nullable or defaulted) -------


def _of_type(kind: type | tuple[type, ...], code: str, msg: str) -> Check:
    def check(loc: Loc, value: Any, errors: Errors) -> None:
        if not isinstance(value, kind):
            error(errors, code, loc, msg, value)

    return check


STRING = _of_type(str, "string_type", "Input should be a valid string")
BOOLEAN = _of_type(bool, "bool_type", "Input should be a valid boolean")
OBJECT = _of_type(dict, "dict_type", "Input should be a valid dictionary")


def number(ge: float | None = None, le: float | None = None, integer: bool = False) -> Check:
    code, what = ("int_type", "integer") if integer else ("float_type", "number")

    def check(loc: Loc, value: Any, errors: Errors) -> None:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (not integer and isinstance(value, float))
        ):
            error(errors, code, loc, f"Input should be a valid {what}", value)
        elif ge is not None and value < ge:
            message = f"Input should be greater than or equal to {ge}"
            error(errors, "greater_than_equal", loc, message, value, ge=ge)
        elif le is not None and value > le:
            message = f"Input should be less than or equal to {le}"
            error(errors, "less_than_equal", loc, message, value, le=le)

    return check


def literal(*allowed: str) -> Check:
    quoted = [f"'{value}'" for value in allowed]
    expected = " or ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else quoted[0]

    def check(loc: Loc, value: Any, errors: Errors) -> None:
        if value not in allowed:
            error(errors, "literal_error", loc, f"Input should be {expected}", value, expected=expected)

    return check


def list_of(item: Check) -> Check:
    def check(loc: Loc, value: Any, errors: Errors) -> None:
        if not isinstance(value, list):
            error(errors, "list_type", loc, "Input should be a valid list", value)
            return
        for index, element in enumerate(value):
            item((*loc, index), element, errors)

    return check


def fields(table: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    """An object with these members only (pydantic's `extra="forbid"`)."""

    def check(loc: Loc, value: Any, errors: Errors) -> None:
        if not isinstance(value, dict):
            error(errors, "model_attributes_type", loc, "Input should be a valid dictionary or object", value)
            return
        for name in required:
            if name not in value:
                error(errors, "missing", (*loc, name), "Field required", value)
        for name, member in value.items():
            if name not in table:
                error(errors, "extra_forbidden", (*loc, name), "Extra inputs are not permitted", member)
            elif member is not None:
                table[name]((*loc, name), member, errors)

    return check


def tagged(tag: str, variants: dict[str, Check]) -> Check:
    """A discriminated union: the variant named by `tag`; the variant's name joins the location."""
    expected = ", ".join(f"'{name}'" for name in variants)

    def check(loc: Loc, value: Any, errors: Errors) -> None:
        if not isinstance(value, dict) or tag not in value:
            error(
                errors,
                "union_tag_not_found",
                loc,
                f"Unable to extract tag using discriminator '{tag}'",
                value,
            )
            return
        name = value[tag]
        if name not in variants:
            message = (
                f"Input tag '{name}' found using '{tag}' does not match any of the expected tags: {expected}"
            )
            error(errors, "union_tag_invalid", loc, message, value, tag=name, expected_tags=expected)
            return
        variants[name]((*loc, name), value, errors)

    return check


def either(*checks: Check) -> Check:
    """The first alternative that accepts the value; else the errors of the last one."""

    def check(loc: Loc, value: Any, errors: Errors) -> None:
        for alternative in checks:
            found: Errors = []
            alternative(loc, value, found)
            if not found:
                return
        errors.extend(found)

    return check


# --- the request bodies -------------------------------------------------------------------------------

_TEXT = fields({"type": STRING, "text": STRING}, ("text",))
_IMAGE_URL = either(STRING, fields({"url": STRING, "detail": literal("low", "auto", "high")}, ("url",)))
_CHUNKS: dict[str, Check] = {
    "text": _TEXT,
    "image_url": fields({"type": STRING, "image_url": _IMAGE_URL}, ("image_url",)),
    "input_audio": fields({"type": STRING, "input_audio": STRING}, ("input_audio",)),
    "document_url": fields(
        {"type": STRING, "document_url": STRING, "document_name": STRING}, ("document_url",)
    ),
    "file": fields({"type": STRING, "file_id": STRING}, ("file_id",)),
    "thinking": fields({"type": STRING, "thinking": list_of(_TEXT), "signature": STRING, "closed": BOOLEAN}),
}
_CONTENT = either(STRING, list_of(tagged("type", _CHUNKS)))
_SYSTEM_CONTENT = either(STRING, list_of(tagged("type", {"text": _TEXT, "thinking": _CHUNKS["thinking"]})))
_FUNCTION_CALL = fields({"name": STRING, "arguments": either(STRING, OBJECT)}, ("name", "arguments"))
_TOOL_CALL = fields({"id": STRING, "type": STRING, "function": _FUNCTION_CALL, "index": number(integer=True)},
                    ("function",))  # fmt: skip
_MESSAGES = list_of(
    tagged(
        "role",
        {
            "system": fields({"role": STRING, "content": _SYSTEM_CONTENT}, ("content",)),
            "user": fields({"role": STRING, "content": _CONTENT}, ("content",)),
            "assistant": fields(
                {"role": STRING, "content": _CONTENT, "tool_calls": list_of(_TOOL_CALL), "prefix": BOOLEAN}
            ),
            "tool": fields(
                {"role": STRING, "content": _CONTENT, "tool_call_id": STRING, "name": STRING}, ("content",)
            ),
        },
    )
)
_FUNCTION = fields(
    {"name": STRING, "parameters": OBJECT, "description": STRING, "strict": BOOLEAN}, ("name", "parameters")
)
_TOOL = fields({"type": literal("function"), "function": _FUNCTION}, ("function",))
_TOOL_CHOICE = either(
    literal("auto", "none", "any", "required"),
    fields({"type": STRING, "function": fields({"name": STRING}, ("name",))}, ("function",)),
)
_JSON_SCHEMA = fields(
    {"name": STRING, "schema": OBJECT, "description": STRING, "strict": BOOLEAN}, ("name", "schema")
)
_RESPONSE_FORMAT = fields(
    {"type": literal("text", "json_object", "json_schema"), "json_schema": _JSON_SCHEMA}
)

CHAT = fields(
    {
        "model": STRING,
        "messages": _MESSAGES,
        "temperature": number(0),
        "top_p": number(0, 1),
        "max_tokens": number(0, integer=True),
        "stream": BOOLEAN,
        "stop": either(STRING, list_of(STRING)),
        "random_seed": number(0, integer=True),
        "metadata": OBJECT,
        "response_format": _RESPONSE_FORMAT,
        "tools": list_of(_TOOL),
        "tool_choice": _TOOL_CHOICE,
        "presence_penalty": number(-2, 2),
        "frequency_penalty": number(-2, 2),
        "min_tokens": number(0, integer=True),
        "repetition_penalty": number(0),
        "top_k": number(0, integer=True),
        "logprobs": BOOLEAN,
        "top_logprobs": number(0, integer=True),
        "prompt_logprobs": BOOLEAN,
        "top_prompt_logprobs": number(0, integer=True),
        "n": number(1, integer=True),
        "prediction": fields({"type": literal("content"), "content": STRING}),
        "parallel_tool_calls": BOOLEAN,
        "reasoning_effort": literal("none", "minimal", "low", "medium", "high", "xhigh", "max"),
        "prompt_mode": literal("reasoning"),
        "guardrails": list_of(OBJECT),
        "prompt_cache_key": STRING,
        "service_tier": literal("auto", "standard_only"),
        "safe_prompt": BOOLEAN,
    },
    ("model", "messages"),
)
EMBEDDINGS = fields(
    {
        "model": STRING,
        "input": either(STRING, list_of(STRING)),
        "metadata": OBJECT,
        "output_dimension": number(1, integer=True),
        "output_dtype": literal("float", "int8", "uint8", "binary", "ubinary"),
        "encoding_format": literal("float", "base64"),
    },
    ("model", "input"),
)


def validate(check: Check, body: Any) -> None:
    errors: Errors = []
    check((), body, errors)
    if errors:
        raise Unprocessable(errors)


def check_conversation(messages: list[JsonObject]) -> None:
    """The rules across messages, which Mistral answers with 400."""
    for message in messages:
        if (
            message["role"] == "assistant"
            and message.get("content") is None
            and not message.get("tool_calls")
        ):
            raise MistralError(400, "Assistant message must have either content or tool_calls, but not none.")
        ids = [call.get("id") for call in message.get("tool_calls") or ()]
        if message["role"] == "tool":
            ids.append(message.get("tool_call_id"))
        for call_id in ids:
            if call_id is not None and not _TOOL_ID.fullmatch(call_id):
                message_text = f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9."
                raise MistralError(400, message_text, "invalid_function_call", "3280")
    last = messages[-1] if messages else None
    if last is None:
        raise MistralError(400, "Expected at least one message")
    if last["role"] not in ("user", "tool") and not (last["role"] == "assistant" and last.get("prefix")):
        role = last["role"]
        raise MistralError(
            400, f"Expected last role User or Tool (or Assistant with prefix True) for serving but got {role}"
        )
