"""The OpenAI chat and embeddings requests as Mistral's: the same shape, with Mistral's names and rules.

Mistral refuses every field it does not know (422 `extra_forbidden`, `stream_options` and
`max_completion_tokens` included), so its body is built field by field from the parsed request, never
copied. The differences:

- `seed` is `random_seed`; `max_completion_tokens` is `max_tokens`; `tool_choice: "required"` is `"any"`;
  `developer` messages are `system` ones; `user` and `n` > 1 have no equivalent (`n` is refused: the
  gateway's OpenAI answer has one choice);
- tool call ids must be 9 letters or digits: other ids (another vendor's `call_...`) are replaced by a
  stable 9-character digest, the same in the assistant's call and in the tool's answer;
- a conversation may end with an assistant message only as a `prefix` for the answer to continue;
- Mistral-only fields a client sends through the OpenAI SDK's `extra_body` (`safe_prompt`,
  `random_seed`, `prompt_mode`) and the OpenAI fields Mistral shares (`prediction`, `prompt_cache_key`,
  `reasoning_effort`) go through as they are;
- embeddings take `output_dimension` for `dimensions`, and always come back as floats (base64 is encoded
  by the gateway).
"""

from __future__ import annotations

import hashlib
import re
import string
from typing import Any

import msgspec
import orjson

from gateway.errors import InvalidRequest
from providers.chat import (
    AudioPart,
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    NamedToolChoice,
    RefusalPart,
    TextPart,
    Tool,
    data_url,
    parse_chat,
    parse_embeddings,
)

_TOOL_ID = re.compile(r"[A-Za-z0-9]{9}")
_ID_ALPHABET = string.ascii_letters + string.digits
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}


class _Extras(msgspec.Struct):
    """Fields the OpenAI request view does not read, forwarded when present."""

    safe_prompt: bool | None = None
    random_seed: int | None = None
    prompt_mode: str | None = None
    prediction: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    reasoning_effort: str | None = None


_extras = msgspec.json.Decoder(_Extras)


def chat_body(body: bytes, model: str, stream: bool) -> bytes:
    request = parse_chat(body)
    try:
        extras = _extras.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    if request.n is not None and request.n > 1:
        raise InvalidRequest("Mistral LLMs answer one choice here: `n` must be 1")
    out: dict[str, Any] = {"model": model, "messages": messages(request.messages)}
    optional: dict[str, Any] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_output,
        "stop": request.stop,
        "random_seed": request.seed if request.seed is not None else extras.random_seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "tools": [_tool(tool) for tool in request.tools] if request.tools else None,
        "tool_choice": _tool_choice(request),
        "parallel_tool_calls": request.parallel_tool_calls,
        "response_format": _response_format(request),
        "safe_prompt": extras.safe_prompt,
        "prompt_mode": extras.prompt_mode,
        "prediction": extras.prediction,
        "prompt_cache_key": extras.prompt_cache_key,
        "reasoning_effort": extras.reasoning_effort,
    }
    out.update((name, value) for name, value in optional.items() if value is not None)
    if stream:
        out["stream"] = True
    return orjson.dumps(out)


def embeddings_body(body: bytes, model: str) -> bytes:
    request = parse_embeddings(body)
    out: dict[str, Any] = {"model": model, "input": request.texts()}
    if request.dimensions is not None:
        out["output_dimension"] = request.dimensions
    return orjson.dumps(out)


# --- messages ---------------------------------------------------------------------------------------------


def messages(conversation: list[Message]) -> list[dict[str, Any]]:
    out = [_message(message) for message in conversation]
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant" and "tool_calls" not in last:
        last["prefix"] = True  # Mistral answers after a user or tool message, or continues a prefix
    return out


def _message(message: Message) -> dict[str, Any]:
    role = message.role
    if role in ("system", "developer"):
        return {"role": "system", "content": message.text()}
    if role == "user":
        content = message.content
        return {"role": "user", "content": content if isinstance(content, str) else _parts(message)}
    if role == "assistant":
        return _assistant(message)
    if role == "tool":
        out: dict[str, Any] = {"role": "tool", "content": message.text()}
        if message.tool_call_id is not None:
            out["tool_call_id"] = tool_id(message.tool_call_id)
        if message.name:
            out["name"] = message.name
        return out
    raise InvalidRequest("Mistral LLMs take no 'function' messages (legacy function calling): use tools")


def _assistant(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant"}
    text = "".join(
        part.text if isinstance(part, TextPart) else part.refusal if isinstance(part, RefusalPart) else ""
        for part in message.parts()
    )
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": tool_id(call.id),
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ]
    if text or not message.tool_calls:  # Mistral wants content or tool calls, never neither
        out["content"] = text
    return out


def _parts(message: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in message.parts():
        if isinstance(part, TextPart):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            url = part.image_url.url
            data_url(url)  # a malformed data URL is the client's 400, not Mistral's
            image: Any = {"url": url, "detail": part.image_url.detail} if part.image_url.detail else url
            out.append({"type": "image_url", "image_url": image})
        elif isinstance(part, AudioPart):
            out.append({"type": "input_audio", "input_audio": part.input_audio.get("data", "")})
        elif isinstance(part, FilePart):
            raise InvalidRequest("Mistral LLMs take no 'file' content parts here: send text or image_url")
        else:
            out.append({"type": "text", "text": part.refusal})
    return out


def tool_id(call_id: str) -> str:
    """`call_id` when Mistral accepts it (9 letters or digits), else a stable 9-character digest of it."""
    if _TOOL_ID.fullmatch(call_id):
        return call_id
    number = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        number, digit = divmod(number, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[digit])
    return "".join(chars)


# --- tools and formats ------------------------------------------------------------------------------------


def _tool(tool: Tool) -> dict[str, Any]:
    function = tool.function
    spec: dict[str, Any] = {"name": function.name, "parameters": function.parameters or _EMPTY_PARAMETERS}
    if function.description is not None:
        spec["description"] = function.description
    if function.strict is not None:
        spec["strict"] = function.strict
    return {"type": "function", "function": spec}


def _tool_choice(request: ChatRequest) -> Any:
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice):
        return {"type": "function", "function": {"name": choice.function.name}}
    return "any" if choice == "required" else choice


def _response_format(request: ChatRequest) -> dict[str, Any] | None:
    response_format = request.response_format
    if response_format is None:
        return None
    schema = response_format.json_schema
    if response_format.type != "json_schema" or schema is None:
        return {"type": response_format.type}
    spec: dict[str, Any] = {"name": schema.name, "schema": schema.schema or {}}
    if schema.description is not None:
        spec["description"] = schema.description
    if schema.strict is not None:
        spec["strict"] = schema.strict
    return {"type": "json_schema", "json_schema": spec}
