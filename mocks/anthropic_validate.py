"""What the Anthropic Messages API refuses, with its status, error type and wording, for MockAnthropic.

Checked against the official SDK's request types (anthropic 2.x) and the API's documented errors.
Two API versions differ: `2023-06-01` takes `temperature`, `top_p` and `top_k`; `2026-10-21` (the
SDK 2.x default) refuses them as extra inputs. Consecutive turns of one role are accepted (the API
combines them), a conversation must start with a user turn, and no model of the mock's catalog takes
`system` turns inside `messages` (only Opus 4.8 and later do).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

import orjson

JsonObject = dict[str, Any]

VERSIONS = frozenset({"2023-01-01", "2023-06-01", "2026-10-21"})
NO_SAMPLING_SINCE = "2026-10-21"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_SAMPLING = ("temperature", "top_p", "top_k")
_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "metadata", "stop_sequences", "stream", "system", "temperature",
        "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", "output_config",
        "output_format", "container", "context_management", "mcp_servers", "cache_control",
        "inference_geo", "speed", "diagnostics", "user_profile_id", "workspace_id",
    }
)  # fmt: skip
_BLOCK_TYPES = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking", "search_result"}
)
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_CHOICES = ("auto", "any", "tool", "none")
_NON_EMPTY = "all messages must have non-empty content except for the optional final assistant message"


class ApiError(Exception):
    """One error answer: `{"type": "error", "error": {"type", "message"}, "request_id"}`."""

    def __init__(
        self, status: int, kind: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers

    def body(self, request_id: str) -> bytes:
        error = {"type": self.kind, "message": self.message}
        return orjson.dumps({"type": "error", "error": error, "request_id": request_id})


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def parse_body(raw: bytes) -> JsonObject:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("There was an error parsing the body of your request as JSON.") from None
    if not isinstance(body, dict):
        raise invalid("Input should be a valid dictionary or object to extract fields from")
    return body


def check_version(version: str | None) -> str:
    if not version:
        raise invalid("anthropic-version: header is required")
    if version not in VERSIONS:
        raise invalid(f'anthropic-version: "{version}" is not a valid version')
    return version


def validate_messages(body: JsonObject, version: str, *, count_only: bool = False) -> None:
    """Raise the API's error for the first thing it would refuse in a Messages request."""
    for name in body:
        if name not in _FIELDS or (name in _SAMPLING and version >= NO_SAMPLING_SINCE):
            raise invalid(f"{name}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str):
        raise invalid(
            "model: Field required" if "model" not in body else "model: Input should be a valid string"
        )
    if not count_only:
        _check_max_tokens(body.get("max_tokens"), "max_tokens" in body)
    _check_system(body.get("system"))
    _check_sampling(body)
    _check_stops(body.get("stop_sequences"))
    _check_metadata(body.get("metadata"))
    names = _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"), names)
    _check_output_config(body.get("output_config"))
    _check_messages(body.get("messages"), "messages" in body)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_max_tokens(value: Any, present: bool) -> None:
    if not present:
        raise invalid("max_tokens: Field required")
    if not _is_int(value):
        raise invalid("max_tokens: Input should be a valid integer")
    if value < 0:
        raise invalid("max_tokens: Input should be greater than or equal to 0")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string")
    for index, block in enumerate(system):
        if (
            not isinstance(block, dict)
            or block.get("type") != "text"
            or not isinstance(block.get("text"), str)
        ):
            raise invalid(f"system.{index}: Input should be a valid text block")


def _check_sampling(body: JsonObject) -> None:
    for name, upper in (("temperature", 1), ("top_p", 1)):
        if name not in body:
            continue
        value = body[name]
        if not _is_number(value):
            raise invalid(f"{name}: Input should be a valid number")
        if value < 0:
            raise invalid(f"{name}: Input should be greater than or equal to 0")
        if value > upper:
            raise invalid(f"{name}: Input should be less than or equal to {upper}")
    if "top_k" in body and (not _is_int(body["top_k"]) or body["top_k"] < 0):
        raise invalid("top_k: Input should be a valid integer greater than or equal to 0")


def _check_stops(stops: Any) -> None:
    if stops is None:
        return
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop_sequences: Input should be a valid list of strings")


def _check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise invalid("metadata: Input should be a valid dictionary")
    for key, value in metadata.items():
        if key != "user_id":
            raise invalid(f"metadata.{key}: Extra inputs are not permitted")
        if value is not None and not isinstance(value, str):
            raise invalid("metadata.user_id: Input should be a valid string")


def _check_tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    names: set[str] = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid(f"tools.{index}: Input should be a valid dictionary")
        if tool.get("type") not in (None, "custom"):
            continue  # server tools (web search, code execution, ...) have their own shapes
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise invalid(
                f"tools.{index}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            )
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise invalid(f"tools.{index}.custom.input_schema: Field required")
        if schema.get("type") != "object":
            raise invalid(f"tools.{index}.custom.input_schema.type: Input should be 'object'")
        if name in names:
            raise invalid("tools: Tool names must be unique.")
        names.add(name)
    return names


def _check_tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in _CHOICES:
        raise invalid("tool_choice: Input tag should be 'auto', 'any', 'tool' or 'none'")
    if choice["type"] == "none" and "disable_parallel_tool_use" in choice:
        raise invalid("tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted")
    if choice["type"] != "none" and not names:
        raise invalid("tool_choice may only be specified while providing tools")
    if choice["type"] == "tool":
        if not isinstance(choice.get("name"), str):
            raise invalid("tool_choice.tool.name: Field required")
        if choice["name"] not in names:
            raise invalid(f"Tool '{choice['name']}' not found in provided tools")


def _check_output_config(config: Any) -> None:
    if config is None:
        return
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise invalid("output_config.format.type: Input should be 'json_schema'")
    if not isinstance(fmt.get("schema"), dict):
        raise invalid("output_config.format.schema: Field required")


# --- messages ------------------------------------------------------------------------------------------


def _check_messages(messages: Any, present: bool) -> None:
    if not present:
        raise invalid("messages: Field required")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")
    turns: list[tuple[int, str, list[JsonObject]]] = []  # (first index, role, blocks), roles combined
    for index, message in enumerate(messages):
        role, blocks = _message(index, message, last=index == len(messages) - 1)
        if turns and turns[-1][1] == role:
            turns[-1][2].extend(blocks)
        else:
            turns.append((index, role, blocks))
    if turns[0][1] != "user":
        raise invalid('messages: first message must use the "user" role')
    _check_tool_pairs(turns)


def _message(index: int, message: Any, last: bool) -> tuple[str, list[JsonObject]]:
    param = f"messages.{index}"
    if not isinstance(message, dict):
        raise invalid(f"{param}: Input should be a valid dictionary")
    role = message.get("role")
    if role == "system":
        raise invalid(f"{param}: role 'system' is not supported on this model")
    if role not in ("user", "assistant"):
        raise invalid(f"{param}.role: Input should be 'user' or 'assistant'")
    if "content" not in message:
        raise invalid(f"{param}.content: Field required")
    content = message["content"]
    if isinstance(content, str):
        if not content and not (last and role == "assistant"):
            raise invalid(f"{param}: {_NON_EMPTY}")
        return role, [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid(f"{param}.content: Input should be a valid list")
    if not content and not (last and role == "assistant"):
        raise invalid(f"{param}: {_NON_EMPTY}")
    for position, block in enumerate(content):
        _block(f"{param}.content.{position}", role, block)
    return role, content


def _block(param: str, role: str, block: Any) -> None:
    if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
        tags = "', '".join(sorted(_BLOCK_TYPES))
        raise invalid(f"{param}: Input tag should be one of '{tags}'")
    kind = block["type"]
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise invalid(f"{param}.text.text: Field required")
        if not block["text"]:
            raise invalid("messages: text content blocks must be non-empty")
    elif kind == "image":
        _image(f"{param}.image.source", block.get("source"))
    elif kind == "tool_use":
        if role != "assistant":
            raise invalid(f"{param}: tool_use blocks may only be in assistant messages")
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise invalid(f"{param}.tool_use: id and name are required")
        if not isinstance(block.get("input"), dict):
            raise invalid(f"{param}.tool_use.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        if role != "user":
            raise invalid(f"{param}: tool_result blocks may only be in user messages")
        if not isinstance(block.get("tool_use_id"), str):
            raise invalid(f"{param}.tool_result.tool_use_id: Field required")


def _image(param: str, source: Any) -> None:
    if not isinstance(source, dict):
        raise invalid(f"{param}: Field required")
    kind = source.get("type")
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise invalid(f"{param}.url.url: Input should be a valid URL")
    elif kind == "base64":
        if source.get("media_type") not in IMAGE_TYPES:
            raise invalid(
                f"{param}.base64.media_type: Input should be "
                "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
            )
        try:
            base64.b64decode(source.get("data") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise invalid(f"{param}.base64.data: The image data is not valid base64") from None
    elif kind != "file":
        raise invalid(f"{param}: Input tag should be 'base64', 'url' or 'file'")


def _check_tool_pairs(turns: list[tuple[int, str, list[JsonObject]]]) -> None:
    """Each tool_result answers a tool_use of the turn just before; each tool_use is answered next."""
    for position, (index, role, blocks) in enumerate(turns):
        if role != "user":
            continue
        previous = turns[position - 1][2] if position else []
        used = [b["id"] for b in previous if isinstance(b, dict) and b.get("type") == "tool_use"]
        answered = [b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"]
        stray = [tool_id for tool_id in answered if tool_id not in used]
        if stray:
            raise invalid(
                f"messages.{index}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{stray[0]}. Each `tool_result` block must have a corresponding `tool_use` block in the "
                "previous message."
            )
        missing = [tool_id for tool_id in used if tool_id not in answered]
        if missing:
            raise invalid(
                f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )
