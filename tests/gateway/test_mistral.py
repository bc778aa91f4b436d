"""Mistral through a real gateway: `/openai/mi/v1/...` with the openai SDK (translated both ways),
`/proxy/mi/...` with the official mistralai SDK, against MockMistral."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from mistralai.client import Mistral, errors

from mocks.mistral import MockMistral
from tests.gateway.openai_family import ANSWER, PNG, WEATHER, Records, cost, price, vendor_fixtures
from tests.support import APP_KEY, UPSTREAM_KEY, Gateway

pytestmark = pytest.mark.one_store  # a vendor's wire format: the same on either store

MODEL = "mistral-small-latest"
USER: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to Tollgate"}]
SMALL = (0.1, 0.3, 0.01)


upstream, gateway, mock, records = vendor_fixtures(
    MockMistral,
    lambda url: {"slug": "mi", "vendor": "mistral", "api_base": url + "/v1", "default_model": MODEL},
    [price("mistral", MODEL, SMALL), {"vendor": "mistral", "model": "mistral-embed", "input_per_1m": 0.1}],
)


def client(gateway: Gateway) -> openai.OpenAI:
    return gateway.openai(llm="mi")


def test_chat_is_translated_and_accounted(gateway: Gateway, mock: MockMistral, records: Records) -> None:
    answer = client(gateway).chat.completions.create(
        model=MODEL, messages=USER, max_completion_tokens=100, seed=7, user="end-user-1"
    )
    assert answer.choices[0].message.content == ANSWER and answer.object == "chat.completion"
    assert answer.model == MODEL and answer.choices[0].finish_reason == "stop" and answer.usage is not None
    (request,) = mock.requests
    sent = request.json()
    assert (
        request.path == "/v1/chat/completions"
        and request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    )
    assert (sent["max_tokens"], sent["random_seed"]) == (100, 7) and "user" not in sent and "seed" not in sent
    (record,) = records.new()
    assert (record["vendor"], record["model_name"], record["interaction_type"]) == ("mistral", MODEL, "chat")
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    assert record["cost"] == pytest.approx(
        cost(answer.usage.prompt_tokens, answer.usage.completion_tokens, SMALL)
    )


def test_cached_tokens_are_priced_at_the_cache_rate(
    gateway: Gateway, mock: MockMistral, records: Records
) -> None:
    mock.cached_tokens = 5
    answer = client(gateway).chat.completions.create(model=MODEL, messages=USER)
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 5
    (record,) = records.new()
    assert record["cache_read_tokens"] == 5
    assert record["cost"] == pytest.approx(
        cost(answer.usage.prompt_tokens, answer.usage.completion_tokens, SMALL, 5)
    )


def test_stream_without_usage(gateway: Gateway, mock: MockMistral, records: Records) -> None:
    chunks = list(client(gateway).chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert all(c.choices and c.usage is None and c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert mock.requests[0].json()["stream"] is True and "stream_options" not in mock.requests[0].json()
    (record,) = records.new()
    # Mistral reports usage on its last chunk anyway: the record has the vendor's counts
    assert record["stream"] is True and record["prompt_tokens"] > 0 and record["response_tokens"] > 0


def test_stream_with_usage(gateway: Gateway, records: Records) -> None:
    chunks = list(
        client(gateway).chat.completions.create(
            model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    (record,) = records.new()
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_tools_round_trip(gateway: Gateway, mock: MockMistral, records: Records) -> None:
    messages: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    answer = client(gateway).chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER], tool_choice="required"
    )
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and answer.choices[0].finish_reason == "tool_calls"  # type: ignore[union-attr]
    assert mock.requests[0].json()["tool_choice"] == "any"
    # the conversation goes on with another vendor's tool call id: Mistral gets a 9-character one
    followup: Any = [
        *messages,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{**call.model_dump(), "id": "call_Xyz0123456789"}],
        },
        {"role": "tool", "tool_call_id": "call_Xyz0123456789", "content": "sunny"},
    ]
    final = client(gateway).chat.completions.create(model=MODEL, messages=followup, tools=[WEATHER])
    assert final.choices[0].message.content == "Mock answer to tool result: sunny"
    sent = mock.requests[1].json()["messages"]
    assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"] and len(sent[2]["tool_call_id"]) == 9
    records.new(2)


def test_streamed_tool_call(gateway: Gateway, records: Records) -> None:
    messages: Any = [{"role": "user", "content": "Call get_weather"}]
    stream = client(gateway).chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER], tool_choice="required", stream=True
    )
    chunks = list(stream)
    calls = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert len(calls) == 1 and calls[0].id and calls[0].function is not None
    assert (calls[0].function.name, calls[0].function.arguments) == ("get_weather", '{"location": "Paris"}')
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    (record,) = records.new()
    assert record["response_tokens"] > 0


def test_vision(gateway: Gateway, mock: MockMistral, records: Records) -> None:
    content: Any = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
    ]
    answer = client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}]
    )
    assert answer.choices[0].message.content == "Mock answer to: What is in these?"
    parts = mock.requests[0].json()["messages"][0]["content"]
    assert parts[1] == {"type": "image_url", "image_url": "https://example.com/cat.png"}
    assert parts[2] == {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}
    records.new()


def test_reasoning_model_answers_its_text_only(gateway: Gateway, records: Records) -> None:
    answer = client(gateway).chat.completions.create(model="magistral-medium-latest", messages=USER)
    assert answer.choices[0].message.content == ANSWER
    streamed = client(gateway).chat.completions.create(
        model="magistral-medium-latest", messages=USER, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == ANSWER
    records.new(2)


def test_embeddings(gateway: Gateway, mock: MockMistral, records: Records) -> None:
    result = client(gateway).embeddings.create(model="mistral-embed", input=["hello", "world"])
    assert [len(d.embedding) for d in result.data] == [1024, 1024]
    sent = mock.requests[0].json()
    assert sent == {
        "model": "mistral-embed",
        "input": ["hello", "world"],
    }  # floats asked; base64 is the gateway's
    sized = client(gateway).embeddings.create(
        model="codestral-embed", input="x", dimensions=64, encoding_format="float"
    )
    assert len(sized.data[0].embedding) == 64 and mock.requests[1].json()["output_dimension"] == 64
    embedded = records.new(2)
    assert {r["interaction_type"] for r in embedded} == {"embedding"}
    assert embedded[1]["cost"] == pytest.approx(result.usage.prompt_tokens * 0.1e-6)
    as_float = client(gateway).embeddings.create(
        model="mistral-embed", input="hello", encoding_format="float"
    )
    # the SDK asked for base64 above, which the gateway encoded from Mistral's floats: the same numbers
    assert as_float.data[0].embedding == pytest.approx(result.data[0].embedding, rel=1e-6)
    records.new()


def test_models(gateway: Gateway, records: Records) -> None:
    assert {"mistral-small-latest", "mistral-embed"} <= {m.id for m in client(gateway).models.list()}


def test_upstream_errors(gateway: Gateway, mock: MockMistral, records: Records) -> None:
    mock.fail_status, mock.fail_retry_after, mock.fail_message = 429, "7", "Rate limit exceeded"
    with pytest.raises(openai.RateLimitError) as limited:
        client(gateway).chat.completions.create(model=MODEL, messages=USER)
    assert (
        limited.value.response.headers["retry-after"] == "7" and limited.value.code == "rate_limit_exceeded"
    )
    mock.reset()
    with pytest.raises(openai.BadRequestError) as unknown:
        client(gateway).chat.completions.create(model="gpt-4o", messages=USER)
    assert unknown.value.code == "invalid_model" and "Invalid model: gpt-4o" in unknown.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway).chat.completions.create(model=MODEL, messages=USER, n=2)
    assert refused.value.code == "invalid_request"  # the gateway's own: one choice only
    assert [r["status_code"] for r in records.new(3)] == [400, 400, 429]


# --- /proxy/ with the mistralai SDK ---------------------------------------------------------------------


def native(gateway: Gateway) -> Mistral:
    return Mistral(api_key=APP_KEY, server_url=gateway.url + "/proxy/mi")


def test_proxy_complete(gateway: Gateway, mock: MockMistral, records: Records) -> None:
    answer = native(gateway).chat.complete(model=MODEL, messages=USER, random_seed=1)
    assert answer.choices[0].message is not None and answer.choices[0].message.content == ANSWER
    (request,) = mock.requests
    assert (
        request.path == "/v1/chat/completions"
        and request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    )
    assert request.json()["random_seed"] == 1  # native, untouched
    (record,) = records.new()
    assert (record["interaction_type"], record["model_name"]) == ("proxy", MODEL)
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    assert record["cost"] == pytest.approx(
        cost(answer.usage.prompt_tokens or 0, answer.usage.completion_tokens or 0, SMALL)
    )


def test_proxy_stream(gateway: Gateway, records: Records) -> None:
    events = list(native(gateway).chat.stream(model=MODEL, messages=USER))
    usage = events[-1].data.usage
    assert usage is not None and events[-1].data.choices[0].finish_reason == "stop"
    (record,) = records.new()
    assert record["stream"] is True and record["interaction_type"] == "proxy"
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_proxy_embeddings_and_native_errors(gateway: Gateway, records: Records) -> None:
    result = native(gateway).embeddings.create(model="mistral-embed", inputs=["a"])
    assert len(result.data[0].embedding or []) == 1024
    with pytest.raises(errors.HTTPValidationError) as refused:
        native(gateway).chat.complete(model=MODEL, messages=USER, temperature=-1)
    assert refused.value.data.detail is not None  # Mistral's own 422, passed through
    assert [r["status_code"] for r in records.new(2)] == [422, 200]
