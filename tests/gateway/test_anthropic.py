"""An Anthropic LLM behind a real gateway process, in front of MockAnthropic: `/openai/claude` driven by
the official `openai` SDK (translated both ways), `/proxy/claude` by the official `anthropic` SDK."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mocks.anthropic import MockAnthropic
from mocks.server import ThreadedServer
from tests.support import APP_KEY, UPSTREAM_KEY, Gateway

pytestmark = pytest.mark.one_store  # a vendor's wire format: the same on either store

MODEL = "claude-haiku-4-5"
DATED = "claude-haiku-4-5-20251001"
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
ASK_WEATHER: Any = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]
PROXY_PROMPT = "Proxy me, with a prompt long enough for the cache counts of these tests"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
# USD per token: input, output, cache write, cache read (Anthropic's ratios: writes 1.25x, reads 0.1x)
INPUT, OUTPUT, CACHE_WRITE, CACHE_READ = 1e-6, 5e-6, 1.25e-6, 0.1e-6


def config(upstream_url: str) -> dict[str, Any]:
    return {
        "secrets": {"UPSTREAM": UPSTREAM_KEY},
        "llms": [
            {
                "slug": "claude",
                "vendor": "anthropic",
                "api_base": upstream_url,
                "api_key": "$SECRET/UPSTREAM",
                "default_model": MODEL,
                "timeout_s": 30,
            }
        ],
        "prices": [
            {
                "vendor": "anthropic",
                "model": MODEL,
                "input_per_1m": INPUT * 1e6,
                "output_per_1m": OUTPUT * 1e6,
                "cache_write_per_1m": CACHE_WRITE * 1e6,
                "cache_read_per_1m": CACHE_READ * 1e6,
            }
        ],
        "users": [{"email": "alice@example.com", "role": "developer", "groups": ["team"]}],
        "groups": [{"name": "team", "llms": ["claude"]}],
        "apps": [{"name": "app-one", "owner": "alice@example.com", "api_key": APP_KEY, "llms": ["claude"]}],
    }


@pytest.fixture(scope="module")
def mock() -> Iterator[tuple[ThreadedServer, MockAnthropic]]:
    app = MockAnthropic(api_key=UPSTREAM_KEY)
    with ThreadedServer(app) as server:
        yield server, app


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, mock: tuple[ThreadedServer, MockAnthropic]
) -> Iterator[Gateway]:
    """One gateway for the module: each test reads the records it added."""
    directory: Path = tmp_path_factory.mktemp("anthropic-gateway")
    gw = Gateway(directory, config(mock[0].url)).wait_ready()
    yield gw
    gw.stop()


@pytest.fixture
def upstream(mock: tuple[ThreadedServer, MockAnthropic]) -> Iterator[MockAnthropic]:
    app = mock[1]
    app.reset()
    yield app
    app.reset()


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return gateway.openai(llm="claude")


def now() -> str:
    return datetime.now(UTC).isoformat()


def new_record(gateway: Gateway, since: str) -> dict[str, Any]:
    """The one record of the call made after `since` (an earlier test's may land late: it is older)."""
    (record,) = gateway.records(expect=1, since=since)
    return record


def cost(record: dict[str, Any]) -> float:
    """What the record should cost: uncached prompt tokens at the input rate, cached ones at theirs."""
    read, write = int(record["cache_read_tokens"]), int(record["cache_write_tokens"])
    uncached = int(record["prompt_tokens"]) - read - write
    return (
        uncached * INPUT + write * CACHE_WRITE + read * CACHE_READ + int(record["response_tokens"]) * OUTPUT
    )


def test_chat(gateway: Gateway, upstream: MockAnthropic, client: openai.OpenAI) -> None:
    since = now()
    answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == ANSWER and answer.choices[0].finish_reason == "stop"
    assert answer.model == DATED and answer.usage is not None

    (request,) = upstream.requests
    assert request.path == "/v1/messages"
    assert (
        request.headers["x-api-key"] == UPSTREAM_KEY and request.headers["anthropic-version"] == "2023-06-01"
    )
    assert APP_KEY not in str(request.headers) and APP_KEY.encode() not in request.body
    sent = request.json()
    assert sent["system"] == "Be brief." and sent["max_tokens"] == 4096 and sent["model"] == MODEL

    record = new_record(gateway, since)
    assert record["interaction_type"] == "chat" and record["status_code"] == 200
    assert (record["vendor"], record["model_name"]) == ("anthropic", MODEL)
    assert record["prompt_tokens"] == answer.usage.prompt_tokens > 0
    assert record["response_tokens"] == answer.usage.completion_tokens > 0
    assert record["cost"] == pytest.approx(cost(record)) and record["cost"] > 0


def test_cache_tokens_are_priced_at_their_rates(
    gateway: Gateway, upstream: MockAnthropic, client: openai.OpenAI
) -> None:
    upstream.cache_read_tokens, upstream.cache_write_tokens = 8, 5
    since = now()
    long_system: Any = [{"role": "system", "content": "Answer briefly and politely. " * 10}, *MESSAGES[1:]]
    answer = client.chat.completions.create(model=MODEL, messages=long_system)
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 8
    record = new_record(gateway, since)
    assert (record["cache_read_tokens"], record["cache_write_tokens"]) == (8, 5)
    assert record["prompt_tokens"] == answer.usage.prompt_tokens  # the cached parts are counted in
    prompt, completion = record["prompt_tokens"], record["response_tokens"]
    expected = (prompt - 13) * INPUT + 5 * CACHE_WRITE + 8 * CACHE_READ + completion * OUTPUT
    assert record["cost"] == pytest.approx(expected)


def test_stream(gateway: Gateway, upstream: MockAnthropic, client: openai.OpenAI) -> None:
    upstream.cache_read_tokens = 3
    since = now()
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 3
    assert upstream.requests[0].json()["stream"] is True
    record = new_record(gateway, since)
    assert record["stream"] is True and record["status_code"] == 200
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert record["cache_read_tokens"] == 3 and record["cost"] == pytest.approx(cost(record))


def test_tools_round_trip(upstream: MockAnthropic, client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model=MODEL, messages=ASK_WEATHER, tools=[WEATHER])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls
    call = message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert call.function.arguments == '{"location":"Paris"}' and call.id.startswith("toolu_")
    history: Any = [
        *ASK_WEATHER,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"},
    ]
    second = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER])
    assert second.choices[0].message.content == "Mock answer to tool result: Sunny, 24 C"
    sent = upstream.requests[1].json()["messages"]
    assert sent[1]["content"][0] == {"type": "tool_use", "id": call.id, "name": "get_weather",
                                     "input": {"location": "Paris"}}  # fmt: skip
    assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 24 C"}]


