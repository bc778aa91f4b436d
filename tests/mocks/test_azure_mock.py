"""MockAzureOpenAI is faithful: the openai SDK's AzureOpenAI client talks to it over loopback, and it refuses
what Azure refuses, in Azure's shapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from mocks.azure import MockAzureOpenAI
from mocks.server import ThreadedServer

KEY = "azure-mock-key-0123456789"
VERSION = "2024-10-21"
USER: Any = [{"role": "user", "content": "Hello there"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def mock() -> MockAzureOpenAI:
    return MockAzureOpenAI(api_key=KEY)


@pytest.fixture(scope="module")
def server(mock: MockAzureOpenAI) -> Iterator[ThreadedServer]:
    with ThreadedServer(mock) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(mock: MockAzureOpenAI) -> None:
    mock.reset()


def azure(server: ThreadedServer, version: str = VERSION, key: str = KEY) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=server.url, api_key=key, api_version=version, max_retries=0)


@pytest.fixture(scope="module")
def http(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"api-key": KEY}, timeout=10) as raw:
        yield raw


def test_chat_goes_to_the_deployment_with_azures_extras(
    server: ThreadedServer, mock: MockAzureOpenAI
) -> None:
    answer = azure(server).chat.completions.create(model="chat-prod", messages=USER)
    assert answer.choices[0].message.content == "Mock answer to: Hello there"
    assert answer.model == "gpt-4o-mini-2024-07-18"  # the deployment's model answers
    assert answer.choices[0].finish_reason == "stop"
    extra = answer.model_extra or {}
    assert extra["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert answer.usage is not None and answer.usage.prompt_tokens > 0
    (request,) = mock.requests
    assert request.path == "/openai/deployments/chat-prod/chat/completions"
    assert request.query_string == f"api-version={VERSION}" and request.headers["api-key"] == KEY


def test_stream_opens_with_the_prompt_filter_chunk(server: ThreadedServer) -> None:
    stream = azure(server).chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices == [] and (chunks[0].model_extra or {})["prompt_filter_results"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock answer to: Hello there"
    assert (
        chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    )


def test_tools_and_a_streamed_tool_call(server: ThreadedServer) -> None:
    messages: Any = [{"role": "user", "content": "Call get_weather for Paris"}]
    answer = azure(server).chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER])
    (tool_call,) = answer.choices[0].message.tool_calls or []
    assert tool_call.function.name == "get_weather" and answer.choices[0].finish_reason == "tool_calls"  # type: ignore[union-attr]
    stream = azure(server).chat.completions.create(
        model="gpt-4o", messages=messages, tools=[WEATHER], stream=True
    )
    arguments = "".join(
        call.function.arguments or ""
        for chunk in stream
        for call in (chunk.choices[0].delta.tool_calls or [] if chunk.choices else [])
        if call.function
    )
    assert arguments == '{"location": "Paris"}'


def test_embeddings_and_models(server: ThreadedServer, mock: MockAzureOpenAI) -> None:
    client = azure(server)
    result = client.embeddings.create(model="embed-prod", input=["a", "b"], dimensions=8)
    assert [len(d.embedding) for d in result.data] == [8, 8]
    assert mock.requests[0].path == "/openai/deployments/embed-prod/embeddings"
    ids = {model.id for model in client.models.list()}
    assert {"gpt-4o", "text-embedding-3-small", "gpt-35-turbo-0301"} <= ids
    assert mock.requests[1].path == "/openai/models"


def test_content_filter_cuts_an_answer(server: ThreadedServer, mock: MockAzureOpenAI) -> None:
    mock.content_filter = "completion"
    answer = azure(server).chat.completions.create(model="gpt-4o", messages=USER)
    assert answer.choices[0].finish_reason == "content_filter"
    assert answer.choices[0].message.content == "Mock answer to: Hello there"[:13]  # the first half
    assert answer.usage is not None and answer.usage.completion_tokens < 8
    stream = list(azure(server).chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    finishes = [c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason]
    assert finishes == ["content_filter"]
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "Mock answer to: Hello there".startswith(text) and len(text) < len("Mock answer to: Hello there")


def test_content_filter_refuses_a_prompt(server: ThreadedServer, mock: MockAzureOpenAI) -> None:
    mock.content_filter = "prompt"
    with pytest.raises(openai.BadRequestError) as refused:
        azure(server).chat.completions.create(model="gpt-4o", messages=USER)
    assert refused.value.code == "content_filter" and refused.value.param == "prompt"
    body: Any = refused.value.body
    assert body["innererror"]["code"] == "ResponsibleAIPolicyViolation"


AZURE_ERRORS = [
    ("no api-version", "/openai/deployments/gpt-4o/chat/completions", {}, 404, "404"),
    (
        "unknown api-version",
        "/openai/deployments/gpt-4o/chat/completions",
        {"api-version": "2020-01-01"},
        400,
        "BadRequest",
    ),
    (
        "unknown deployment",
        "/openai/deployments/nope/chat/completions",
        {"api-version": VERSION},
        404,
        "DeploymentNotFound",
    ),
    (
        "chat on an embeddings deployment",
        "/openai/deployments/embed-prod/chat/completions",
        {"api-version": VERSION},
        400,
        "OperationNotSupported",
    ),
    ("unknown path", "/openai/deployments/gpt-4o/responses", {"api-version": VERSION}, 404, "404"),
]


@pytest.mark.parametrize(
    ("path", "params", "status", "code"), [e[1:] for e in AZURE_ERRORS], ids=[e[0] for e in AZURE_ERRORS]
)
def test_azures_own_errors(
    http: httpx.Client, path: str, params: dict[str, str], status: int, code: str
) -> None:
    response = http.post(path, params=params, json={"messages": USER})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_key_is_required(server: ThreadedServer) -> None:
    with pytest.raises(openai.AuthenticationError) as denied:
        azure(server, key="wrong").chat.completions.create(model="gpt-4o", messages=USER)
    assert denied.value.code == "401" and "Access denied" in denied.value.message


def test_stream_options_need_a_recent_api_version(server: ThreadedServer) -> None:
    with pytest.raises(openai.BadRequestError, match="stream_options"):
        azure(server, version="2024-06-01").chat.completions.create(
            model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    assert list(
        azure(server, version="2024-06-01").chat.completions.create(
            model="gpt-4o", messages=USER, stream=True
        )
    )


def test_model_validation_is_openais(server: ThreadedServer) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        azure(server).chat.completions.create(model="gpt-4o", messages=[])
    assert refused.value.param == "messages"


def test_injected_failure_in_azures_shape(server: ThreadedServer, mock: MockAzureOpenAI) -> None:
    mock.fail_status, mock.fail_retry_after, mock.fail_message = 429, "7", "Please retry after 7 seconds."
    with pytest.raises(openai.RateLimitError) as limited:
        azure(server).chat.completions.create(model="gpt-4o", messages=USER)
    assert limited.value.response.headers["retry-after"] == "7" and limited.value.code == "429"


def test_cached_tokens_are_reported(server: ThreadedServer, mock: MockAzureOpenAI) -> None:
    mock.cached_tokens = 4
    answer = azure(server).chat.completions.create(model="gpt-4o", messages=USER)
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 4
