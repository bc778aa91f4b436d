"""What MockBedrock refuses, worded as Bedrock words it: Converse bodies (roles, blocks, tool pairing,
inference ranges, tool configuration) and the InvokeModel bodies of Titan and Cohere embeddings."""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from typing import Any

import orjson

from mocks.bedrock_answer import ModelInfo
from mocks.bedrock_errors import AwsError, constraint, validation

JsonObject = dict[str, Any]
MALFORMED = "Malformed input request, please reformat your input and try again."
_START_WITH_USER = (
    "A conversation must start with a user message. Try again with a conversation that starts with a user "
    "message."
)
_ALTERNATE = (
    "A conversation must alternate between user and assistant roles. Make sure the conversation alternates "
    "between user and assistant roles and try again."
)
_NEEDS_TOOL_CONFIG = "The toolConfig field must be defined when using toolUse and toolResult content blocks."
_BLOCKS = frozenset({"text", "image", "document", "video", "audio", "toolUse", "toolResult", "guardContent",
                     "cachePoint", "reasoningContent", "citationsContent", "searchResult"})  # fmt: skip
_MAGIC = {"png": (b"\x89PNG",), "jpeg": (b"\xff\xd8",), "gif": (b"GIF87a", b"GIF89a"), "webp": (b"RIFF",)}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise validation(MALFORMED) from None


# --- Converse ------------------------------------------------------------------------------------------


def validate_converse(body: Any, info: ModelInfo) -> None:
    if not isinstance(body, dict):
        raise validation(MALFORMED)
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise validation(MALFORMED)
    for index, message in enumerate(messages):
        _check_message(index, message, info)
    if not messages or messages[0]["role"] != "user":
        raise validation(_START_WITH_USER)
    if any(a["role"] == b["role"] for a, b in itertools.pairwise(messages)):
        raise validation(_ALTERNATE)
    for index, block in enumerate(body.get("system") or []):
        if isinstance(block, dict) and "text" in block and not str(block["text"]).strip():
            raise validation(
                f"The text field in the SystemContentBlock object at system.{index} is blank. "
                "Add text to the text field, and try again."
            )
    _check_tool_pairs(messages, has_config=bool(body.get("toolConfig")))
    _check_inference(body.get("inferenceConfig") or {}, info)
    if body.get("toolConfig") is not None:
        _check_tools(body["toolConfig"], info)
    if body.get("outputConfig") is not None:
        _check_output(body["outputConfig"])


def _check_message(index: int, message: Any, info: ModelInfo) -> None:
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise validation(MALFORMED)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise constraint(
            f"messages.{index + 1}.member.role", role, "satisfy enum value set: [user, assistant]"
        )
    if not message["content"]:
        raise validation(
            f"The content field in the Message object at messages.{index} is empty. "
            "Add a ContentBlock object to the content field and try again."
        )
    for position, block in enumerate(message["content"]):
        where = f"messages.{index}.content.{position}"
        if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _BLOCKS:
            raise validation(f"The ContentBlock object at {where} must set exactly one of its members.")
        if "text" in block and not str(block["text"]).strip():
            raise validation(f"The text field in the ContentBlock object at {where} is blank. "
                             "Add text to the text field, and try again.")  # fmt: skip
        if "image" in block:
            _check_image(where, block["image"], info)
        if ("toolUse" in block and role != "assistant") or ("toolResult" in block and role != "user"):
            raise validation(f"The {next(iter(block))} block at {where} is not allowed in a {role} message.")
        result = block.get("toolResult")
        if isinstance(result, dict) and result.get("status") == "error" and not result.get("content"):
            raise validation(
                f"The content field at {where}.toolResult cannot be empty when status value is error."
            )


