"""An Ollama LLM through a real gateway process, in front of MockOllama: `/openai/{llm}` driven by the
official OpenAI SDK (translated both ways), `/proxy/{llm}` by the official `ollama` SDK (native bytes)."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import ollama
import openai
import pytest

from mocks.ollama import MockOllama
from mocks.server import ThreadedServer
from tests.support import APP_KEY, Gateway

pytestmark = pytest.mark.one_store  # a vendor's wire format: the same on either store

UPSTREAM_KEY = "ollama-proxy-token-0123456789"
MESSAGES: Any = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hello to Tollgate"},
]
ANSWER = "Mock answer to: Say hello to Tollgate"
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
ASK_WEATHER: Any = [{"role": "user", "content": "Call get_weather for Paris"}]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
OWNER = "alice@example.com"
# USD per token: input, output, cached input
INPUT, OUTPUT, CACHED = 1.0e-6, 2.0e-6, 0.5e-6


def config(upstream_url: str) -> dict[str, Any]:
    llm = {"vendor": "ollama", "api_base": upstream_url, "default_model": "llama3.2", "timeout_s": 30}
    config: dict[str, Any] = {
        "secrets": {"OLLAMA": UPSTREAM_KEY},
        "llms": [
            {"slug": "local", "api_key": "$SECRET/OLLAMA", **llm},
            {"slug": "wrongkey", "api_key": "not-the-token", **llm},
        ],
        "prices": [
            {"vendor": "ollama", "model": "llama3.2", "input_per_1m": 1.0, "output_per_1m": 2.0},
            {"vendor": "ollama", "model": "nomic-embed-text", "input_per_1m": 0.1},
        ],
        "users": [{"email": OWNER, "role": "developer", "groups": ["team"]}],
        "groups": [{"name": "team", "llms": ["local", "wrongkey"]}],
        "apps": [{"name": "app-one", "owner": OWNER, "api_key": APP_KEY, "llms": ["local", "wrongkey"]}],
    }
    config["prices"][0]["cache_read_per_1m"] = 0.5
    return config


@pytest.fixture(scope="module")
def mock_server() -> Iterator[tuple[ThreadedServer, MockOllama]]:
    app = MockOllama(api_key=UPSTREAM_KEY)
    with ThreadedServer(app) as server:
        yield server, app


@pytest.fixture
def upstream(mock_server: tuple[ThreadedServer, MockOllama]) -> Iterator[MockOllama]:
    app = mock_server[1]
    app.reset()
    yield app
    app.reset()


@pytest.fixture(scope="module")
def shared_gateway(
    tmp_path_factory: pytest.TempPathFactory, mock_server: tuple[ThreadedServer, MockOllama]
) -> Iterator[Gateway]:
    # One gateway process for the module (a start costs a second); each test sees its own records.
    gateway = Gateway(tmp_path_factory.mktemp("ollama"), config(mock_server[0].url)).wait_ready()
    yield gateway
    gateway.stop()


class Session:
    """The module's gateway, as one test sees it: only the records of requests made since it began."""

    def __init__(self, gateway: Gateway) -> None:
        self.url = gateway.url
        self._gateway = gateway
        self._since = datetime.now(UTC).isoformat()

    def records(self, expect: int) -> list[dict[str, Any]]:
        return self._gateway.records(expect=expect, since=self._since)

    def openai(self, llm: str) -> openai.OpenAI:
        return self._gateway.openai(llm=llm)


@pytest.fixture
def gateway(shared_gateway: Gateway, upstream: MockOllama) -> Session:
    return Session(shared_gateway)


def client(gateway: Session, llm: str = "local") -> openai.OpenAI:
    return gateway.openai(llm=llm)


def native(gateway: Session) -> ollama.Client:
    return ollama.Client(host=gateway.url + "/proxy/local", headers={"Authorization": "Bearer " + APP_KEY})


def cost(prompt: int, completion: int, cached: int = 0) -> float:
    return (prompt - cached) * INPUT + cached * CACHED + completion * OUTPUT


# --- /openai/: chat ---------------------------------------------------------------------------------------


