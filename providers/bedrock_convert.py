"""OpenAI ⇄ Bedrock bodies: Chat Completions to Converse and back, embeddings to InvokeModel and back.

Converse's rules shape the translation: system prompts go to `system`, the conversation must start with
a user turn and alternate roles (consecutive same-role messages are merged, tool results become one user
turn of `toolResult` blocks), blank text blocks are refused (so they are left out), images are inline
bytes only, and there is no `seed`, `n` or JSON mode without a schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import orjson

from gateway.errors import InvalidRequest
from providers import answer
from providers.answer import FinishReason
from providers.base import Usage
from providers.chat import ChatRequest, EmbeddingsRequest, ImagePart, Message, TextPart, data_url

JsonObject = dict[str, Any]

IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}  # fmt: skip
FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_EMPTY_SCHEMA: JsonObject = {"type": "object", "properties": {}}


# --- OpenAI → Converse ---------------------------------------------------------------------------------


def converse_body(request: ChatRequest) -> JsonObject:
    """The Converse (and ConverseStream) body of an OpenAI chat request; the model goes in the path."""
    if request.n is not None and request.n > 1:
        raise InvalidRequest("Bedrock Converse answers with one choice: 'n' must be 1")
    system = [{"text": m.text()} for m in request.messages if m.role in ("system", "developer") and m.text()]
    messages = _turns([m for m in request.messages if m.role not in ("system", "developer")])
    body: JsonObject = {"messages": messages}
    if system:
        body["system"] = system
    config: JsonObject = {}
    if request.max_output is not None:
        config["maxTokens"] = request.max_output
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stops:
        config["stopSequences"] = request.stops
    if config:
        body["inferenceConfig"] = config
    tools = _tool_config(request, has_tool_blocks=_has_tool_blocks(messages))
    if tools:
        body["toolConfig"] = tools
    output = _output_config(request)
    if output:
        body["outputConfig"] = output
    return body


def _turns(messages: list[Message]) -> list[JsonObject]:
    """Converse turns: user/assistant alternating, each the merged content of consecutive messages."""
    turns: list[JsonObject] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _assistant_blocks(message) if role == "assistant" else _user_blocks(message)
        if not blocks:
            continue  # an empty message adds nothing, and Converse refuses empty content
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns or turns[0]["role"] != "user":
        raise InvalidRequest("Bedrock Converse needs the conversation to start with a user message")
    return turns


def _user_blocks(message: Message) -> list[JsonObject]:
    if message.role in ("tool", "function"):
        content = [{"text": message.text()}] if message.text() else []
        tool_id = message.tool_call_id or message.name or ""
        return [{"toolResult": {"toolUseId": tool_id, "content": content}}]
    blocks: list[JsonObject] = []
    for part in message.parts():
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image(part.image_url.url))
        else:
            kind = type(part).__struct_config__.tag
            raise InvalidRequest(
                f"Bedrock Converse through this gateway takes text and image parts, not {kind}"
            )
    return blocks


def _image(url: str) -> JsonObject:
    inline = data_url(url)
    if inline is None:
        raise InvalidRequest(
            "Bedrock cannot fetch image URLs: send the image inline as a data URL (data:image/png;base64,...)"
        )
    media_type, data = inline
    image_format = IMAGE_FORMATS.get(media_type.lower())
    if image_format is None:
        raise InvalidRequest(f"Bedrock takes png, jpeg, gif and webp images, not {media_type}")
    # A JSON blob member is base64 text: the client's base64 is sent as it is.
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _assistant_blocks(message: Message) -> list[JsonObject]:
    blocks: list[JsonObject] = [{"text": text} for text in [message.text()] if text]
    for call in message.tool_calls or ():
        try:
            arguments = orjson.loads(call.function.arguments or "{}")
        except orjson.JSONDecodeError:
            raise InvalidRequest(
                f"the arguments of tool call '{call.id}' are not JSON: Bedrock takes them as an object"
            ) from None
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": arguments}})
    return blocks


def _has_tool_blocks(turns: list[JsonObject]) -> bool:
    return any("toolUse" in b or "toolResult" in b for turn in turns for b in turn["content"])


def _tool_config(request: ChatRequest, *, has_tool_blocks: bool) -> JsonObject | None:
    if not request.tools:
        return None
    choice = request.tool_choice
    # Converse has no "none": the tools are left out, unless the history has tool blocks, which Converse
    # refuses without a toolConfig (then the tools stay, with the model's own choice).
    if choice == "none" and not has_tool_blocks:
        return None
    tools = []
    for tool in request.tools:
        spec: JsonObject = {"name": tool.function.name,
                            "inputSchema": {"json": tool.function.parameters or _EMPTY_SCHEMA}}  # fmt: skip
        if tool.function.description:
            spec["description"] = tool.function.description
        tools.append({"toolSpec": spec})
    config: JsonObject = {"tools": tools}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice is not None and choice != "none":
        config["toolChoice"] = {"tool": {"name": choice.function.name}}
    return config


def _output_config(request: ChatRequest) -> JsonObject | None:
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object" or response_format.json_schema is None:
        raise InvalidRequest(
            "Bedrock Converse has no JSON mode without a schema: use response_format "
            "{'type': 'json_schema', 'json_schema': {...}}"
        )
    schema = response_format.json_schema
    definition: JsonObject = {"schema": orjson.dumps(schema.schema or {}).decode(), "name": schema.name}
    if schema.description:
        definition["description"] = schema.description
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}


# --- Converse → OpenAI ---------------------------------------------------------------------------------


class TokenUsage(msgspec.Struct):
    inputTokens: int = 0  # Bedrock's names
    outputTokens: int = 0
    cacheReadInputTokens: int = 0
    cacheWriteInputTokens: int = 0

    def normalized(self) -> Usage:
        # Bedrock's inputTokens leaves out the cached parts (totalTokens counts them); Usage includes them.
        read, write = self.cacheReadInputTokens, self.cacheWriteInputTokens
        return Usage(self.inputTokens + read + write, self.outputTokens, read, write)


class _ToolUse(msgspec.Struct):
    toolUseId: str
    name: str
    input: Any = None


class _Block(msgspec.Struct):
    text: str | None = None
    toolUse: _ToolUse | None = None


class _Message(msgspec.Struct):
    content: list[_Block] = []


class _Output(msgspec.Struct):
    message: _Message | None = None


class ConverseAnswer(msgspec.Struct):
    output: _Output = msgspec.field(default_factory=_Output)
    stopReason: str | None = None
    usage: TokenUsage | None = None


converse_answer = msgspec.json.Decoder(ConverseAnswer)


def chat_answer(model: str, answer_: ConverseAnswer) -> tuple[bytes, Usage | None]:
    """The OpenAI chat.completion of a Converse answer, and its usage."""
    blocks = answer_.output.message.content if answer_.output.message else []
    texts = [b.text for b in blocks if b.text is not None]
    calls = [
        answer.tool_call_json(
            b.toolUse.toolUseId, b.toolUse.name, orjson.dumps(b.toolUse.input or {}).decode()
        )
        for b in blocks
        if b.toolUse is not None
    ]
    usage = answer_.usage.normalized() if answer_.usage else None
    finish = FINISH.get(answer_.stopReason or "", "stop")
    body = answer.chat_completion(model, "".join(texts) if texts or not calls else None, finish, usage, calls)
    return body, usage


# --- embeddings (InvokeModel) --------------------------------------------------------------------------


def embedding_family(model: str) -> str:
    """Which family: "titan" or "cohere" by the model id (region prefixes of inference profiles allowed)."""
    if "titan-embed" in model:
        return "titan"
    if "cohere.embed" in model:
        return "cohere"
    raise InvalidRequest(
        f"model '{model}' is not an embeddings model this gateway can call on Bedrock "
        "(Titan text embeddings amazon.titan-embed-text-*, or Cohere cohere.embed-*)"
    )


def embeddings_body(model: str, request: EmbeddingsRequest) -> JsonObject:
    texts = request.texts()
    if embedding_family(model) == "titan":
        # One text per InvokeModel call: several would be several upstream calls, each billed and
        # failing on its own, which one gateway request cannot report faithfully.
        if len(texts) != 1:
            raise InvalidRequest(f"Titan embeddings take one input per request on Bedrock, not {len(texts)}")
        body: JsonObject = {"inputText": texts[0]}
        if request.dimensions is not None:
            if "v1" in model.rpartition("titan-embed-text-")[2]:
                raise InvalidRequest("Titan text embeddings v1 have a fixed size: leave 'dimensions' out")
            body["dimensions"] = request.dimensions
        return body
    body = {"texts": texts, "input_type": "search_document"}
    if request.dimensions is not None:
        if "embed-v4" not in model:
            raise InvalidRequest(f"model '{model}' has a fixed size: leave 'dimensions' out")
        body["output_dimension"] = request.dimensions
    return body


class _TitanAnswer(msgspec.Struct):
    embedding: list[float]
    inputTextTokenCount: int | None = None


class _CohereAnswer(msgspec.Struct):
    # v3 answers a list of vectors; v4 a map by embedding type.
    embeddings: list[list[float]] | dict[str, list[list[float]]]


_titan = msgspec.json.Decoder(_TitanAnswer)
_cohere = msgspec.json.Decoder(_CohereAnswer)


def embeddings_answer(
    model: str, request: EmbeddingsRequest, body: bytes, headers: Mapping[str, str]
) -> tuple[bytes, Usage | None]:
    """The OpenAI answer and its usage: None when Bedrock reported no count (then the gateway counts)."""
    counted = headers.get("x-amzn-bedrock-input-token-count", "")
    tokens = int(counted) if counted.isdigit() else None
    if embedding_family(model) == "titan":
        titan = _titan.decode(body)
        vectors = [titan.embedding]
        tokens = tokens if tokens is not None else titan.inputTextTokenCount
    else:
        found = _cohere.decode(body).embeddings
        vectors = found.get("float", []) if isinstance(found, dict) else found
    usage = Usage(input_tokens=tokens) if tokens is not None else None
    return answer.embeddings(model, vectors, usage or Usage(), request.encoding_format), usage