def test_stream_with_tools(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=ASK_WEATHER, tools=[WEATHER], tool_choice="required", stream=True
    )
    name, arguments, ids, finish = "", "", set(), None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or ():
            assert delta.index == 0
            ids.add(delta.id) if delta.id else None
            name += (delta.function and delta.function.name) or ""
            arguments += (delta.function and delta.function.arguments) or ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, arguments, finish) == ("get_weather", '{"location": "Paris"}', "tool_calls") and len(
        ids
    ) == 1


@pytest.mark.parametrize(
    ("url", "source"),
    [
        (f"data:image/png;base64,{PNG}", {"type": "base64", "media_type": "image/png", "data": PNG}),
        ("https://example.com/cat.jpg", {"type": "url", "url": "https://example.com/cat.jpg"}),
    ],
    ids=["data url", "http url"],
)
def test_vision(upstream: MockAnthropic, client: openai.OpenAI, url: str, source: dict[str, str]) -> None:
    content: Any = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    assert answer.choices[0].message.content == "Mock answer to: What is this?"
    assert upstream.requests[0].json()["messages"][0]["content"][1] == {"type": "image", "source": source}


def test_json_modes(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False}
    structured = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )
    assert structured.choices[0].message.content == '{"city":"mock"}'
    emulated = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, response_format={"type": "json_object"}
    )
    assert emulated.choices[0].message.content == '{"location":"Paris"}'
    assert emulated.choices[0].finish_reason == "stop" and not emulated.choices[0].message.tool_calls


def test_upstream_429_keeps_retry_after(
    gateway: Gateway, upstream: MockAnthropic, client: openai.OpenAI
) -> None:
    upstream.fail_status, upstream.fail_retry_after, upstream.fail_message = (
        429,
        "1.2",
        "Number of requests exceeded",
    )
    since = now()
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert raised.value.response.headers["retry-after"] == "2"  # whole seconds, rounded up
    assert raised.value.body == {
        "message": "Number of requests exceeded",
        "type": "rate_limit_error",
        "code": "rate_limit_error",
        "param": None,
    }
    record = new_record(gateway, since)
    assert record["status_code"] == 429


