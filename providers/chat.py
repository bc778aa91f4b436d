"""The OpenAI Chat Completions request, read whole, for adapters that translate it to another vendor.

`parse_chat` gives typed Structs of everything a translator may carry over (messages with text and image
parts, tools, tool choice, sampling, response format); `parse_embeddings` the same for embeddings. The
OpenAI adapter never needs these: it forwards the client's bytes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import msgspec

from gateway.errors import InvalidRequest


class ImageUrl(msgspec.Struct, frozen=True):
    url: str
    detail: str | None = None


class TextPart(msgspec.Struct, frozen=True, tag="text", tag_field="type"):
    text: str


class ImagePart(msgspec.Struct, frozen=True, tag="image_url", tag_field="type"):
    image_url: ImageUrl


class AudioPart(msgspec.Struct, frozen=True, tag="input_audio", tag_field="type"):
    input_audio: dict[str, Any]


class FilePart(msgspec.Struct, frozen=True, tag="file", tag_field="type"):
    file: dict[str, Any]


class RefusalPart(msgspec.Struct, frozen=True, tag="refusal", tag_field="type"):
    refusal: str


Part = TextPart | ImagePart | AudioPart | FilePart | RefusalPart


class FunctionCall(msgspec.Struct, frozen=True):
    name: str
    arguments: str = ""


class ToolCall(msgspec.Struct, frozen=True):
    id: str
    function: FunctionCall
    type: str = "function"


class Message(msgspec.Struct, frozen=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[Part] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text: string content, or its text parts joined."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def parts(self) -> list[Part]:
        """The content as parts (string content is one text part)."""
        if isinstance(self.content, str):
            return [TextPart(self.content)] if self.content else []
        return list(self.content or [])


class FunctionDef(msgspec.Struct, frozen=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, frozen=True):
    function: FunctionDef
    type: Literal["function"] = "function"


class NamedFunction(msgspec.Struct, frozen=True):
    name: str


class NamedToolChoice(msgspec.Struct, frozen=True):
    function: NamedFunction
    type: Literal["function"] = "function"


class JsonSchema(msgspec.Struct, frozen=True):
    name: str
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, frozen=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool | None = None


class ChatRequest(msgspec.Struct, frozen=True):
    messages: list[Message]
    model: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None

    @property
    def max_output(self) -> int | None:
        """The answer's token limit, whichever of the two names the client used."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class EmbeddingsRequest(msgspec.Struct, frozen=True):
    input: str | list[str | int | list[int]]  # text, texts, tokens or token lists
    model: str | None = None
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    def texts(self) -> list[str]:
        """The inputs as strings; token arrays are refused (only OpenAI takes them)."""
        if isinstance(self.input, str):
            return [self.input]
        texts = [item for item in self.input if isinstance(item, str)]
        if len(texts) != len(self.input) or not texts:
            raise InvalidRequest("this LLM takes text inputs only (a string or a list of strings)")
        return texts


_chat = msgspec.json.Decoder(ChatRequest)
_embeddings = msgspec.json.Decoder(EmbeddingsRequest)


def parse_chat(body: bytes) -> ChatRequest:
    try:
        return _chat.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    except (msgspec.DecodeError, RecursionError):
        raise InvalidRequest("the request body is not valid JSON") from None


def parse_embeddings(body: bytes) -> EmbeddingsRequest:
    try:
        return _embeddings.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    except (msgspec.DecodeError, RecursionError):
        raise InvalidRequest("the request body is not valid JSON") from None


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:` URL; None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, comma, data = url[5:].partition(",")
    if not comma or not head.endswith(";base64"):
        raise InvalidRequest("image data URLs must be base64: data:<type>;base64,<data>")
    try:
        base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("the image data URL is not valid base64") from None
    return head.removesuffix(";base64") or "application/octet-stream", data
