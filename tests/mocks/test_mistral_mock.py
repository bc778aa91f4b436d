"""MockMistral is faithful: the official mistralai SDK talks to it over loopback (chat.complete, chat.stream,
embeddings.create, models.list), and it refuses what Mistral refuses, with Mistral's error shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mistralai.client import Mistral, errors
from mistralai.client.models import AssistantMessage, ChatCompletionResponse

from mocks.mistral import MockMistral
from mocks.server import ThreadedServer

KEY = "mistral-mock-key-0123456789"
USER: Any = [{"role": "user", "content": "Hello there"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def mock() -> MockMistral:
    return MockMistral(api_key=KEY)


@pytest.fixture(scope="module")
def server(mock: MockMistral) -> Iterator[ThreadedServer]:
    with ThreadedServer(mock) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(mock: MockMistral) -> None:
    mock.reset()


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> Mistral:
    return Mistral(api_key=KEY, server_url=server.url)


@pytest.fixture(scope="module")
def http(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {KEY}"}, timeout=10) as raw:
        yield raw


def reply(answer: ChatCompletionResponse) -> AssistantMessage:
    message = answer.choices[0].message
    assert message is not None
    return message


def test_complete(client: Mistral, mock: MockMistral) -> None:
    answer = client.chat.complete(model="mistral-small-latest", messages=USER, max_tokens=50, random_seed=1)
    assert reply(answer).content == "Mock answer to: Hello there"
    assert answer.choices[0].finish_reason == "stop" and answer.model == "mistral-small-latest"
    assert answer.usage.prompt_tokens and answer.usage.completion_tokens
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    (request,) = mock.requests
    assert request.path == "/v1/chat/completions" and request.headers["authorization"] == f"Bearer {KEY}"


def test_stream_carries_the_usage_on_its_last_chunk(client: Mistral) -> None:
    events = list(client.chat.stream(model="mistral-small-latest", messages=USER))
    assert events[0].data.choices[0].delta.role == "assistant"
    text = "".join(str(e.data.choices[0].delta.content or "") for e in events)
    assert text == "Mock answer to: Hello there"
    assert all(e.data.usage is None for e in events[:-1])
    last = events[-1].data
    assert last.choices[0].finish_reason == "stop" and last.usage is not None and last.usage.prompt_tokens


def test_tool_call_and_its_answer(client: Mistral) -> None:
    messages: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    answer = client.chat.complete(
        model="mistral-large-latest", messages=messages, tools=[WEATHER], tool_choice="any"
    )
    (call,) = reply(answer).tool_calls or []
    assert call.function.name == "get_weather" and answer.choices[0].finish_reason == "tool_calls"
    assert len(call.id or "") == 9 and (call.id or "").isalnum()
    followup: Any = [
        *messages,
        {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "name": "get_weather", "content": "sunny"},
    ]
    final = client.chat.complete(model="mistral-large-latest", messages=followup, tools=[WEATHER])
    assert reply(final).content == "Mock answer to tool result: sunny"


def test_streamed_tool_call_comes_whole_with_the_finish_reason(client: Mistral) -> None:
    messages: Any = [{"role": "user", "content": "Call get_weather"}]
    events = list(
        client.chat.stream(
            model="mistral-large-latest", messages=messages, tools=[WEATHER], tool_choice="any"
        )
    )
    last = events[-1].data
    (call,) = last.choices[0].delta.tool_calls or []
    assert (
        call.function.arguments == '{"location": "Paris"}' and last.choices[0].finish_reason == "tool_calls"
    )
    assert last.usage is not None


def test_vision_and_reasoning(client: Mistral) -> None:
    content: Any = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": "https://example.com/cat.png"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
    ]
    messages: Any = [{"role": "user", "content": content}]
    answer = client.chat.complete(model="mistral-small-latest", messages=messages)
    assert reply(answer).content == "Mock answer to: Describe"
    thought = client.chat.complete(model="magistral-medium-latest", messages=USER)
    chunks: Any = reply(thought).content
    assert [c.type for c in chunks] == ["thinking", "text"] and chunks[
        1
    ].text == "Mock answer to: Hello there"


def test_embeddings(client: Mistral) -> None:
    result = client.embeddings.create(model="mistral-embed", inputs=["a", "b"])
    assert [len(d.embedding or []) for d in result.data] == [1024, 1024]
    assert result.usage.prompt_tokens == 2
    sized = client.embeddings.create(model="codestral-embed", inputs="a", output_dimension=256)
    assert len(sized.data[0].embedding or []) == 256


def test_models(client: Mistral) -> None:
    listed = client.models.list()
    ids = {getattr(m, "id", None) for m in listed.data or []}
    assert {"mistral-small-latest", "mistral-embed", "codestral-embed"} <= ids


def test_cached_tokens_are_reported(client: Mistral, mock: MockMistral) -> None:
    mock.cached_tokens = 3
    answer = client.chat.complete(model="mistral-small-latest", messages=USER)
    assert (answer.usage.model_extra or {})["prompt_tokens_details"] == {"cached_tokens": 3}


# --- what Mistral refuses -------------------------------------------------------------------------------

UNPROCESSABLE = [
    (
        "OpenAI's stream_options",
        {"stream": True, "stream_options": {"include_usage": True}},
        "extra_forbidden",
        ["body", "stream_options"],
    ),
    (
        "OpenAI's max_completion_tokens",
        {"max_completion_tokens": 5},
        "extra_forbidden",
        ["body", "max_completion_tokens"],
    ),
    ("OpenAI's seed", {"seed": 1}, "extra_forbidden", ["body", "seed"]),
    (
        "developer role",
        {"messages": [{"role": "developer", "content": "x"}]},
        "union_tag_invalid",
        ["body", "messages", 0],
    ),
    (
        "name on a user message",
        {"messages": [{"role": "user", "content": "x", "name": "bob"}]},
        "extra_forbidden",
        ["body", "messages", 0, "user", "name"],
    ),
    (
        "tool without parameters",
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        "missing",
        ["body", "tools", 0, "function", "parameters"],
    ),
    ("top_p above 1", {"top_p": 1.5}, "less_than_equal", ["body", "top_p"]),
    ("no model", {"model": None}, "missing", ["body", "model"]),
]


@pytest.mark.parametrize(
    ("fields", "kind", "loc"), [u[1:] for u in UNPROCESSABLE], ids=[u[0] for u in UNPROCESSABLE]
)
def test_unprocessable(http: httpx.Client, fields: dict[str, Any], kind: str, loc: list[Any]) -> None:
    body = {
        k: v
        for k, v in {"model": "mistral-small-latest", "messages": USER, **fields}.items()
        if v is not None
    }
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 422
    assert any(d["type"] == kind and d["loc"] == loc for d in response.json()["detail"]), response.text


def test_sdk_reads_422_as_validation_error(client: Mistral) -> None:
    with pytest.raises(errors.HTTPValidationError) as refused:
        client.chat.complete(model="mistral-small-latest", messages=USER, temperature=-1)
    assert refused.value.data.detail is not None and refused.value.data.detail[0].loc == [
        "body",
        "temperature",
    ]


REFUSED = [
    ("unknown model", {"model": "gpt-4o"}, "Invalid model: gpt-4o", "invalid_model"),
    (
        "OpenAI's tool call id",
        {
            "messages": [
                *USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "call_abc123", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "call_abc123", "content": "x"},
            ]
        },
        "Tool call id was call_abc123 but must be a-z, A-Z, 0-9, with a length of 9.",
        "invalid_function_call",
    ),
    (
        "assistant with nothing",
        {"messages": [*USER, {"role": "assistant"}, *USER]},
        "Assistant message must have either content or tool_calls, but not none.",
        "invalid_request_error",
    ),
    (
        "ends with the assistant",
        {"messages": [*USER, {"role": "assistant", "content": "Sure"}]},
        "Expected last role User or Tool (or Assistant with prefix True) for serving but got assistant",
        "invalid_request_error",
    ),
]


@pytest.mark.parametrize(("fields", "message", "kind"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused(http: httpx.Client, fields: dict[str, Any], message: str, kind: str) -> None:
    response = http.post(
        "/v1/chat/completions", json={"model": "mistral-small-latest", "messages": USER, **fields}
    )
    assert response.status_code == 400
    error = response.json()
    assert (error["object"], error["message"], error["type"]) == ("error", message, kind)


def test_a_prefix_may_end_the_conversation(client: Mistral) -> None:
    messages: Any = [*USER, {"role": "assistant", "content": "Sure,", "prefix": True}]
    assert reply(client.chat.complete(model="mistral-small-latest", messages=messages)).content


def test_embeddings_refusals(http: httpx.Client) -> None:
    fixed = http.post("/v1/embeddings", json={"model": "mistral-embed", "input": "a", "output_dimension": 8})
    assert fixed.status_code == 400 and "output_dimension" in fixed.json()["message"]
    openai_name = http.post(
        "/v1/embeddings", json={"model": "codestral-embed", "input": "a", "dimensions": 8}
    )
    assert openai_name.status_code == 422 and openai_name.json()["detail"][0]["type"] == "extra_forbidden"


def test_key_is_required(server: ThreadedServer) -> None:
    with pytest.raises(errors.SDKError) as denied:
        Mistral(api_key="wrong", server_url=server.url).chat.complete(
            model="mistral-small-latest", messages=USER
        )
    assert denied.value.status_code == 401 and json.loads(denied.value.body) == {"detail": "Unauthorized"}


def test_injected_failure(client: Mistral, mock: MockMistral) -> None:
    mock.fail_status, mock.fail_retry_after, mock.fail_message = 429, "3", "Rate limit exceeded"
    with pytest.raises(errors.SDKError) as limited:
        client.chat.complete(model="mistral-small-latest", messages=USER)
    assert limited.value.status_code == 429 and limited.value.headers["retry-after"] == "3"
    assert json.loads(limited.value.body)["type"] == "rate_limited"
