"""A real gateway in front of MockBedrock: `/openai/{llm}` driven by the official OpenAI SDK (translated to
Converse, ConverseStream and InvokeModel), and `/proxy/{llm}` driven by boto3 (native, re-signed)."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mocks.bedrock import TEST_ACCESS_KEY, TEST_SECRET_KEY, MockBedrock
from mocks.server import ThreadedServer
from tests.support import APP_KEY, Gateway

pytestmark = pytest.mark.one_store  # a vendor's wire format: the same on either store

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
HAIKU_PATH = "/model/anthropic.claude-3-haiku-20240307-v1%3A0"
PRICES = {"input": 0.25, "output": 1.25, "cache_read": 0.03, "cache_write": 0.30}
M = 1e-6
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
MESSAGES: Any = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hello to Bedrock"},
]
ANSWER = "Mock answer to: Say hello to Bedrock"
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def config(url: str) -> dict[str, Any]:
    llm = {"vendor": "bedrock", "api_base": url, "region": "us-east-1", "timeout_s": 30}
    return {
        "secrets": {"AWS": f"{TEST_ACCESS_KEY}:{TEST_SECRET_KEY}"},
        "llms": [
            {"slug": "bedrock", "api_key": "$SECRET/AWS", "default_model": HAIKU, **llm},
            {"slug": "bedrock-denied", "api_key": f"{TEST_ACCESS_KEY}:not-the-secret", **llm},
        ],
        "prices": [
            {
                "vendor": "bedrock",
                "model": HAIKU,
                "input_per_1m": PRICES["input"],
                "output_per_1m": PRICES["output"],
                "cache_read_per_1m": PRICES["cache_read"],
                "cache_write_per_1m": PRICES["cache_write"],
            },
            {"vendor": "bedrock", "model": TITAN, "input_per_1m": 0.02},
        ],
        "users": [{"email": "alice@example.com", "role": "admin"}],
        "apps": [
            {
                "name": "app-one",
                "owner": "alice@example.com",
                "api_key": APP_KEY,
                "llms": ["bedrock", "bedrock-denied"],
            }
        ],
    }


@pytest.fixture(scope="module")
def mock() -> MockBedrock:
    return MockBedrock({TEST_ACCESS_KEY: (TEST_SECRET_KEY, None)})


@pytest.fixture(scope="module")
def gateway(mock: MockBedrock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for the module (a start costs a second); each test finds its records by request id."""
    with ThreadedServer(mock) as server:
        directory: Path = tmp_path_factory.mktemp("bedrock-gateway")
        running = Gateway(directory, config(server.url)).wait_ready()
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(autouse=True)
def _fresh(mock: MockBedrock) -> None:
    mock.reset()


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return gateway.openai(llm="bedrock")