def _check_image(where: str, image: Any, info: ModelInfo) -> None:
    if not info.vision:
        raise validation("This model doesn't support the image content block that you provided.")
    image_format = image.get("format") if isinstance(image, dict) else None
    if image_format not in _MAGIC:
        raise constraint(f"{where}.image.format", image_format,
                         "satisfy enum value set: [png, jpeg, gif, webp]")  # fmt: skip
    source = image.get("source")
    if not isinstance(source, dict) or set(source) - {"bytes", "s3Location"} or len(source) != 1:
        # Bedrock does not fetch URLs: an image is its bytes, or an object in the caller's S3.
        raise validation(f"The image source at {where}.image.source must be bytes or an s3Location.")
    if "bytes" in source:
        try:
            data = base64.b64decode(source["bytes"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise validation(MALFORMED) from None
        if not data.startswith(_MAGIC[image_format]):
            raise validation(f"The image at {where} is not a valid {image_format} image.")


def _check_tool_pairs(messages: list[JsonObject], *, has_config: bool) -> None:
    """Every toolUse is answered by a toolResult in the next turn, and no result answers nothing."""
    for index, message in enumerate(messages):
        uses = [b["toolUse"].get("toolUseId") for b in message["content"] if "toolUse" in b]
        results = [b["toolResult"].get("toolUseId") for b in message["content"] if "toolResult" in b]
        if (uses or results) and not has_config:
            raise validation(_NEEDS_TOOL_CONFIG)
        if results:
            previous = messages[index - 1]["content"] if index else []
            asked = [b["toolUse"].get("toolUseId") for b in previous if "toolUse" in b]
            if len(results) > len(asked) or set(results) - set(asked):
                raise validation(f"The number of toolResult blocks at messages.{index}.content exceeds the "
                                 "number of toolUse blocks of previous turn.")  # fmt: skip
        if uses and index + 1 < len(messages):
            answered = {
                b["toolResult"].get("toolUseId") for b in messages[index + 1]["content"] if "toolResult" in b
            }
            missing = [i for i in uses if i not in answered]
            if missing:
                where = f"messages.{index + 1}.content"
                raise validation(
                    f"Expected toolResult blocks at {where} for the following Ids: {', '.join(missing)}"
                )


def _check_inference(config: Any, info: ModelInfo) -> None:
    if not isinstance(config, dict):
        raise validation(MALFORMED)
    limit = config.get("maxTokens")
    if limit is not None:
        if not isinstance(limit, int) or limit < 1:
            raise constraint("inferenceConfig.maxTokens", limit, "have value greater than or equal to 1")
        if limit > info.max_output:
            most = info.max_output
            raise validation(
                f"The maximum tokens you requested exceeds the model limit of {most}. "
                f"Try again with a maximum tokens value that is lower than {most}."
            )
    for name in ("temperature", "topP"):
        value = config.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or value < 0:
            raise constraint(f"inferenceConfig.{name}", value, "have value greater than or equal to 0")
        if value > 1:
            raise constraint(f"inferenceConfig.{name}", value, "have value less than or equal to 1")
    stops = config.get("stopSequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops)
    ):
        raise constraint("inferenceConfig.stopSequences", stops, "have length greater than or equal to 1")


def _check_tools(config: Any, info: ModelInfo) -> None:
    tools = config.get("tools") if isinstance(config, dict) else None
    if not isinstance(tools, list) or not tools:
        raise constraint("toolConfig.tools", tools or [], "have length greater than or equal to 1")
    if not info.tools:
        raise validation("This model doesn't support tool use.")
    for index, tool in enumerate(tools):
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if not isinstance(spec, dict) or not isinstance((spec.get("inputSchema") or {}).get("json"), dict):
            raise validation(
                f"The toolSpec at toolConfig.tools.{index} needs a name and an inputSchema.json."
            )
        if not _TOOL_NAME.match(str(spec.get("name", ""))):
            raise constraint(f"toolConfig.tools.{index + 1}.member.toolSpec.name", spec.get("name"),
                             "satisfy regular expression pattern: [a-zA-Z0-9_-]+")  # fmt: skip
    choice = config.get("toolChoice")
    if choice is not None and (not isinstance(choice, dict) or len(choice) != 1 or
                               next(iter(choice)) not in ("auto", "any", "tool")):  # fmt: skip
        raise validation("The toolChoice field must set exactly one of: auto, any, tool.")


def _check_output(config: Any) -> None:
    text_format = config.get("textFormat") if isinstance(config, dict) else None
    schema = (((text_format or {}).get("structure") or {}).get("jsonSchema") or {}).get("schema")
    if (
        not isinstance(text_format, dict)
        or text_format.get("type") != "json_schema"
        or not isinstance(schema, str)
    ):
        raise validation("The outputConfig.textFormat field must be a json_schema with a schema.")
    try:
        parsed = orjson.loads(schema)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise validation("The JSON schema in outputConfig.textFormat is not a valid JSON object.")


# --- InvokeModel embeddings -----------------------------------------------------------------------------


def _malformed(detail: str) -> AwsError:
    return validation(f"Malformed input request: {detail}, please reformat your input and try again.")


def validate_titan(body: Any, info: ModelInfo) -> tuple[str, int]:
    """(text, dimensions) of a Titan text embeddings body."""
    if not isinstance(body, dict):
        raise _malformed("#: expected type: JSONObject")
    allowed = (
        {"inputText", "dimensions", "normalize", "embeddingTypes"}
        if info.id.endswith("v2:0")
        else {"inputText"}
    )
    for key in body:
        if key not in allowed:
            raise _malformed(f"extraneous key [{key}] is not permitted")
    if "inputText" not in body:
        raise _malformed("#: required key [inputText] not found")
    if not isinstance(body["inputText"], str):
        raise _malformed(f"#/inputText: expected type: String, found: {type(body['inputText']).__name__}")
    dimensions = body.get("dimensions", info.dimensions)
    if dimensions not in (256, 512, 1024) and "dimensions" in body:
        raise _malformed(f"#/dimensions: {dimensions} is not a valid enum value")
    return body["inputText"], dimensions


def validate_cohere(body: Any) -> list[str]:
    if not isinstance(body, dict):
        raise _malformed("#: expected type: JSONObject")
    for key in body:
        if key not in ("texts", "input_type", "truncate", "embedding_types", "images"):
            raise _malformed(f"extraneous key [{key}] is not permitted")
    for key in ("texts", "input_type"):
        if key not in body:
            raise _malformed(f"#: required key [{key}] not found")
    texts = body["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise _malformed("#/texts: expected type: JSONArray of String")
    if len(texts) > 96:
        raise _malformed(f"#/texts: expected maxItems: 96, actual: {len(texts)}")
    if body["input_type"] not in ("search_document", "search_query", "classification", "clustering"):
        raise _malformed(f"#/input_type: {body['input_type']} is not a valid enum value")
    return texts