@pytest.mark.parametrize(
    ("status", "error"),
    [(529, openai.InternalServerError), (401, openai.AuthenticationError)],
    ids=["overloaded", "upstream auth"],
)
def test_upstream_errors(
    upstream: MockAnthropic, client: openai.OpenAI, status: int, error: type[Exception]
) -> None:
    upstream.fail_status = status
    with pytest.raises(error) as raised:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert isinstance(raised.value, openai.APIStatusError) and raised.value.status_code == status


def test_vendor_validation_reaches_the_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="model: claude-nope"):
        client.chat.completions.create(model="claude-nope", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="less than or equal to 1"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=1.5)


def test_embeddings_are_refused(client: openai.OpenAI, upstream: MockAnthropic) -> None:
    with pytest.raises(openai.BadRequestError, match="no embeddings API"):
        client.embeddings.create(model=MODEL, input="hello")
    assert upstream.requests == []


def test_models(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert DATED in models and models[DATED].owned_by == "anthropic" and models[DATED].created > 0


def test_mid_stream_error_reaches_the_openai_client(
    gateway: Gateway, upstream: MockAnthropic, client: openai.OpenAI
) -> None:
    upstream.stream_error = "overloaded_error"
    since = now()
    with pytest.raises(openai.APIError, match="overloaded"):
        for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            pass
    record = new_record(gateway, since)  # recorded as the failure it was, not as a 200
    assert (record["status_code"], record["error_code"]) == (529, "overloaded_error")


# --- /proxy/ with the official anthropic SDK -----------------------------------------------------------


def native(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url + "/proxy/claude", api_key=APP_KEY, max_retries=0)


def test_proxy_message(gateway: Gateway, upstream: MockAnthropic) -> None:
    upstream.cache_read_tokens, upstream.cache_write_tokens = 4, 2
    since = now()
    message = native(gateway).messages.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": PROXY_PROMPT}]
    )
    assert (
        message.content[0].type == "text"
        and message.content[0].text == "Mock answer to: " + PROXY_PROMPT[:60]
    )
    (request,) = upstream.requests
    assert request.headers["x-api-key"] == UPSTREAM_KEY and "authorization" not in request.headers
    assert request.headers["anthropic-version"] == "2026-10-21"  # the SDK's own version goes through
    assert request.headers["x-stainless-lang"] == "python"
    record = new_record(gateway, since)
    assert record["interaction_type"] == "proxy" and record["model_name"] == MODEL
    usage = message.usage
    assert record["prompt_tokens"] == usage.input_tokens + 4 + 2
    assert (record["cache_read_tokens"], record["cache_write_tokens"]) == (4, 2)
    assert record["response_tokens"] == usage.output_tokens
    assert record["cost"] == pytest.approx(cost(record)) and record["cost"] > 0


def test_proxy_stream(gateway: Gateway, upstream: MockAnthropic) -> None:
    upstream.cache_read_tokens = 6
    since = now()
    with native(gateway).messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "Stream me " + PROXY_PROMPT}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ("Mock answer to: Stream me " + PROXY_PROMPT)[:76]
    record = new_record(gateway, since)
    assert record["interaction_type"] == "proxy" and record["stream"] is True
    assert record["prompt_tokens"] == final.usage.input_tokens + 6 and record["cache_read_tokens"] == 6
    assert record["response_tokens"] == final.usage.output_tokens
    assert record["cost"] == pytest.approx(cost(record))


def test_proxy_error_is_native(gateway: Gateway, upstream: MockAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        native(gateway).messages.create(
            model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert raised.value.body["error"] == {"type": "not_found_error", "message": "model: claude-nope"}  # type: ignore[index]


def test_proxy_accepts_the_app_key_in_x_api_key(gateway: Gateway, upstream: MockAnthropic) -> None:
    response = httpx.post(
        gateway.url + "/proxy/claude/v1/messages/count_tokens",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Count me"}]},
        headers={"x-api-key": APP_KEY},
    )
    assert response.status_code == 200, response.text
    assert response.json()["input_tokens"] > 0
    (request,) = upstream.requests
    assert (
        request.headers["x-api-key"] == UPSTREAM_KEY and request.headers["anthropic-version"] == "2023-06-01"
    )
