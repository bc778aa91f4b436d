"""The `messages` array of a Chat Completions request: its shape rules and how to read its text."""

from __future__ import annotations

from typing import Any

from mocks.openai_errors import (
    OBJECT,
    STRING,
    ApiError,
    Check,
    JsonObject,
    empty_array,
    invalid_type,
    invalid_value,
    missing,
    one_of,
    require,
)

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
# Which content-part types each role may send (the SDK's message param types).
_TEXT_ONLY = ("text",)
_USER_PARTS = ("text", "image_url", "input_audio", "file")
_ASSISTANT_PARTS = ("text", "refusal")
_TEXT_KINDS = _ASSISTANT_PARTS
# "preceeding" is the real API's spelling.
_ORPHAN_TOOL = (
    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
    "with 'tool_calls'."
)


# --- content parts ----------------------------------------------------------------------------------


def _text_part(param: str, part: JsonObject) -> None:
    require(part, "text", f"{param}.text", STRING)


def _image_part(param: str, part: JsonObject) -> None:
    image = require(part, "image_url", f"{param}.image_url", OBJECT)
    require(image, "url", f"{param}.image_url.url", STRING)


def _audio_part(param: str, part: JsonObject) -> None:
    audio = require(part, "input_audio", f"{param}.input_audio", OBJECT)
    require(audio, "data", f"{param}.input_audio.data", STRING)
    require(audio, "format", f"{param}.input_audio.format", one_of("wav", "mp3"))


def _file_part(param: str, part: JsonObject) -> None:
    require(part, "file", f"{param}.file", OBJECT)


def _refusal_part(param: str, part: JsonObject) -> None:
    require(part, "refusal", f"{param}.refusal", STRING)


_PART_CHECKS = {
    "text": _text_part,
    "image_url": _image_part,
    "input_audio": _audio_part,
    "file": _file_part,
    "refusal": _refusal_part,
}


def _check_content(param: str, content: Any, allowed: tuple[str, ...]) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid_type(param, "one of a string or array of objects", content)
    if not content:
        raise empty_array(param)
    for index, part in enumerate(content):
        part_param = f"{param}[{index}]"
        OBJECT(part_param, part)
        kind = require(part, "type", f"{part_param}.type", STRING)
        if kind not in allowed:
            raise invalid_value(f"{part_param}.type", kind, allowed)
        _PART_CHECKS[kind](part_param, part)


# --- one message per role -----------------------------------------------------------------------------


def _content_required(allowed: tuple[str, ...]) -> Check:
    def check(param: str, message: JsonObject) -> None:
        content = message.get("content")
        if content is None:
            raise missing(f"{param}.content")
        _check_content(f"{param}.content", content, allowed)

    return check


def _check_tool_call(param: str, call: Any) -> None:
    OBJECT(param, call)
    require(call, "id", f"{param}.id", STRING)
    kind = require(call, "type", f"{param}.type", one_of("function", "custom"))
    spec = require(call, kind, f"{param}.{kind}", OBJECT)
    require(spec, "name", f"{param}.{kind}.name", STRING)
    # Function calls carry JSON `arguments`; custom tool calls carry free-form `input`.
    key = "arguments" if kind == "function" else "input"
    require(spec, key, f"{param}.{kind}.{key}", STRING)


def _assistant(param: str, message: JsonObject) -> None:
    content, calls = message.get("content"), message.get("tool_calls")
    if content is not None:
        _check_content(f"{param}.content", content, _ASSISTANT_PARTS)
    if calls is not None:
        if not isinstance(calls, list):
            raise invalid_type(f"{param}.tool_calls", "an array", calls)
        if not calls:
            raise empty_array(f"{param}.tool_calls")
        for index, call in enumerate(calls):
            _check_tool_call(f"{param}.tool_calls[{index}]", call)
    elif content is None and message.get("function_call") is None and message.get("audio") is None:
        raise missing(f"{param}.content")


def _tool(param: str, message: JsonObject) -> None:
    require(message, "tool_call_id", f"{param}.tool_call_id", STRING)
    _content_required(_TEXT_ONLY)(param, message)


def _function(param: str, message: JsonObject) -> None:
    require(message, "name", f"{param}.name", STRING)
    # The legacy function result may have null content, but the key must be there.
    if "content" not in message:
        raise missing(f"{param}.content")
    if message["content"] is not None:
        STRING(f"{param}.content", message["content"])


_ROLE_CHECKS: dict[str, Check] = {
    "system": _content_required(_TEXT_ONLY),
    "developer": _content_required(_TEXT_ONLY),
    "user": _content_required(_USER_PARTS),
    "assistant": _assistant,
    "tool": _tool,
    "function": _function,
}


def _check_message(param: str, message: Any) -> None:
    OBJECT(param, message)
    role = require(message, "role", f"{param}.role", STRING)
    if role not in ROLES:
        raise invalid_value(f"{param}.role", role, ROLES)
    name = message.get("name")
    if name is not None and role != "function":
        STRING(f"{param}.name", name)
    _ROLE_CHECKS[role](param, message)


# --- the conversation as a whole -------------------------------------------------------------------------


def _unanswered(index: int, ids: list[str]) -> ApiError:
    message = (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(ids)}"
    )
    return ApiError(400, message, f"messages.[{index}].role")


def _check_tool_pairing(messages: list[JsonObject]) -> None:
    """Tool results must answer the tool calls of the assistant message right before them, all of them."""
    answering = False  # inside the run of tool results that follows an assistant's tool calls
    pending: list[str] = []  # ids not yet answered, in call order (for the error message)
    opened_at = 0
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            call_id = message["tool_call_id"]
            if not answering:
                raise ApiError(400, _ORPHAN_TOOL, f"messages.[{index}].role")
            if call_id not in pending:
                text = f"Invalid parameter: 'tool_call_id' of '{call_id}' "
                text += "not found in 'tool_calls' of previous message."
                raise ApiError(400, text, f"messages.[{index}].tool_call_id")
            pending.remove(call_id)
            continue
        if pending:
            raise _unanswered(index, pending)
        answering = message["role"] == "assistant" and bool(message.get("tool_calls"))
        if answering:
            pending, opened_at = [call["id"] for call in message["tool_calls"]], index
    if pending:
        raise _unanswered(opened_at, pending)


def check_messages(param: str, messages: Any) -> None:
    if not isinstance(messages, list):
        raise invalid_type(param, "an array", messages)
    if not messages:
        raise ApiError(400, f"[] is too short - '{param}'", param)
    for index, message in enumerate(messages):
        _check_message(f"{param}[{index}]", message)
    _check_tool_pairing(messages)


# --- reading a (valid) message ----------------------------------------------------------------------------


def message_text(message: JsonObject) -> str:
    """The text a message carries: its string content, or its text/refusal parts joined by a space."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if not content:
        return ""
    return " ".join(
        part.get("text") or part.get("refusal") or "" for part in content if part["type"] in _TEXT_KINDS
    )


def last_user_text(messages: list[JsonObject]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return message_text(message)
    return ""
