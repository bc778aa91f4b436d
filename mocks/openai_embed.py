"""Embeddings answers: deterministic unit vectors, as float lists or OpenAI's base64 float32."""

from __future__ import annotations

import base64
import hashlib
import math
import sys
from array import array

import orjson

from mocks.openai_errors import ApiError, JsonObject
from mocks.openai_models import ModelInfo, encode
from mocks.openai_validate import EmbeddingInput

MAX_INPUT_TOKENS = 8192
_INT16_SCALE = 1 / 32768
_BIG_ENDIAN = sys.byteorder == "big"


def _tokens(item: EmbeddingInput) -> list[int]:
    tokens = encode(item) if isinstance(item, str) else item
    if len(tokens) > MAX_INPUT_TOKENS:
        message = (
            f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however you requested "
            f"{len(tokens)} tokens ({len(tokens)} in your prompt; 0 for the completion). "
            "Please reduce your prompt; or completion length."
        )
        raise ApiError(400, message)
    return tokens


def vector(model: str, tokens: list[int], dimensions: int) -> array[float]:
    """A unit vector seeded by the model and the tokens, so a text and its token ids embed alike.

    SHAKE's output for a shorter length is a prefix of the longer one, so a `dimensions`-shortened
    vector is the full one cut and renormalised, like text-embedding-3's.
    """
    seed = model.encode() + b"\0" + ",".join(map(str, tokens)).encode()
    raw = array("h", hashlib.shake_256(seed).digest(2 * dimensions))
    if _BIG_ENDIAN:
        raw.byteswap()  # the digest is read as little-endian everywhere, for the same vectors
    norm = math.hypot(*raw) or 1.0
    # float32, as the API computes them, so "float" and "base64" answers carry the same numbers.
    return array("f", [value / norm for value in raw])


def _encoded(values: array[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "float":
        return values.tolist()
    if _BIG_ENDIAN:
        values = array("f", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def embeddings_body(
    info: ModelInfo,
    inputs: list[EmbeddingInput],
    dimensions: int,
    encoding_format: str,
    with_usage: bool = True,
) -> bytes:
    token_lists = [_tokens(item) for item in inputs]
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": _encoded(vector(info.id, tokens, dimensions), encoding_format),
        }
        for index, tokens in enumerate(token_lists)
    ]
    body: JsonObject = {"object": "list", "data": data, "model": info.id}
    if with_usage:
        used = sum(len(tokens) for tokens in token_lists)
        body["usage"] = {"prompt_tokens": used, "total_tokens": used}
    return orjson.dumps(body)
