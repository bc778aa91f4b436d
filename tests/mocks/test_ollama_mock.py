"""MockOllama is faithful: the official `ollama` SDK talks to it over loopback, and it rejects what Ollama
rejects, in Ollama's words."""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import orjson
import pytest

from mocks.ollama import MockOllama
from mocks.openai_models import count_tokens
from mocks.server import ThreadedServer

KEY = "ollama-proxy-token-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
USER = [{"role": "user", "content": "Hello there, how are you?"}]
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def mock() -> MockOllama:
    return MockOllama(api_key=KEY)


@pytest.fixture(scope="module")
def server(mock: MockOllama) -> Iterator[ThreadedServer]:
    with ThreadedServer(mock) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(mock: MockOllama) -> None:
    mock.reset()


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> ollama.Client:
    return ollama.Client(host=server.url, headers=AUTH)


@pytest.fixture(scope="module")
def http(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as raw:
        yield raw


# --- chat -------------------------------------------------------------------------------------------------


def test_chat_non_stream(client: ollama.Client, mock: MockOllama) -> None:
    answer = client.chat(model="llama3.2", messages=USER)
    assert answer.message.role == "assistant"
    assert answer.message.content == "Mock answer to: Hello there, how are you?"
    assert answer.done is True and answer.done_reason == "stop" and answer.model == "llama3.2"
    assert answer.eval_count == count_tokens(answer.message.content)
    assert answer.prompt_eval_count == 1 + 4 + count_tokens("user") + count_tokens(USER[0]["content"])
    assert answer.created_at and answer.created_at.endswith("Z")
    sent = mock.requests[0].json()
    assert sent["stream"] is False and mock.requests[0].path == "/api/chat"


def test_chat_stream_is_ndjson_ending_with_the_counts(client: ollama.Client) -> None:
    parts = list(client.chat(model="llama3.2", messages=USER, stream=True))
    whole = client.chat(model="llama3.2", messages=USER)
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert all(not p.done and p.eval_count is None for p in parts[:-1]) and len(parts) > 3
    final = parts[-1]
    assert final.done and final.done_reason == "stop" and final.message.content == ""
    assert (final.prompt_eval_count, final.eval_count) == (whole.prompt_eval_count, whole.eval_count)


def test_stream_is_the_default(http: httpx.Client) -> None:
    response = http.post("/api/chat", json={"model": "llama3.2", "messages": USER})
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in response.text.splitlines()]
    assert lines[-1]["done"] is True and all(line["done"] is False for line in lines[:-1])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_tool_call(client: ollama.Client, stream: bool) -> None:
    messages = [{"role": "user", "content": "Call get_weather for Paris"}]
    if stream:
        parts = list(client.chat(model="llama3.2", messages=messages, tools=[WEATHER], stream=True))
        calls = [call for part in parts for call in part.message.tool_calls or ()]
        final = parts[-1]
    else:
        final = client.chat(model="llama3.2", messages=messages, tools=[WEATHER])
        calls = list(final.message.tool_calls or ())
    (call,) = calls
    assert call.function.name == "get_weather" and call.function.arguments == {"location": "Paris"}
    assert final.done_reason == "stop" and final.eval_count


def test_tool_result_is_answered(client: ollama.Client) -> None:
    call = {"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Call get_weather for Paris"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "18 degrees and sunny", "tool_name": "get_weather"},
    ]
    answer = client.chat(model="llama3.2", messages=messages, tools=[WEATHER])
    assert answer.message.content == "Mock answer to tool result: 18 degrees and sunny"
    assert not answer.message.tool_calls


def test_images_reach_a_vision_model(client: ollama.Client, mock: MockOllama) -> None:
    messages = [{"role": "user", "content": "What is this?", "images": [PIXEL]}]
    answer = client.chat(model="llava", messages=messages)
    assert answer.message.content == "Mock answer to: What is this? (with 1 image)"
    assert mock.requests[0].json()["messages"][0]["images"] == [base64.b64encode(PIXEL).decode()]
    text_only = client.chat(model="llava", messages=[{"role": "user", "content": "What is this?"}])
    assert (answer.prompt_eval_count or 0) - (text_only.prompt_eval_count or 0) == 576


@pytest.mark.parametrize(
    "format",
    ["json", {"type": "object", "properties": {"answer": {"type": "string"}}}],
    ids=["json", "schema"],
)
def test_format_answers_json(client: ollama.Client, format: Any) -> None:
    answer = client.chat(model="llama3.2", messages=USER, format=format)
    assert orjson.loads(answer.message.content or "") == {
        "answer": "Mock answer to: Hello there, how are you?"
    }