def test_chat(gateway: Session, upstream: MockOllama) -> None:
    answer = client(gateway).chat.completions.create(model="llama3.2", messages=MESSAGES, temperature=0.2)
    assert answer.choices[0].message.content == ANSWER and answer.choices[0].finish_reason == "stop"
    assert answer.model == "llama3.2" and answer.usage is not None

    (request,) = upstream.requests
    assert request.path == "/api/chat" and request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert APP_KEY not in str(request.headers) and APP_KEY.encode() not in request.body
    sent = request.json()
    assert sent["stream"] is False and sent["options"] == {"temperature": 0.2}
    assert sent["messages"] == MESSAGES

    (record,) = gateway.records(expect=1)
    assert (record["vendor"], record["model_name"], record["interaction_type"]) == (
        "ollama",
        "llama3.2",
        "chat",
    )
    assert record["status_code"] == 200 and record["stream"] is False
    assert (record["prompt_tokens"], record["response_tokens"], record["total_tokens"]) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
        answer.usage.total_tokens,
    )
    assert record["cost"] == pytest.approx(cost(answer.usage.prompt_tokens, answer.usage.completion_tokens))


def test_default_model_and_json_mode(gateway: Session, upstream: MockOllama) -> None:
    response = httpx.post(
        gateway.url + "/openai/local/v1/chat/completions",
        json={"messages": MESSAGES, "response_format": {"type": "json_object"}},
        headers={"authorization": f"Bearer {APP_KEY}"},
    )
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == {"answer": ANSWER}
    sent = upstream.requests[0].json()
    assert (sent["model"], sent["format"]) == ("llama3.2", "json")


def test_cached_prompt_tokens_are_priced_at_the_cache_rate(gateway: Session, upstream: MockOllama) -> None:
    upstream.cached_tokens = 4
    answer = client(gateway).chat.completions.create(model="llama3.2", messages=MESSAGES)
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 4
    (record,) = gateway.records(expect=1)
    assert record["cache_read_tokens"] == 4 and record["prompt_tokens"] == usage.prompt_tokens
    assert record["cost"] == pytest.approx(cost(usage.prompt_tokens, usage.completion_tokens, cached=4))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_prompt_count_left_out_is_counted_with_tiktoken(
    gateway: Session, upstream: MockOllama, stream: bool
) -> None:
    upstream.omit_usage = True  # older Ollama left prompt_eval_count out when the prompt was cached
    answer: Any = client(gateway).chat.completions.create(model="llama3.2", messages=MESSAGES, stream=stream)
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in answer if c.choices) == ANSWER
    else:
        assert answer.usage is None and answer.choices[0].message.content == ANSWER
    (record,) = gateway.records(expect=1)
    assert record["prompt_tokens"] > 0 and record["cost"] > 0
    if stream:  # the relayed text is counted
        assert record["response_tokens"] > 0


def test_answer_tokens_are_booked_when_the_prompt_count_is_left_out(
    gateway: Session, upstream: MockOllama
) -> None:
    upstream.omit_usage = True
    client(gateway).chat.completions.create(model="llama3.2", messages=MESSAGES)
    assert gateway.records(expect=1)[0]["response_tokens"] > 0


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream(gateway: Session, upstream: MockOllama, include_usage: bool) -> None:
    options: Any = {"include_usage": True} if include_usage else openai.omit
    stream = client(gateway).chat.completions.create(
        model="llama3.2", messages=MESSAGES, stream=True, stream_options=options
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert upstream.requests[0].json()["stream"] is True
    (record,) = gateway.records(expect=1)
    assert record["stream"] is True and record["status_code"] == 200
    if include_usage:
        usage = chunks[-1].usage
        assert usage is not None and chunks[-1].choices == []
        assert (record["prompt_tokens"], record["response_tokens"]) == (
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        assert record["cost"] == pytest.approx(cost(usage.prompt_tokens, usage.completion_tokens))
    else:
        assert all(c.usage is None for c in chunks)
        assert record["prompt_tokens"] > 0 and record["response_tokens"] > 0


def test_tools(gateway: Session, upstream: MockOllama) -> None:
    openai_client = client(gateway)
    answer = openai_client.chat.completions.create(model="llama3.2", messages=ASK_WEATHER, tools=[WEATHER])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"location": "Paris"})

    follow_up: Any = [
        *ASK_WEATHER,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    result = openai_client.chat.completions.create(model="llama3.2", messages=follow_up, tools=[WEATHER])
    assert result.choices[0].message.content == "Mock answer to tool result: 18 degrees and sunny"
    sent = upstream.requests[1].json()["messages"]
    assert sent[1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}
    ]
    assert sent[2] == {"role": "tool", "content": "18 degrees and sunny", "tool_name": "get_weather"}


