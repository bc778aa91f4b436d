"""MockAnthropic is faithful: the official `anthropic` SDK talks to it over loopback (its types parse
every answer and stream), and it rejects what the Messages API rejects, with the API's status and type."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from mocks.anthropic import MockAnthropic
from mocks.server import ThreadedServer

KEY = "sk-ant-test-0123456789"
MODEL = "claude-haiku-4-5"
DATED = "claude-haiku-4-5-20251001"
USER: Any = [{"role": "user", "content": "Hello there, how are you?"}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
OLD = "2023-06-01"  # the API version that still takes temperature, top_p and top_k


@pytest.fixture(scope="module")
def mock() -> MockAnthropic:
    return MockAnthropic(api_key=KEY)


@pytest.fixture(scope="module")
def server(mock: MockAnthropic) -> Iterator[ThreadedServer]:
    with ThreadedServer(mock) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(mock: MockAnthropic) -> None:
    mock.reset()


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)


def post(server: ThreadedServer, body: Any, version: str | None = OLD, **headers: str) -> httpx.Response:
    sent = {"x-api-key": KEY, **headers}
    if version is not None:
        sent["anthropic-version"] = version
    return httpx.post(server.url + "/v1/messages", json=body, headers=sent)


def test_message(client: anthropic.Anthropic, mock: MockAnthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=100, system="Be brief.", messages=USER)
    assert message.model == DATED and message.role == "assistant" and message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Mock answer to: Hello there, how are you?"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.id.startswith("msg_")
    (request,) = mock.requests
    assert request.headers["authorization"] == f"Bearer {KEY}"  # SDK 2.x sends the key as a Bearer token
    assert request.headers["anthropic-version"] == "2026-10-21"


def test_stream_events_are_what_the_sdk_accumulates(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert final.content[0].type == "text" and final.content[0].text.startswith("Mock answer to: Hello")
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 1


def test_stream_of_a_tool_call(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=100, messages=USER, tools=[WEATHER], tool_choice={"type": "any"}
    ) as stream:
        final = stream.get_final_message()
    block = final.content[0]
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"location": "Paris"}
    assert block.id.startswith("toolu_") and final.stop_reason == "tool_use"


def test_tool_round_trip(client: anthropic.Anthropic) -> None:
    asked: Any = [{"role": "user", "content": "What is the weather? use get_weather"}]
    first = client.messages.create(model=MODEL, max_tokens=100, messages=asked, tools=[WEATHER])
    call = first.content[0]
    assert call.type == "tool_use" and first.stop_reason == "tool_use"
    history: Any = [
        *asked,
        {"role": "assistant", "content": [call.to_dict()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]},
    ]
    second = client.messages.create(model=MODEL, max_tokens=100, messages=history, tools=[WEATHER])
    assert second.content[0].type == "text"
    assert second.content[0].text == "Mock answer to tool result: Sunny"


def test_cache_counts_are_outside_input_tokens(client: anthropic.Anthropic, mock: MockAnthropic) -> None:
    plain = client.messages.create(model=MODEL, max_tokens=100, messages=USER).usage
    mock.cache_read_tokens, mock.cache_write_tokens = 4, 3
    cached = client.messages.create(model=MODEL, max_tokens=100, messages=USER).usage
    assert (cached.cache_read_input_tokens, cached.cache_creation_input_tokens) == (4, 3)
    assert cached.input_tokens == plain.input_tokens - 7
    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
        streamed = stream.get_final_message().usage
    assert (streamed.cache_read_input_tokens, streamed.cache_creation_input_tokens) == (4, 3)


def test_limits_and_stop_sequences(client: anthropic.Anthropic) -> None:
    short = client.messages.create(model=MODEL, max_tokens=2, messages=USER)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 2
    stopped = client.messages.create(model=MODEL, max_tokens=100, messages=USER, stop_sequences=["there"])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "there"
    assert stopped.content[0].type == "text" and stopped.content[0].text == "Mock answer to: Hello "


def test_structured_output_follows_the_schema(client: anthropic.Anthropic) -> None:
    schema: Any = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}}
    message = client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=USER,
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert message.content[0].type == "text" and message.content[0].text == '{"city":"mock","n":0}'


def test_images_inline_and_by_url(client: anthropic.Anthropic) -> None:
    content: Any = [
        {"type": "text", "text": "Describe"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    message = client.messages.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    assert message.usage.input_tokens > 3000  # two images are counted


def test_models(client: anthropic.Anthropic) -> None:
    models = list(client.models.list())
    assert DATED in [m.id for m in models] and all(m.type == "model" for m in models)
    assert client.models.retrieve("claude-sonnet-4-6").display_name == "Claude Sonnet 4.6"


def test_count_tokens(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(model=MODEL, messages=USER)
    assert (
        counted.input_tokens
        == client.messages.create(model=MODEL, max_tokens=9, messages=USER).usage.input_tokens
    )


def test_old_version_takes_sampling(server: ThreadedServer) -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": USER, "temperature": 0.2, "top_p": 0.9, "top_k": 5}
    assert post(server, body).status_code == 200


def test_consecutive_turns_of_one_role_are_combined(server: ThreadedServer) -> None:
    messages = [{"role": "user", "content": "One"}, {"role": "user", "content": "Two"}]
    response = post(server, {"model": MODEL, "max_tokens": 10, "messages": messages})
    assert response.status_code == 200, response.text


BASE: Any = {"model": MODEL, "max_tokens": 10, "messages": USER}
TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}


def result(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}


def _without(name: str) -> dict[str, Any]:
    return {k: v for k, v in BASE.items() if k != name}


# (id, body, API version, status, error type, words of the message)
REJECTED: list[tuple[str, Any, str | None, int, str, str]] = [
    (
        "no max_tokens",
        _without("max_tokens"),
        OLD,
        400,
        "invalid_request_error",
        "max_tokens: Field required",
    ),
    ("no model", _without("model"), OLD, 400, "invalid_request_error", "model: Field required"),
    ("no messages", _without("messages"), OLD, 400, "invalid_request_error", "messages: Field required"),
    ("empty messages", {**BASE, "messages": []}, OLD, 400, "invalid_request_error", "at least one message"),
    ("unknown model", {**BASE, "model": "claude-nope"}, OLD, 404, "not_found_error", "model: claude-nope"),
    ("no version", BASE, None, 400, "invalid_request_error", "anthropic-version: header is required"),
    ("bad version", BASE, "2024-01-01", 400, "invalid_request_error", "is not a valid version"),
    (
        "system role",
        {**BASE, "messages": [{"role": "system", "content": "Be brief."}, *USER]},
        OLD,
        400,
        "invalid_request_error",
        "role 'system' is not supported",
    ),
    (
        "assistant first",
        {**BASE, "messages": [{"role": "assistant", "content": "Hi"}, *USER]},
        OLD,
        400,
        "invalid_request_error",
        'first message must use the "user" role',
    ),
    (
        "temperature > 1",
        {**BASE, "temperature": 1.5},
        OLD,
        400,
        "invalid_request_error",
        "less than or equal to 1",
    ),
    (
        "temperature < 0",
        {**BASE, "temperature": -0.1},
        OLD,
        400,
        "invalid_request_error",
        "greater than or equal",
    ),
    (
        "temperature on 2026-10-21",
        {**BASE, "temperature": 1.0},
        "2026-10-21",
        400,
        "invalid_request_error",
        "temperature: Extra inputs are not permitted",
    ),
    (
        "unknown field",
        {**BASE, "seed": 1},
        OLD,
        400,
        "invalid_request_error",
        "seed: Extra inputs are not permitted",
    ),
    (
        "max_tokens above the model's",
        {**BASE, "max_tokens": 100_000},
        OLD,
        400,
        "invalid_request_error",
        "maximum allowed number of output tokens",
    ),
    (
        "stray tool_result",
        {**BASE, "messages": [{"role": "user", "content": [result("toolu_nope")]}]},
        OLD,
        400,
        "invalid_request_error",
        "unexpected `tool_use_id` found in `tool_result` blocks: toolu_nope",
    ),
    (
        "tool_use without its result",
        {
            **BASE,
            "messages": [
                *USER,
                {"role": "assistant", "content": [TOOL_USE]},
                {"role": "user", "content": "x"},
            ],
        },
        OLD,
        400,
        "invalid_request_error",
        "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
    ),
    (
        "empty text",
        {**BASE, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
        OLD,
        400,
        "invalid_request_error",
        "text content blocks must be non-empty",
    ),
    (
        "empty content",
        {**BASE, "messages": [{"role": "user", "content": ""}]},
        OLD,
        400,
        "invalid_request_error",
        "must have non-empty content",
    ),
    (
        "bad image type",
        {
            **BASE,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/bmp", "data": PNG},
                        }
                    ],
                }
            ],
        },
        OLD,
        400,
        "invalid_request_error",
        "media_type: Input should be 'image/jpeg'",
    ),
    (
        "tool_choice without tools",
        {**BASE, "tool_choice": {"type": "any"}},
        OLD,
        400,
        "invalid_request_error",
        "tool_choice may only be specified while providing tools",
    ),
    (
        "bad tool name",
        {**BASE, "tools": [{**WEATHER, "name": "get weather"}]},
        OLD,
        400,
        "invalid_request_error",
        "custom.name: String should match pattern",
    ),
    (
        "metadata extra key",
        {**BASE, "metadata": {"user": "u"}},
        OLD,
        400,
        "invalid_request_error",
        "metadata.user: Extra inputs are not permitted",
    ),
]


@pytest.mark.parametrize(
    ("body", "version", "status", "kind", "words"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED]
)
def test_rejected(
    server: ThreadedServer, body: Any, version: str | None, status: int, kind: str, words: str
) -> None:
    response = post(server, body, version)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == kind
    assert words in error["error"]["message"]
    assert error["request_id"] == response.headers["request-id"]


def test_errors_reach_the_sdk_as_its_exceptions(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="claude-nope", max_tokens=10, messages=USER)
    assert missing.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: claude-nope"},
        "request_id": missing.value.request_id,
    }
    with pytest.raises(anthropic.BadRequestError, match="temperature: Extra inputs are not permitted"):
        client.messages.create(model=MODEL, max_tokens=10, messages=USER, extra_body={"temperature": 0.5})


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, "x-api-key header is required"), ({"x-api-key": "sk-wrong"}, "invalid x-api-key")],
    ids=["missing", "wrong"],
)
def test_authentication(server: ThreadedServer, headers: dict[str, str], message: str) -> None:
    response = httpx.post(
        server.url + "/v1/messages", json=BASE, headers={"anthropic-version": OLD, **headers}
    )
    assert response.status_code == 401
    assert response.json()["error"] == {"type": "authentication_error", "message": message}


def test_x_api_key_wins_over_a_bearer_token(server: ThreadedServer) -> None:
    response = post(server, BASE, authorization="Bearer sk-wrong")
    assert response.status_code == 200


def test_wrong_key_through_the_sdk(server: ThreadedServer) -> None:
    wrong = anthropic.Anthropic(base_url=server.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(model=MODEL, max_tokens=10, messages=USER)


@pytest.mark.parametrize(
    ("status", "kind", "error"),
    [
        (429, "rate_limit_error", anthropic.RateLimitError),
        (529, "overloaded_error", anthropic.OverloadedError),
        (500, "api_error", anthropic.InternalServerError),
    ],
    ids=["429", "529", "500"],
)
def test_injected_failures(
    client: anthropic.Anthropic, mock: MockAnthropic, status: int, kind: str, error: type[Exception]
) -> None:
    mock.fail_status, mock.fail_retry_after = status, "7"
    with pytest.raises(error) as raised:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert isinstance(raised.value, anthropic.APIStatusError)
    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.body["error"]["type"] == kind  # type: ignore[index]


def test_stream_error_event_raises_in_the_sdk(client: anthropic.Anthropic, mock: MockAnthropic) -> None:
    mock.stream_error = "overloaded_error"
    stream = client.messages.stream(model=MODEL, max_tokens=100, messages=USER)
    with pytest.raises(anthropic.APIStatusError, match="overloaded"), stream as events:
        for _ in events:
            pass


def test_unknown_path_and_method(server: ThreadedServer) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": OLD}
    assert httpx.get(server.url + "/v1/nothing", headers=headers).status_code == 404
    assert httpx.get(server.url + "/v1/messages", headers=headers).status_code == 405


def test_a_client_that_leaves_mid_stream_is_counted(server: ThreadedServer, mock: MockAnthropic) -> None:
    mock.chunk_delay_s = 0.05
    body = {**BASE, "max_tokens": 100, "stream": True}
    headers = {"x-api-key": KEY, "anthropic-version": OLD}
    with httpx.stream("POST", server.url + "/v1/messages", json=body, headers=headers) as response:
        first = next(response.iter_raw())
    assert first.startswith(b"event: message_start")
    deadline = time.monotonic() + 5
    while mock.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mock.disconnects == 1
