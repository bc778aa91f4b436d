"""The response cache's semantic mode (issue 7): the bundled local model (offline) and an LLM's embeddings,
conversations worded nearly the same, what never matches, and the index unit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gateway.semantic import VectorIndex, polarity
from mocks.openai import MockOpenAI
from tests.conftest import StartGateway
from tests.support import APP_KEY, Gateway, base_config

pytestmark = pytest.mark.one_store  # the semantic cache's matching: the same on either store

FRANCE = "What is the capital of France?"


def semantic_config(upstream_url: str, **cache: Any) -> dict[str, Any]:
    config = base_config(upstream_url)
    config["llms"][0]["cache"] = {"mode": "semantic", "threshold": 0.85, **cache}
    return config


def ask(gateway: Gateway, content: Any, **kwargs: Any) -> str:
    messages = kwargs.pop("messages", [{"role": "user", "content": content}])
    raw = gateway.openai(key=APP_KEY).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, **kwargs
    )
    return raw.headers["x-tollgate-cache"]


def test_a_paraphrase_hits_and_a_negation_does_not(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    """At the default threshold (0.95), with the bundled local model (no network: the weights come with
    the package); bench/semantic.py measured the pairs."""
    gateway = start_gateway(semantic_config(upstream_url, threshold=0.95))
    assert ask(gateway, "Explain photosynthesis simply.") == "MISS"
    assert ask(gateway, "Explain photosynthesis in simple terms.") == "SEMANTIC_HIT"  # cosine 0.956
    assert ask(gateway, "Is it safe to drink tap water?") == "MISS"
    assert ask(gateway, "Is it not safe to drink tap water?") == "MISS"  # cosine 0.977, negated
    assert ask(gateway, "Is it not safe to drink tap water?") == "HIT"  # its own answer, now stored


def test_a_question_worded_nearly_the_same_is_a_semantic_hit(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    """At a lower threshold (0.85) more paraphrases hit; another subject still misses."""
    gateway = start_gateway(semantic_config(upstream_url))
    assert ask(gateway, FRANCE) == "MISS"
    assert ask(gateway, "Tell me the capital of France, please.") == "SEMANTIC_HIT"  # cosine ~0.90
    assert ask(gateway, "What is the capital of Germany?") == "MISS"  # ~0.50
    assert ask(gateway, "Tell me the capital of France, please.", temperature=0.3) == "MISS"  # other params
    assert len(upstream.requests) == 3
    statuses = {r["cache_status"] for r in gateway.records(expect=4)}
    assert statuses == {"MISS", "SEMANTIC_HIT"}


def test_tool_turns_and_long_conversations_are_not_embedded(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    gateway = start_gateway(semantic_config(upstream_url, max_messages=2))
    long = [{"role": "user", "content": FRANCE}, {"role": "assistant", "content": "Paris."}]
    assert ask(gateway, None, messages=[*long, {"role": "user", "content": "And of Spain?"}]) == "MISS"
    assert (
        ask(gateway, None, messages=[*long, {"role": "user", "content": "And of Spain, please?"}]) == "MISS"
    )
    tool_turn = [
        {"role": "user", "content": FRANCE},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Paris"},
    ]  # fmt: skip
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert ask(gateway, None, messages=tool_turn, tools=tools) == "MISS"
    assert (
        ask(gateway, None, messages=[*tool_turn[:2], {**tool_turn[2], "content": "Paris."}], tools=tools)
        == "MISS"
    )


def test_embeddings_from_a_configured_llm(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    """`cache.embedding` embeds through an LLM of this gateway: the same words sent as a text part
    instead of a string are another exact key, and the same conversation."""
    config = semantic_config(upstream_url)
    config["cache"] = {"embedding": {"llm": "gpt", "model": "text-embedding-3-small"}}
    gateway = start_gateway(config)
    assert ask(gateway, FRANCE) == "MISS"
    assert ask(gateway, [{"type": "text", "text": FRANCE}]) == "SEMANTIC_HIT"
    embedded = [r for r in upstream.requests if r.path == "/v1/embeddings"]
    assert len(embedded) == 2
    assert len([r for r in upstream.requests if r.path == "/v1/chat/completions"]) == 1


def test_the_index_finds_the_nearest_above_the_threshold_and_forgets_the_oldest() -> None:
    index = VectorIndex(max_vectors=3)
    unit = np.eye(4, dtype=np.float32)
    for i in range(3):
        index.add("b", unit[i], f"k{i}", ttl_s=60)
    near = np.array([0.1, 0.99, 0, 0], dtype=np.float32)
    near /= np.linalg.norm(near)
    assert index.search("b", near, 0.95) == "k1"
    assert index.search("b", near, 0.999) is None
    assert index.search("other", near, 0.5) is None
    index.add("b", unit[3], "k3", ttl_s=60)  # the fourth: the oldest (k0) goes
    assert len(index) == 3 and index.search("b", unit[0], 0.9) is None
    index.add("c", unit[0], "gone", ttl_s=-1)
    assert index.search("c", unit[0], 0.9) is None  # expired


@pytest.mark.parametrize("dimensions", [4, 8])
def test_the_index_keeps_models_of_other_sizes_apart(dimensions: int) -> None:
    index = VectorIndex()
    index.add("b", np.ones(4, dtype=np.float32) / 2, "four", ttl_s=60)
    query = np.ones(dimensions, dtype=np.float32) / np.sqrt(dimensions)
    assert index.search("b", query, 0.9) == ("four" if dimensions == 4 else None)


def test_negations_are_compared_word_for_word() -> None:
    assert polarity("user: What is not the capital?") == ("not",)
    assert polarity("Why can't I log in? I never could, no.") == ("can't", "never", "no")
    assert polarity("Is coffee good for you?") == ()
    index = VectorIndex()
    unit = np.eye(3, dtype=np.float32)
    index.add("b", unit[0], "plain", ttl_s=60)
    assert index.search("b", unit[0], 0.9, ("not",)) is None
    assert index.search("b", unit[0], 0.9) == "plain"


def test_with_redis_every_gateway_finds_what_another_stored(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    """`cache: {backend: redis}`: the vectors are in Redis beside the answers."""
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for pattern in ("{tollgate:}cache:*", "{tollgate:}semantic:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)
    config = {**semantic_config(upstream_url, threshold=0.95), "cache": {"backend": "redis"}}
    one = start_gateway(config, "--redis", "redis://127.0.0.1:6379/0")
    two = start_gateway(config, "--redis", "redis://127.0.0.1:6379/0")
    assert ask(one, "Explain photosynthesis simply.") == "MISS"
    assert ask(two, "Explain photosynthesis in simple terms.") == "SEMANTIC_HIT"
    assert ask(two, "Is it safe to drink tap water?") == "MISS"
    assert ask(one, "Is it not safe to drink tap water?") == "MISS"
    assert len(upstream.requests) == 3