def test_stream_with_tools(gateway: Session) -> None:
    stream = client(gateway).chat.completions.create(
        model="llama3.2", messages=ASK_WEATHER, tools=[WEATHER], stream=True
    )
    chunks = [c for c in stream if c.choices]
    calls = [call for c in chunks for call in c.choices[0].delta.tool_calls or ()]
    (call,) = calls
    assert call.index == 0 and call.id and call.function and call.function.name == "get_weather"
    assert json.loads(call.function.arguments or "") == {"location": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_vision(gateway: Session, upstream: MockOllama) -> None:
    def ask(url: str) -> Any:
        content: Any = [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]
        return client(gateway).chat.completions.create(
            model="llava", messages=[{"role": "user", "content": content}]
        )

    answer = ask(f"data:image/png;base64,{PNG}")
    assert answer.choices[0].message.content == "Mock answer to: What is this? (with 1 image)"
    assert upstream.requests[0].json()["messages"][0]["images"] == [PNG]
    with pytest.raises(openai.BadRequestError) as refused:
        ask("https://example.com/cat.png")
    assert refused.value.status_code == 400 and "inline images only" in refused.value.message
    assert len(upstream.requests) == 1  # refused before the upstream
    assert gateway.records(expect=2)[0]["status_code"] == 400


@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_embeddings(gateway: Session, upstream: MockOllama, encoding: Any) -> None:
    # The SDK asks for base64 by default and decodes it; "float" is sent as asked.
    kwargs: Any = {} if encoding == "base64" else {"encoding_format": "float"}
    result = client(gateway).embeddings.create(
        model="nomic-embed-text", input=["hello", "world"], dimensions=8, **kwargs
    )
    assert [len(d.embedding) for d in result.data] == [8, 8]
    sent = upstream.requests[0]
    assert sent.path == "/api/embed" and sent.json() == {
        "model": "nomic-embed-text",
        "input": ["hello", "world"],
        "dimensions": 8,
    }
    raw = httpx.post(
        gateway.url + "/openai/local/v1/embeddings",
        headers={"authorization": f"Bearer {APP_KEY}"},
        json={"model": "nomic-embed-text", "input": "hello", "dimensions": 8, "encoding_format": "base64"},
    ).json()
    vector = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert vector == pytest.approx(result.data[0].embedding, rel=1e-6)
    record = gateway.records(expect=2)[1]
    assert (
        record["interaction_type"] == "embedding"
        and record["prompt_tokens"] == result.usage.prompt_tokens > 0
    )
    assert record["cost"] == pytest.approx(result.usage.prompt_tokens * 0.1e-6)


def test_models(gateway: Session) -> None:
    models = client(gateway).models.list()
    assert [m.id for m in models] == ["llama3.2:latest", "llava:latest", "nomic-embed-text:latest"]
    assert all(m.owned_by == "library" and m.created > 0 for m in models)


# --- /openai/: errors --------------------------------------------------------------------------------------


def test_unknown_model(gateway: Session) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client(gateway).chat.completions.create(model="llama9", messages=MESSAGES)
    assert missing.value.body == {
        "message": 'model "llama9" not found, try pulling it first',
        "type": "invalid_request_error",
        "code": "model_not_found",
        "param": None,
    }
    assert missing.value.code == "model_not_found"
    assert gateway.records(expect=1)[0]["status_code"] == 404


def test_rate_limit_keeps_retry_after(gateway: Session, upstream: MockOllama) -> None:
    upstream.fail_status, upstream.fail_message, upstream.fail_retry_after = 429, "too many requests", "3"
    with pytest.raises(openai.RateLimitError) as limited:
        client(gateway).chat.completions.create(model="llama3.2", messages=MESSAGES)
    assert (
        limited.value.response.headers["retry-after"] == "3" and "too many requests" in limited.value.message
    )
    upstream.fail_status, upstream.fail_message = 500, "model runner has unexpectedly stopped"
    with pytest.raises(openai.InternalServerError) as failed:
        client(gateway).chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True)
    assert "unexpectedly stopped" in failed.value.message
    assert [r["status_code"] for r in gateway.records(expect=2)] == [500, 429]


