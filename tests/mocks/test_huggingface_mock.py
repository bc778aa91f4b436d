"""MockHuggingFace is faithful: the openai SDK talks to its router and TEI endpoints (Hugging Face's own
clients are not needed: the router is OpenAI-compatible), and its errors are Hugging Face's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from mocks.huggingface import MockHuggingFace
from mocks.server import ThreadedServer

TOKEN = "hf_mock_token_0123456789"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
USER: Any = [{"role": "user", "content": "Hello there"}]
WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def mock() -> MockHuggingFace:
    return MockHuggingFace(api_key=TOKEN)


@pytest.fixture(scope="module")
def server(mock: MockHuggingFace) -> Iterator[ThreadedServer]:
    with ThreadedServer(mock) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(mock: MockHuggingFace) -> None:
    mock.reset()


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0)


@pytest.fixture(scope="module")
def http(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10) as raw:
        yield raw


@pytest.mark.parametrize("model", [LLAMA, LLAMA + ":novita", LLAMA + ":fastest"])
def test_chat_with_and_without_a_provider(client: openai.OpenAI, model: str) -> None:
    answer = client.chat.completions.create(model=model, messages=USER)
    assert answer.choices[0].message.content == "Mock answer to: Hello there"
    assert answer.model == LLAMA and answer.usage is not None and answer.usage.prompt_tokens > 0


def test_stream_tools_and_vision(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=LLAMA, messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Mock answer to: Hello there"
    )
    assert chunks[-1].usage is not None
    messages: Any = [{"role": "user", "content": "Use get_weather"}]
    called = client.chat.completions.create(model=LLAMA, messages=messages, tools=[WEATHER])
    assert (called.choices[0].message.tool_calls or [])[0].function.name == "get_weather"  # type: ignore[union-attr]
    image: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is it?"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            ],
        },
    ]
    seen = client.chat.completions.create(model="Qwen/Qwen2.5-VL-7B-Instruct", messages=image)
    assert seen.choices[0].message.content == "Mock answer to: What is it?"


def test_models(client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} >= {LLAMA, "openai/gpt-oss-120b"}


def test_tei_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="tei", input=["a", "b"])
    assert [len(d.embedding) for d in result.data] == [384, 384] and result.usage.prompt_tokens == 2
    assert result.model == "BAAI/bge-small-en-v1.5"
    assert len(client.embeddings.create(model="tei", input="a", dimensions=16).data[0].embedding) == 16


def test_feature_extraction_pipeline(http: httpx.Client) -> None:
    response = http.post(
        "/hf-inference/models/sentence-transformers/all-MiniLM-L6-v2/pipeline/feature-extraction",
        json={"inputs": ["a", "b"]},
    )
    vectors = response.json()
    assert response.status_code == 200 and [len(v) for v in vectors] == [384, 384]
    missing = http.post("/hf-inference/models/nope/x/pipeline/feature-extraction", json={"inputs": ["a"]})
    assert missing.status_code == 404 and missing.json() == {"error": "Model nope/x does not exist"}


def test_errors_are_hugging_faces(server: ThreadedServer, client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(model="nope/model", messages=USER)
    assert unknown.value.code == "model_not_supported"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=LLAMA, messages=[])  # OpenAI's own validation
    denied = httpx.post(
        server.url + "/v1/chat/completions", headers={"authorization": "Bearer hf_wrong"}, json={}
    )
    assert denied.status_code == 401 and denied.json() == {"error": "Invalid username or password."}
    invalid = http.post("/v1/embeddings", json={"input": []})
    assert invalid.status_code == 422 and invalid.json()["error_type"] == "Validation"


def test_injected_failure(client: openai.OpenAI, mock: MockHuggingFace) -> None:
    mock.fail_status, mock.fail_retry_after, mock.fail_message = 429, "2", "Rate limit reached"
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=LLAMA, messages=USER)
    assert limited.value.body == "Rate limit reached"  # the SDK reads Hugging Face's string `error`
    assert limited.value.response.headers["retry-after"] == "2"


def test_cached_tokens(client: openai.OpenAI, mock: MockHuggingFace) -> None:
    mock.cached_tokens = 5
    answer = client.chat.completions.create(model=LLAMA, messages=USER)
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 5