def test_num_predict_and_stop(client: ollama.Client) -> None:
    cut = client.chat(model="llama3.2", messages=USER, options={"num_predict": 3})
    assert cut.done_reason == "length" and cut.eval_count == 3
    assert "Mock answer to: Hello there, how are you?".startswith(cut.message.content or "-")
    stopped = client.chat(model="llama3.2", messages=USER, options={"stop": [","]})
    assert stopped.message.content == "Mock answer to: Hello there" and stopped.done_reason == "stop"


def test_roles_are_read_case_insensitively_and_an_empty_chat_loads(http: httpx.Client) -> None:
    upper = http.post(
        "/api/chat",
        json={"model": "llama3.2", "stream": False, "messages": [{"role": "USER", "content": "x"}]},
    )
    assert upper.status_code == 200
    loaded = http.post("/api/chat", json={"model": "llama3.2", "messages": []}).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load"


def test_generate(client: ollama.Client) -> None:
    whole = client.generate(model="llama3.2", prompt="Why is the sky blue?")
    assert whole.response == "Mock answer to: Why is the sky blue?" and whole.context
    parts = list(client.generate(model="llama3.2", prompt="Why is the sky blue?", stream=True))
    assert "".join(p.response or "" for p in parts) == whole.response
    assert parts[-1].done and parts[-1].eval_count == whole.eval_count


# --- embeddings and models -------------------------------------------------------------------------------


def test_embed(client: ollama.Client) -> None:
    result = client.embed(model="nomic-embed-text", input=["hello", "world"])
    assert [len(v) for v in result.embeddings] == [768, 768]
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-5) for v in result.embeddings)
    assert result.prompt_eval_count == count_tokens("hello") + count_tokens("world")
    cut = client.embed(model="nomic-embed-text", input="hello", dimensions=8).embeddings[0]
    full = result.embeddings[0][:8]
    norm = math.hypot(*full)
    assert cut == pytest.approx([x / norm for x in full], rel=1e-4)  # Ollama renormalises a cut vector
    assert client.embed(model="nomic-embed-text", input="hello").embeddings[0] == result.embeddings[0]


def test_list(client: ollama.Client) -> None:
    names = [m.model for m in client.list().models]
    assert names == ["llama3.2:latest", "llava:latest", "nomic-embed-text:latest"]
    assert all(m.modified_at and m.size and m.details and m.details.family for m in client.list().models)


# --- refusals -----------------------------------------------------------------------------------------------

CHAT = {"model": "llama3.2", "stream": False}
LLAVA = {**CHAT, "model": "llava"}
NOMIC = {"model": "nomic-embed-text"}
ASSISTANT_CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
}
NOT_FOUND = "not found, try pulling it first"


def unmarshal(kind: str, field: str, go_type: str) -> str:
    """encoding/json's words for a field of the wrong JSON type."""
    return f"json: cannot unmarshal {kind} into Go struct field {field} of type {go_type}"


def user(**fields: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "x", **fields}]


