"""Hugging Face through a real gateway, with the openai SDK on `/openai/hf/v1/...` and on `/proxy/hf/...`
(the router is OpenAI-compatible, so the openai SDK is its native client), against MockHuggingFace
standing in for the router and for a TEI server."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from mocks.huggingface import MockHuggingFace
from tests.gateway.openai_family import ANSWER, WEATHER, Records, cost, price, vendor_fixtures
from tests.support import APP_KEY, UPSTREAM_KEY, Gateway

pytestmark = pytest.mark.one_store  # a vendor's wire format: the same on either store

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
USER: Any = [{"role": "user", "content": "Say hello to Tollgate"}]
RATES = (0.05, 0.08, 0.02)


upstream, gateway, mock, records = vendor_fixtures(
    MockHuggingFace,
    lambda url: {"slug": "hf", "vendor": "huggingface", "api_base": url + "/v1", "default_model": LLAMA},
    [
        price("huggingface", LLAMA, RATES),
        {"vendor": "huggingface", "model": "BAAI/bge-small-en-v1.5", "input_per_1m": 0.01},
    ],
)


def client(gateway: Gateway) -> openai.OpenAI:
    return gateway.openai(llm="hf")


@pytest.mark.parametrize("model", [LLAMA, LLAMA + ":novita"], ids=["model", "model with a provider"])
def test_chat_is_accounted(gateway: Gateway, mock: MockHuggingFace, records: Records, model: str) -> None:
    answer = client(gateway).chat.completions.create(model=model, messages=USER)
    assert answer.choices[0].message.content == ANSWER and answer.model == LLAMA and answer.usage is not None
    (request,) = mock.requests
    assert request.path == "/v1/chat/completions" and request.json()["model"] == model
    assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    (record,) = records.new()
    assert (record["vendor"], record["model_name"], record["interaction_type"]) == (
        "huggingface",
        model,
        "chat",
    )
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    # priced by the answering model, whatever provider served it
    assert record["cost"] == pytest.approx(
        cost(answer.usage.prompt_tokens, answer.usage.completion_tokens, RATES)
    )


def test_cached_tokens_are_priced_at_the_cache_rate(
    gateway: Gateway, mock: MockHuggingFace, records: Records
) -> None:
    mock.cached_tokens = 4
    answer = client(gateway).chat.completions.create(model=LLAMA, messages=USER)
    assert answer.usage is not None
    (record,) = records.new()
    assert record["cache_read_tokens"] == 4
    assert record["cost"] == pytest.approx(
        cost(answer.usage.prompt_tokens, answer.usage.completion_tokens, RATES, 4)
    )


def test_stream_without_usage(gateway: Gateway, mock: MockHuggingFace, records: Records) -> None:
    chunks = list(client(gateway).chat.completions.create(model=LLAMA, messages=USER, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER
    assert mock.requests[0].json()["stream_options"] == {"include_usage": True}
    (record,) = records.new()
    assert record["stream"] is True and record["prompt_tokens"] > 0 and record["response_tokens"] > 0


def test_stream_with_usage(gateway: Gateway, records: Records) -> None:
    chunks = list(
        client(gateway).chat.completions.create(
            model=LLAMA, messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    (record,) = records.new()
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_tools_and_a_streamed_tool_call(gateway: Gateway, records: Records) -> None:
    messages: Any = [{"role": "user", "content": "Call get_weather for Paris"}]
    answer = client(gateway).chat.completions.create(model=LLAMA, messages=messages, tools=[WEATHER])
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and answer.choices[0].finish_reason == "tool_calls"  # type: ignore[union-attr]
    stream = client(gateway).chat.completions.create(
        model=LLAMA, messages=messages, tools=[WEATHER], stream=True
    )
    deltas = [c.choices[0].delta.tool_calls or [] for c in stream if c.choices]
    arguments = "".join(call.function.arguments or "" for calls in deltas for call in calls if call.function)
    assert arguments == '{"location": "Paris"}'
    records.new(2)


def test_vision(gateway: Gateway, mock: MockHuggingFace, records: Records) -> None:
    content: Any = [
        {"type": "text", "text": "What is in this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    answer = client(gateway).chat.completions.create(
        model="Qwen/Qwen2.5-VL-7B-Instruct", messages=[{"role": "user", "content": content}]
    )
    assert answer.choices[0].message.content == "Mock answer to: What is in this?"
    assert mock.requests[0].json()["messages"][0]["content"] == content
    records.new()


def test_embeddings_from_a_tei_server(gateway: Gateway, mock: MockHuggingFace, records: Records) -> None:
    result = client(gateway).embeddings.create(model="BAAI/bge-small-en-v1.5", input=["hello", "world"])
    assert [len(d.embedding) for d in result.data] == [384, 384]
    assert mock.requests[0].path == "/v1/embeddings"  # not the router: OpenAI's embeddings under api_base
    (record,) = records.new()
    assert record["interaction_type"] == "embedding" and record["prompt_tokens"] == result.usage.prompt_tokens
    assert record["cost"] == pytest.approx(result.usage.prompt_tokens * 0.01e-6)


def test_models(gateway: Gateway, records: Records) -> None:
    assert LLAMA in {m.id for m in client(gateway).models.list()}


def test_upstream_errors(gateway: Gateway, mock: MockHuggingFace, records: Records) -> None:
    mock.fail_status, mock.fail_retry_after, mock.fail_message = 429, "7", "Rate limit reached"
    with pytest.raises(openai.RateLimitError) as limited:
        client(gateway).chat.completions.create(model=LLAMA, messages=USER)
    assert (
        limited.value.response.headers["retry-after"] == "7" and limited.value.code == "rate_limit_exceeded"
    )
    assert limited.value.message.endswith(
        "- Rate limit reached"
    )  # Hugging Face's string error, in OpenAI's shape
    mock.reset()
    with pytest.raises(openai.BadRequestError) as unknown:
        client(gateway).chat.completions.create(model="nope/model", messages=USER)
    assert unknown.value.code == "model_not_supported"
    assert [r["status_code"] for r in records.new(2)] == [400, 429]


# --- /proxy/ with the openai SDK (the router's native client) -------------------------------------------


def native(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/proxy/hf", api_key=APP_KEY, max_retries=0)


def test_proxy_chat(gateway: Gateway, mock: MockHuggingFace, records: Records) -> None:
    answer = native(gateway).chat.completions.create(model=LLAMA, messages=USER)
    assert answer.choices[0].message.content == ANSWER and answer.usage is not None
    (request,) = mock.requests
    assert (
        request.path == "/v1/chat/completions"
        and request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    )
    (record,) = records.new()
    assert (record["interaction_type"], record["model_name"]) == ("proxy", LLAMA)
    assert record["cost"] == pytest.approx(
        cost(answer.usage.prompt_tokens, answer.usage.completion_tokens, RATES)
    )


def test_proxy_stream(gateway: Gateway, mock: MockHuggingFace, records: Records) -> None:
    chunks = list(
        native(gateway).chat.completions.create(
            model=LLAMA, messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    assert mock.requests[0].json()["stream_options"] == {"include_usage": True}  # the client's own
    (record,) = records.new()
    assert record["stream"] is True and record["interaction_type"] == "proxy"
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