def test_refused_upstream_credential(gateway: Session) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        client(gateway, "wrongkey").chat.completions.create(model="llama3.2", messages=MESSAGES)
    assert refused.value.code == "upstream_auth_error" and "not-the-token" not in refused.value.message


# --- /proxy/: the native API with the ollama SDK ----------------------------------------------------------


def test_proxy_chat(gateway: Session, upstream: MockOllama) -> None:
    upstream.cached_tokens = 3
    answer = native(gateway).chat(model="llama3.2", messages=MESSAGES)
    assert answer.message.content == ANSWER and answer.prompt_eval_count and answer.eval_count
    (request,) = upstream.requests
    assert request.path == "/api/chat" and request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert request.headers["user-agent"].startswith("ollama-python/")  # the client's own headers go through
    (record,) = gateway.records(expect=1)
    assert (record["interaction_type"], record["model_name"], record["stream"]) == (
        "proxy",
        "llama3.2",
        False,
    )
    assert (record["prompt_tokens"], record["response_tokens"], record["cache_read_tokens"]) == (
        answer.prompt_eval_count,
        answer.eval_count,
        3,
    )
    assert record["cost"] == pytest.approx(cost(answer.prompt_eval_count, answer.eval_count, cached=3))


def test_proxy_stream(gateway: Session, upstream: MockOllama) -> None:
    parts = list(native(gateway).chat(model="llama3.2", messages=MESSAGES, stream=True))
    assert "".join(p.message.content or "" for p in parts) == ANSWER
    final = parts[-1]
    assert final.done and final.prompt_eval_count and final.eval_count
    (record,) = gateway.records(expect=1)
    assert record["stream"] is True and record["status_code"] == 200 and record["interaction_type"] == "proxy"
    assert (record["prompt_tokens"], record["response_tokens"]) == (final.prompt_eval_count, final.eval_count)
    assert record["cost"] == pytest.approx(cost(final.prompt_eval_count, final.eval_count))


def test_proxy_generate_embed_default_stream_and_errors(gateway: Session) -> None:
    sdk = native(gateway)
    generated = list(sdk.generate(model="llama3.2", prompt="Why is the sky blue?", stream=True))
    embedded = sdk.embed(model="nomic-embed-text", input="hello")
    # Ollama streams when `stream` is left out: the NDJSON is relayed as it is, and still accounted
    raw = httpx.post(
        gateway.url + "/proxy/local/api/chat",
        json={"model": "llama3.2", "messages": MESSAGES},
        headers={"authorization": f"Bearer {APP_KEY}"},
    )
    assert raw.headers["content-type"] == "application/x-ndjson"
    final = json.loads(raw.text.splitlines()[-1])
    with pytest.raises(ollama.ResponseError) as missing:
        sdk.chat(model="llama9", messages=MESSAGES)
    assert missing.value.status_code == 404
    assert missing.value.error == 'model "llama9" not found, try pulling it first'
    missing_record, default_record, embed_record, generate_record = gateway.records(expect=4)
    assert (
        generate_record["response_tokens"] == generated[-1].eval_count and generate_record["stream"] is True
    )
    assert embed_record["prompt_tokens"] == embedded.prompt_eval_count
    assert embed_record["model_name"] == "nomic-embed-text"
    assert default_record["stream"] is True and default_record["response_tokens"] == final["eval_count"]
    assert missing_record["status_code"] == 404 and missing_record["interaction_type"] == "proxy"