def record(gateway: Gateway, request_id: str) -> dict[str, Any]:
    """The analytics record of one call, by the request id the gateway answered with."""
    deadline = time.monotonic() + 5
    while True:
        found = [r for r in gateway.records() if r["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"no record of request {request_id}"
            return found[0]
        time.sleep(0.05)


def cost(prompt: int, completion: int, read: int = 0, write: int = 0) -> float:
    return (
        (prompt - read - write) * PRICES["input"] * M
        + read * PRICES["cache_read"] * M
        + write * PRICES["cache_write"] * M
        + completion * PRICES["output"] * M
    )


# --- /openai/{llm}: chat ---------------------------------------------------------------------------------


def test_chat(gateway: Gateway, client: openai.OpenAI, mock: MockBedrock) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=HAIKU, messages=MESSAGES, max_tokens=100, temperature=0.5
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == ANSWER and answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.model == HAIKU
    (request,) = mock.requests
    assert request.path == HAIKU_PATH + "/converse"  # `:` as `%3A`, as the AWS SDKs send it
    assert request.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY}/")
    assert APP_KEY not in str(request.headers) and APP_KEY.encode() not in request.body
    assert request.json()["system"] == [{"text": "Be brief."}]
    assert request.json()["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.5}
    found = record(gateway, raw.headers["x-request-id"])
    assert (found["vendor"], found["model_name"], found["interaction_type"]) == ("bedrock", HAIKU, "chat")
    assert (found["prompt_tokens"], found["response_tokens"]) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    assert found["status_code"] == 200 and found["cost"] == pytest.approx(
        cost(answer.usage.prompt_tokens, answer.usage.completion_tokens), rel=1e-9
    )


def test_default_model(gateway: Gateway, mock: MockBedrock) -> None:
    response = httpx.post(
        gateway.url + "/openai/bedrock/v1/chat/completions",
        json={"messages": MESSAGES},
        headers={"authorization": f"Bearer {APP_KEY}"},
    )
    assert response.status_code == 200 and response.json()["model"] == HAIKU
    assert mock.requests[0].path == HAIKU_PATH + "/converse"


def test_cache_tokens_are_priced_at_the_cache_rates(
    gateway: Gateway, client: openai.OpenAI, mock: MockBedrock
) -> None:
    mock.cache_read_tokens, mock.cache_write_tokens = 1000, 200
    raw = client.chat.completions.with_raw_response.create(model=HAIKU, messages=MESSAGES)
    answer = raw.parse()
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 1000
    found = record(gateway, raw.headers["x-request-id"])
    prompt, completion = found["prompt_tokens"], found["response_tokens"]
    # Bedrock's inputTokens leaves the cache out; the record's prompt tokens count every prompt token
    assert prompt == answer.usage.prompt_tokens and prompt > 1200
    assert (found["cache_read_tokens"], found["cache_write_tokens"]) == (1000, 200)
    assert found["cost"] == pytest.approx(cost(prompt, completion, 1000, 200), rel=1e-9)


def test_stream(gateway: Gateway, client: openai.OpenAI, mock: MockBedrock) -> None:
    raw = client.chat.completions.with_raw_response.create(model=HAIKU, messages=MESSAGES, stream=True)
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop" and all(c.usage is None for c in chunks)
    assert mock.requests[0].path == HAIKU_PATH + "/converse-stream"
    found = record(gateway, raw.headers["x-request-id"])
    assert found["stream"] is True and found["prompt_tokens"] > 0 and found["response_tokens"] > 0
    assert found["cost"] > 0


def test_stream_with_usage(gateway: Gateway, client: openai.OpenAI, mock: MockBedrock) -> None:
    mock.cache_read_tokens = 30
    raw = client.chat.completions.with_raw_response.create(
        model=HAIKU, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    found = record(gateway, raw.headers["x-request-id"])
    assert (found["prompt_tokens"], found["response_tokens"], found["cache_read_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
        30,
    )


def test_tools(gateway: Gateway, client: openai.OpenAI, mock: MockBedrock) -> None:
    question: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    answer = client.chat.completions.create(
        model=HAIKU, messages=question, tools=[WEATHER], tool_choice="required"
    )
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls" and message.tool_calls
    call: Any = message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "location": "Paris"
    }
    assert mock.requests[0].json()["toolConfig"]["toolChoice"] == {"any": {}}
    follow_up: Any = [
        *question,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"},
    ]
    final = client.chat.completions.create(model=HAIKU, messages=follow_up, tools=[WEATHER])
    assert final.choices[0].message.content == "Mock answer to tool result: Sunny, 21C"


def test_stream_with_tools(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=HAIKU,
        messages=[{"role": "user", "content": "Use get_weather for Paris"}],
        tools=[WEATHER],
        stream=True,
    )
    chunks = list(stream)
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id and calls[0].function is not None and calls[0].function.name == "get_weather"
    arguments = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert json.loads(arguments) == {"location": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_vision_with_a_data_url(client: openai.OpenAI, mock: MockBedrock) -> None:
    content: Any = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    answer = client.chat.completions.create(model=HAIKU, messages=[{"role": "user", "content": content}])
    assert answer.choices[0].message.content == "Mock answer to: What is in this image?"
    image = mock.requests[0].json()["messages"][0]["content"][1]["image"]
    assert image == {"format": "png", "source": {"bytes": PNG}}


def test_http_image_urls_are_a_clear_400(gateway: Gateway, client: openai.OpenAI, mock: MockBedrock) -> None:
    content: Any = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(openai.BadRequestError, match="cannot fetch image URLs") as refused:
        client.chat.completions.create(model=HAIKU, messages=[{"role": "user", "content": content}])
    assert refused.value.code == "invalid_request" and mock.requests == []


# --- /openai/{llm}: embeddings and models -------------------------------------------------------------------


def test_titan_embeddings(gateway: Gateway, client: openai.OpenAI, mock: MockBedrock) -> None:
    raw = client.embeddings.with_raw_response.create(
        model=TITAN, input="hello world", dimensions=256
    )  # SDK default: base64
    result = raw.parse()
    assert len(result.data[0].embedding) == 256 and result.usage.prompt_tokens == 2
    as_float = client.embeddings.create(
        model=TITAN, input="hello world", dimensions=256, encoding_format="float"
    )
    assert as_float.data[0].embedding == pytest.approx(result.data[0].embedding, rel=1e-6)
    assert mock.requests[0].path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert mock.requests[0].json() == {"inputText": "hello world", "dimensions": 256}
    found = record(gateway, raw.headers["x-request-id"])
    assert (found["interaction_type"], found["model_name"], found["prompt_tokens"]) == (
        "embedding",
        TITAN,
        2,
    )
    assert found["cost"] == pytest.approx(2 * 0.02 * M, rel=1e-9)


def test_cohere_embeddings(gateway: Gateway, client: openai.OpenAI, mock: MockBedrock) -> None:
    response = httpx.post(
        gateway.url + "/openai/bedrock/v1/embeddings",
        json={"model": COHERE, "input": ["a cat", "a dog"], "encoding_format": "base64"},
        headers={"authorization": f"Bearer {APP_KEY}"},
    )
    raw = response.json()
    vectors = [struct.unpack("<1024f", base64.b64decode(d["embedding"])) for d in raw["data"]]
    assert len(vectors) == 2 and raw["usage"]["prompt_tokens"] == 4
    assert mock.requests[0].json() == {"texts": ["a cat", "a dog"], "input_type": "search_document"}
    assert record(gateway, response.headers["x-request-id"])["prompt_tokens"] == 4


def test_embeddings_without_a_reported_count_are_counted_by_the_gateway(
    gateway: Gateway, mock: MockBedrock
) -> None:
    mock.omit_usage = True  # some models report no x-amzn-bedrock-input-token-count
    response = httpx.post(
        gateway.url + "/openai/bedrock/v1/embeddings",
        json={"model": COHERE, "input": ["a cat", "a dog"]},
        headers={"authorization": f"Bearer {APP_KEY}"},
    )
    assert response.status_code == 200 and response.json()["usage"]["prompt_tokens"] == 0
    assert record(gateway, response.headers["x-request-id"])["prompt_tokens"] == 4  # tiktoken's count


def test_several_inputs_on_titan_are_a_clear_400(client: openai.OpenAI, mock: MockBedrock) -> None:
    with pytest.raises(openai.BadRequestError, match="one input per request"):
        client.embeddings.create(model=TITAN, input=["a", "b"])
    assert mock.requests == []


def test_models(client: openai.OpenAI, mock: MockBedrock) -> None:
    models = {m.id: m.owned_by for m in client.models.list()}
    assert models[HAIKU] == "anthropic" and models[TITAN] == "amazon"
    assert mock.requests[0].path == "/foundation-models" and "authorization" in mock.requests[0].headers


# --- /openai/{llm}: errors ----------------------------------------------------------------------------------


def test_throttling_keeps_status_and_retry_after(
    gateway: Gateway, client: openai.OpenAI, mock: MockBedrock
) -> None:
    mock.fail_status, mock.fail_retry_after, mock.fail_message = 429, "7", "Too many requests, please wait."
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model=HAIKU, messages=MESSAGES)
    assert refused.value.status_code == 429 and refused.value.response.headers["retry-after"] == "7"
    assert refused.value.code == "ThrottlingException" and "please wait" in refused.value.message
    found = record(gateway, refused.value.response.headers["x-request-id"])
    assert found["status_code"] == 429


def test_validation_errors_are_passed_on(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"inferenceConfig\.temperature") as refused:
        client.chat.completions.create(model=HAIKU, messages=MESSAGES, temperature=1.5)
    assert refused.value.code == "ValidationException"
    with pytest.raises(openai.BadRequestError, match="model identifier is invalid"):
        client.chat.completions.create(model="anthropic.claude-unknown", messages=MESSAGES)


def test_a_bad_signature_is_an_auth_error_without_secrets(gateway: Gateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as refused:
        gateway.openai(llm="bedrock-denied").chat.completions.create(model=HAIKU, messages=MESSAGES)
    assert refused.value.code == "upstream_auth_error" and "not-the-secret" not in str(refused.value.body)


def test_exception_mid_stream_is_an_sse_error(gateway: Gateway, mock: MockBedrock) -> None:
    mock.stream_exception, mock.fail_message = "throttlingException", "Too many tokens, please wait."
    with httpx.stream(
        "POST",
        gateway.url + "/openai/bedrock/v1/chat/completions",
        json={"model": HAIKU, "messages": MESSAGES, "stream": True},
        headers={"authorization": f"Bearer {APP_KEY}"},
    ) as response:
        body = b"".join(response.iter_bytes())
    assert response.status_code == 200 and b"[DONE]" not in body
    assert b"event: error" in body and b"throttlingException" in body and b"Too many tokens" in body
    failed = record(gateway, response.headers["x-request-id"])  # recorded as the failure it was
    assert failed["status_code"] == 429 and failed["stream"] is True


# --- /proxy/{llm}: boto3, re-signed by the gateway ------------------------------------------------------


def native(gateway: Gateway) -> Any:
    """boto3 pointed at the proxy: it signs with its own credentials, which the gateway ignores; the app
    key goes in as a Bearer token after signing."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=f"{gateway.url}/proxy/bedrock",
        region_name="us-east-1",
        aws_access_key_id="AKIDCLIENTOWNKEY0001",
        aws_secret_access_key="the-client-does-not-know-the-upstream-key",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )

    def app_key(request: Any, **_: Any) -> None:
        del request.headers["Authorization"]
        request.headers["Authorization"] = f"Bearer {APP_KEY}"

    client.meta.events.register("before-send.bedrock-runtime.*", app_key)
    return client


def test_proxy_converse(gateway: Gateway, mock: MockBedrock) -> None:
    mock.cache_read_tokens, mock.cache_write_tokens = 40, 10
    answer = native(gateway).converse(
        modelId=HAIKU, messages=[{"role": "user", "content": [{"text": "Proxy me"}]}]
    )
    assert answer["output"]["message"]["content"] == [{"text": "Mock answer to: Proxy me"}]
    (request,) = mock.requests
    assert request.path == HAIKU_PATH + "/converse"
    # re-signed with the gateway's credentials; the client's key and the app key never reach the upstream
    assert f"Credential={TEST_ACCESS_KEY}/" in request.headers["authorization"]
    assert "AKIDCLIENTOWNKEY0001" not in str(request.headers) and APP_KEY not in str(request.headers)
    usage = answer["usage"]
    found = record(gateway, answer["ResponseMetadata"]["HTTPHeaders"]["x-request-id"])
    assert (found["interaction_type"], found["model_name"]) == ("proxy", HAIKU)
    assert found["prompt_tokens"] == usage["inputTokens"] + 50
    assert (found["response_tokens"], found["cache_read_tokens"], found["cache_write_tokens"]) == (
        usage["outputTokens"],
        40,
        10,
    )
    assert found["cost"] == pytest.approx(
        cost(found["prompt_tokens"], usage["outputTokens"], 40, 10), rel=1e-9
    )


def test_proxy_converse_stream(gateway: Gateway, mock: MockBedrock) -> None:
    response = native(gateway).converse_stream(
        modelId=HAIKU, messages=[{"role": "user", "content": [{"text": "Hi"}]}]
    )
    events = list(response["stream"])  # boto3's own event-stream parser reads the relayed frames
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "Mock answer to: Hi"
    usage = events[-1]["metadata"]["usage"]
    assert mock.requests[0].path == HAIKU_PATH + "/converse-stream"
    found = record(gateway, response["ResponseMetadata"]["HTTPHeaders"]["x-request-id"])
    assert (found["interaction_type"], found["stream"], found["model_name"]) == ("proxy", True, HAIKU)
    assert (found["prompt_tokens"], found["response_tokens"]) == (
        usage["inputTokens"],
        usage["outputTokens"],
    )


def test_proxy_invoke_usage_from_headers(gateway: Gateway) -> None:
    answer = native(gateway).invoke_model(modelId=TITAN, body=json.dumps({"inputText": "hello world"}))
    assert len(json.loads(answer["body"].read())["embedding"]) == 1024
    found = record(gateway, answer["ResponseMetadata"]["HTTPHeaders"]["x-request-id"])
    assert (found["model_name"], found["prompt_tokens"]) == (TITAN, 2)


def test_proxy_errors_keep_the_aws_error_class(gateway: Gateway, mock: MockBedrock) -> None:
    client = native(gateway)
    with pytest.raises(ClientError) as refused:
        client.converse(modelId=HAIKU, messages=[{"role": "assistant", "content": [{"text": "Hi"}]}])
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "must start with a user message" in refused.value.response["Error"]["Message"]
    mock.fail_status, mock.fail_retry_after = 429, "3"
    with pytest.raises(ClientError) as throttled:
        client.converse(modelId=HAIKU, messages=[{"role": "user", "content": [{"text": "Hi"}]}])
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert throttled.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "3"