REFUSALS: list[tuple[str, str, Any, int, str]] = [
    ("empty body", "/api/chat", b"", 400, "missing request body"),
    ("not json", "/api/chat", b"{nope", 400, "invalid character 'n' looking for beginning of value"),
    ("cut json", "/api/chat", b'{"model": "llama3.2"', 400, "unexpected EOF"),
    (
        "array body",
        "/api/chat",
        b"[]",
        400,
        "json: cannot unmarshal array into Go value of type api.ChatRequest",
    ),
    ("no model", "/api/chat", {"messages": USER}, 400, "model is required"),
    ("unknown model", "/api/chat", {"model": "llama9", "messages": USER}, 404, f'model "llama9" {NOT_FOUND}'),
    (
        "embedding model",
        "/api/chat",
        {**NOMIC, "messages": USER},
        400,
        '"nomic-embed-text" does not support chat',
    ),
    (
        "messages not a list",
        "/api/chat",
        {**CHAT, "messages": "hi"},
        400,
        unmarshal("string", "ChatRequest.messages", "[]api.Message"),
    ),
    (
        "openai-style content parts",
        "/api/chat",
        {**CHAT, "messages": user(content=[{"type": "text", "text": "hi"}])},
        400,
        unmarshal("array", "ChatRequest.messages.content", "string"),
    ),
    ("invalid role", "/api/chat", {**CHAT, "messages": [{"role": "wizard"}]}, 400, "invalid role 'wizard'"),
    (
        "image not base64",
        "/api/chat",
        {**LLAVA, "messages": user(images=["not*base64"])},
        400,
        "input byte 3",
    ),
    (
        "image url",
        "/api/chat",
        {**LLAVA, "messages": user(images=["https://x.test/a.png"])},
        400,
        "input byte 5",
    ),
    (
        "arguments as a string",
        "/api/chat",
        {**CHAT, "messages": [ASSISTANT_CALL]},
        400,
        unmarshal(
            "string", "ChatRequest.messages.tool_calls.function.arguments", "api.ToolCallFunctionArguments"
        ),
    ),
    (
        "stream not a bool",
        "/api/chat",
        {**CHAT, "messages": USER, "stream": "yes"},
        400,
        unmarshal("string", "ChatRequest.stream", "bool"),
    ),
    (
        "tools unsupported",
        "/api/chat",
        {**LLAVA, "messages": USER, "tools": [WEATHER]},
        400,
        "registry.ollama.ai/library/llava:latest does not support tools",
    ),
    (
        "option of a wrong type",
        "/api/chat",
        {**CHAT, "messages": USER, "options": {"temperature": "hot"}},
        500,
        'option "temperature" must be of type float32',
    ),
    (
        "stop not strings",
        "/api/chat",
        {**CHAT, "messages": USER, "options": {"stop": [1]}},
        500,
        'option "stop" must be of an array of strings',
    ),
    ("bad format", "/api/chat", {**CHAT, "messages": USER, "format": "xml"}, 500, "invalid format"),
    ("embed no model", "/api/embed", {"input": "x"}, 400, "model is required"),
    ("embed unknown model", "/api/embed", {"model": "bert", "input": "x"}, 404, f'model "bert" {NOT_FOUND}'),
    ("embed tokens", "/api/embed", {**NOMIC, "input": [[1, 2]]}, 400, "invalid input type"),
    (
        "embed too long",
        "/api/embed",
        {**NOMIC, "input": "word " * 3000, "truncate": False},
        400,
        "the input length exceeds the context length",
    ),
    ("generate no model", "/api/generate", {"prompt": "x"}, 400, "model is required"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusals(http: httpx.Client, path: str, body: Any, status: int, message: str) -> None:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = http.post(path, content=content)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert message in response.json()["error"]


def test_the_sdk_raises_ollamas_error(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model="llama9", messages=USER)
    assert (
        refused.value.status_code == 404
        and refused.value.error == 'model "llama9" not found, try pulling it first'
    )
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.chat(model="llama9", messages=USER, stream=True))
    assert streamed.value.status_code == 404


def test_long_embed_input_is_truncated_by_default(client: ollama.Client) -> None:
    result = client.embed(model="nomic-embed-text", input="word " * 3000)
    assert result.prompt_eval_count == 2048


def test_routes(http: httpx.Client, server: ThreadedServer) -> None:
    assert http.get("/").text == "Ollama is running"
    assert http.get("/api/version").json() == {"version": "0.12.6"}
    missing = http.get("/api/nothing")
    assert (missing.status_code, missing.text) == (404, "404 page not found")
    assert http.get("/api/chat").status_code == 404  # gin answers a wrong method like an unknown route


# --- knobs --------------------------------------------------------------------------------------------------


def test_auth(server: ThreadedServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(ollama.ResponseError) as refused:
            ollama.Client(host=server.url, headers=headers).list()
        assert refused.value.status_code == 401 and refused.value.error == "unauthorized"


def test_cached_tokens_and_omitted_usage(client: ollama.Client, http: httpx.Client, mock: MockOllama) -> None:
    plain = http.post("/api/chat", json={**CHAT, "messages": USER}).json()
    assert "prompt_eval_cached_count" not in plain
    mock.cached_tokens = 5
    cached = http.post("/api/chat", json={**CHAT, "messages": USER}).json()
    assert cached["prompt_eval_cached_count"] == 5
    assert cached["prompt_eval_count"] == plain["prompt_eval_count"]  # the cached part is included
    mock.cached_tokens, mock.omit_usage = 0, True
    omitted = list(client.chat(model="llama3.2", messages=USER, stream=True))[-1]
    assert omitted.prompt_eval_count is None and omitted.eval_count
    assert client.embed(model="nomic-embed-text", input="x").prompt_eval_count is None


def test_injected_failure(http: httpx.Client, mock: MockOllama) -> None:
    mock.fail_status, mock.fail_message, mock.fail_retry_after = 429, "too many requests", "7"
    response = http.post("/api/chat", json={**CHAT, "messages": USER})
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    assert response.json() == {"error": "too many requests"}


def test_abandoned_stream_is_counted(server: ThreadedServer, mock: MockOllama) -> None:
    mock.chunk_delay_s = 0.05
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "word " * 40}]}
    with httpx.stream("POST", server.url + "/api/chat", json=body, headers=AUTH) as response:
        next(response.iter_lines())
    deadline = time.monotonic() + 5
    while not mock.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mock.disconnects == 1
