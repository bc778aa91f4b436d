"""Azure OpenAI through a real gateway: `/openai/az/v1/...` with the openai SDK, `/proxy/az/...` with the
SDK's AzureOpenAI client, against MockAzureOpenAI."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from mocks.azure import MockAzureOpenAI
from tests.gateway.openai_family import ANSWER, PNG, WEATHER, Records, cost, price, vendor_fixtures
from tests.support import APP_KEY, UPSTREAM_KEY, Gateway

pytestmark = pytest.mark.one_store  # a vendor's wire format: the same on either store

USER: Any = [{"role": "user", "content": "Say hello to Tollgate"}]
MINI = (0.15, 0.60, 0.075)


upstream, gateway, mock, records = vendor_fixtures(
    MockAzureOpenAI,
    lambda url: {
        "slug": "az",
        "vendor": "azure_openai",
        "api_base": url,
        "api_version": "2024-10-21",
        "deployments": {"gpt-4o-mini": "chat-prod", "text-embedding-3-small": "embed-prod"},
        "default_model": "gpt-4o-mini",
        "allowed_models": ["gpt-4o.*", "text-embedding-3-small"],
    },
    [
        price("azure_openai", "gpt-4o-mini", MINI),
        {"vendor": "azure_openai", "model": "text-embedding-3-small", "input_per_1m": 0.02},
    ],
)


def client(gateway: Gateway) -> openai.OpenAI:
    return gateway.openai(llm="az")


def test_chat_goes_to_the_deployment_and_is_accounted(
    gateway: Gateway, mock: MockAzureOpenAI, records: Records
) -> None:
    answer = client(gateway).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert answer.choices[0].message.content == ANSWER and answer.model == "gpt-4o-mini-2024-07-18"
    assert answer.usage is not None
    (request,) = mock.requests
    assert request.path == "/openai/deployments/chat-prod/chat/completions"
    assert request.query_string == "api-version=2024-10-21"
    assert request.headers["api-key"] == UPSTREAM_KEY and APP_KEY not in str(request.headers)
    (record,) = records.new()
    assert (record["vendor"], record["model_name"], record["interaction_type"]) == (
        "azure_openai",
        "gpt-4o-mini",
        "chat",
    )
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    assert record["cost"] == pytest.approx(
        cost(answer.usage.prompt_tokens, answer.usage.completion_tokens, MINI)
    )


def test_cached_tokens_are_priced_at_the_cache_rate(
    gateway: Gateway, mock: MockAzureOpenAI, records: Records
) -> None:
    mock.cached_tokens = 6
    answer = client(gateway).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert answer.usage is not None
    (record,) = records.new()
    assert record["cache_read_tokens"] == 6 and record["prompt_tokens"] == answer.usage.prompt_tokens
    assert record["cost"] == pytest.approx(
        cost(answer.usage.prompt_tokens, answer.usage.completion_tokens, MINI, 6)
    )


def test_stream_without_usage_has_no_filter_or_usage_chunk(
    gateway: Gateway, mock: MockAzureOpenAI, records: Records
) -> None:
    chunks = list(client(gateway).chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)  # Azure's prompt-filter chunk is not relayed
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER
    assert mock.requests[0].json()["stream_options"] == {"include_usage": True}
    (record,) = records.new()
    assert record["stream"] is True and record["prompt_tokens"] > 0 and record["response_tokens"] > 0


def test_stream_with_usage(gateway: Gateway, records: Records) -> None:
    chunks = list(
        client(gateway).chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == [] and all(c.choices for c in chunks[:-1])
    (record,) = records.new()
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_tools_and_a_streamed_tool_call(gateway: Gateway, records: Records) -> None:
    messages: Any = [{"role": "user", "content": "Call get_weather for Paris"}]
    answer = client(gateway).chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER])
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and answer.choices[0].finish_reason == "tool_calls"  # type: ignore[union-attr]
    stream = client(gateway).chat.completions.create(
        model="gpt-4o", messages=messages, tools=[WEATHER], stream=True
    )
    deltas = [c.choices[0].delta.tool_calls or [] for c in stream if c.choices]
    arguments = "".join(call.function.arguments or "" for calls in deltas for call in calls if call.function)
    assert arguments == '{"location": "Paris"}'
    assert [r["status_code"] for r in records.new(2)] == [200, 200]


def test_vision(gateway: Gateway, mock: MockAzureOpenAI, records: Records) -> None:
    content: Any = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
    ]
    answer = client(gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": content}]
    )
    assert answer.choices[0].message.content == "Mock answer to: What is in these?"
    assert mock.requests[0].json()["messages"][0]["content"] == content  # the OpenAI format, untouched
    records.new()


def test_embeddings(gateway: Gateway, mock: MockAzureOpenAI, records: Records) -> None:
    result = client(gateway).embeddings.create(
        model="text-embedding-3-small", input=["hello", "world"], dimensions=8
    )
    assert [len(d.embedding) for d in result.data] == [8, 8]
    assert mock.requests[0].path == "/openai/deployments/embed-prod/embeddings"
    assert mock.requests[0].json()["encoding_format"] == "base64"  # the SDK's default, passed through
    (record,) = records.new()
    assert record["interaction_type"] == "embedding" and record["prompt_tokens"] == result.usage.prompt_tokens
    assert record["cost"] == pytest.approx(result.usage.prompt_tokens * 0.02e-6)
    as_float = client(gateway).embeddings.create(
        model="text-embedding-3-small", input="hello", encoding_format="float"
    )
    assert as_float.data[0].embedding[:8] != result.data[0].embedding  # full size, not the 8 asked above
    assert len(as_float.data[0].embedding) == 1536
    records.new()


def test_models_are_the_deployments(gateway: Gateway, records: Records) -> None:
    assert [m.id for m in client(gateway).models.list()] == ["gpt-4o-mini", "text-embedding-3-small"]


def test_content_filter(gateway: Gateway, mock: MockAzureOpenAI, records: Records) -> None:
    mock.content_filter = "completion"
    cut = client(gateway).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert cut.choices[0].finish_reason == "content_filter"
    streamed = list(client(gateway).chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
    assert [c.choices[0].finish_reason for c in streamed if c.choices[0].finish_reason] == ["content_filter"]
    mock.content_filter = "prompt"
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert refused.value.code == "content_filter" and "content management policy" in refused.value.message
    assert [r["status_code"] for r in records.new(3)] == [400, 200, 200]


def test_upstream_errors(gateway: Gateway, mock: MockAzureOpenAI, records: Records) -> None:
    mock.fail_status, mock.fail_retry_after, mock.fail_message = 429, "7", "Please retry after 7 seconds."
    with pytest.raises(openai.RateLimitError) as limited:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert (
        limited.value.response.headers["retry-after"] == "7" and limited.value.code == "rate_limit_exceeded"
    )
    assert limited.value.message.endswith("- Please retry after 7 seconds.")
    mock.reset()
    mock.deployments.pop("chat-prod")
    try:
        with pytest.raises(openai.NotFoundError) as missing:
            client(gateway).chat.completions.create(model="gpt-4o-mini", messages=USER)
    finally:
        mock.deployments["chat-prod"] = "gpt-4o-mini"
    assert missing.value.code == "DeploymentNotFound" and "'chat-prod'" in missing.value.message
    assert [r["status_code"] for r in records.new(2)] == [404, 429]


# --- /proxy/ with the SDK's AzureOpenAI client ----------------------------------------------------------


def native(gateway: Gateway) -> openai.AzureOpenAI:
    # The SDK sends the key as `api-key`, which the proxy takes as the app key, as it would Azure's own.
    return openai.AzureOpenAI(
        azure_endpoint=gateway.url + "/proxy/az", api_key=APP_KEY, api_version="2024-10-21", max_retries=0
    )


def test_proxy_chat(gateway: Gateway, mock: MockAzureOpenAI, records: Records) -> None:
    answer = native(gateway).chat.completions.create(model="chat-prod", messages=USER)
    assert answer.choices[0].message.content == ANSWER
    assert (answer.model_extra or {})["prompt_filter_results"]  # Azure's own answer, untouched
    (request,) = mock.requests
    assert request.path == "/openai/deployments/chat-prod/chat/completions"
    assert request.headers["api-key"] == UPSTREAM_KEY and "authorization" not in request.headers
    (record,) = records.new()
    assert (record["interaction_type"], record["model_name"]) == (
        "proxy",
        "gpt-4o-mini",
    )  # the deployment's model
    assert answer.usage is not None and record["prompt_tokens"] == answer.usage.prompt_tokens
    assert record["cost"] == pytest.approx(
        cost(answer.usage.prompt_tokens, answer.usage.completion_tokens, MINI)
    )


def test_proxy_stream(gateway: Gateway, records: Records) -> None:
    chunks = list(
        native(gateway).chat.completions.create(
            model="chat-prod", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices == []  # the prompt-filter chunk reaches the native client
    usage = chunks[-1].usage
    assert usage is not None
    (record,) = records.new()
    assert record["stream"] is True and record["interaction_type"] == "proxy"
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert record["cost"] == pytest.approx(cost(usage.prompt_tokens, usage.completion_tokens, MINI))
