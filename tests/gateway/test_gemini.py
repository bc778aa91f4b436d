"""Gemini through a real gateway, with the official SDKs: `/openai/{llm}` driven by the openai SDK in
front of the Gemini API mock and the Vertex AI mock (every test runs for both vendors), and `/proxy/{llm}`
driven by google-genai. Vertex's own matters (tokens, its native SDK mode) are in test_vertex.py."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from google import genai
from google.genai import types

from mocks.gemini import MockGemini
from mocks.server import ThreadedServer
from mocks.vertex import MockVertex, service_account_info
from tests.support import APP_KEY, Gateway

pytestmark = pytest.mark.one_store  # a vendor's wire format: the same on either store

GEMINI_KEY = "AIza-upstream-secret-0123456789"
PROJECT = "proj-1"
MODEL = "gemini-2.5-flash"
EMBEDDING = "gemini-embedding-001"
PRICE = {"input_per_1m": 0.30, "output_per_1m": 2.50, "cache_read_per_1m": 0.03}
MESSAGES: Any = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hello to Tollgate"},
]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "additionalProperties": False,
        },
    },
}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def config(vendor: str, upstream_url: str, api_key: str, **fields: Any) -> dict[str, Any]:
    """One LLM `gemini` of `vendor` on the mock, granted to the test app, with prices."""
    llm = {"slug": "gemini", "vendor": vendor, "api_base": upstream_url, "api_key": "$SECRET/UPSTREAM",
           "default_model": MODEL, "timeout_s": 30, **fields}  # fmt: skip
    return {
        "secrets": {"UPSTREAM": api_key},
        "llms": [llm],
        "prices": [
            {"vendor": vendor, "model": MODEL, **PRICE},
            {"vendor": vendor, "model": EMBEDDING, "input_per_1m": 0.15},
        ],
        "users": [{"email": "alice@example.com", "role": "developer", "groups": ["team"]}],
        "groups": [{"name": "team", "llms": ["gemini"]}],
        "apps": [{"name": "app-one", "owner": "alice@example.com", "api_key": APP_KEY, "llms": ["gemini"]}],
    }


class Setup:
    """A gateway in front of one vendor's mock, shared by a module's tests (the mock is reset per test)."""

    def __init__(self, vendor: str, gateway: Gateway, upstream: MockGemini) -> None:
        self.vendor = vendor
        self.gateway = gateway
        self.upstream = upstream
        self.seen = 0

    def client(self) -> openai.OpenAI:
        return self.gateway.openai(llm="gemini")

    def records(self, count: int) -> list[dict[str, Any]]:
        """The `count` records made since the last call, newest first."""
        records = self.gateway.records(expect=self.seen + count)
        self.seen = len(records)
        return records[:count]

    def chat_path(self, method: str = "generateContent") -> str:
        if self.vendor == "vertex":
            return f"/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models/{MODEL}:{method}"
        return f"/v1beta/models/{MODEL}:{method}"


def start(vendor: str, tmp: Path) -> Iterator[Setup]:
    if vendor == "vertex":
        info = service_account_info("pending", PROJECT)
        upstream: MockGemini = MockVertex(info, PROJECT)
    else:
        upstream = MockGemini(api_key=GEMINI_KEY)
    with ThreadedServer(upstream) as server:
        if vendor == "vertex":
            info["token_uri"] = server.url + "/token"
            cfg = config(vendor, server.url, json.dumps(info), project=PROJECT, region="us-central1")
        else:
            cfg = config(vendor, server.url, GEMINI_KEY)
        gateway = Gateway(tmp, cfg)
        try:
            yield Setup(vendor, gateway.wait_ready(), upstream)
        finally:
            gateway.stop()


@pytest.fixture(scope="module", params=["google_ai", "vertex"])
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    yield from start(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture
def setup(running: Setup) -> Setup:
    """The module's gateway for one vendor, its mock reset for this test."""
    running.upstream.reset()
    return running


def test_chat_and_its_cost_with_cached_tokens(setup: Setup) -> None:
    setup.upstream.cached_tokens = 3
    answer = setup.client().chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0.5)
    assert answer.choices[0].message.content == "Mock answer to: Say hello to Tollgate"
    assert answer.choices[0].finish_reason == "stop" and answer.model == MODEL
    usage = answer.usage
    assert usage and usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 3

    (record,) = setup.records(1)
    assert (record["vendor"], record["model_name"], record["interaction_type"]) == (
        setup.vendor,
        MODEL,
        "chat",
    )
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert record["cache_read_tokens"] == 3 and record["status_code"] == 200
    uncached = usage.prompt_tokens - 3
    expected = uncached * 0.30e-6 + 3 * 0.03e-6 + usage.completion_tokens * 2.50e-6
    assert record["cost"] == pytest.approx(expected, rel=1e-9)

    request = setup.upstream.requests[-1]
    assert request.path == setup.chat_path()
    sent = request.json()
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["generationConfig"] == {"temperature": 0.5}
    assert APP_KEY not in str(request.headers)
    if setup.vendor == "google_ai":
        assert request.headers["x-goog-api-key"] == GEMINI_KEY
    else:
        assert request.headers["authorization"].startswith("Bearer ya29.mock-")


def test_stream(setup: Setup) -> None:
    client = setup.client()
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Mock answer to: Say hello to Tollgate"
    )
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
    with_usage = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    final = with_usage[-1]
    assert not final.choices and final.usage and final.usage.completion_tokens == 9
    assert setup.upstream.requests[-1].path == setup.chat_path("streamGenerateContent")
    assert setup.upstream.requests[-1].query_string == "alt=sse"
    newest, first = setup.records(2)
    assert first["stream"] is True and first["response_tokens"] == 9 and first["cost"] > 0
    assert newest["prompt_tokens"] == final.usage.prompt_tokens


def test_tools_round_trip(setup: Setup) -> None:
    client = setup.client()
    ask: Any = [{"role": "user", "content": "Call get_weather for Paris"}]
    answer = client.chat.completions.create(model=MODEL, messages=ask, tools=[WEATHER])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "location": "Paris"
    }
    follow: Any = [
        *ask,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    final = client.chat.completions.create(model=MODEL, messages=follow, tools=[WEATHER])
    assert final.choices[0].message.content == 'Mock answer to tool result: {"result":"sunny"}'
    sent = setup.upstream.requests[-1].json()
    assert (
        sent["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]
        == WEATHER["function"]["parameters"]
    )
    assert sent["contents"][2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}],
    }
    assert [r["status_code"] for r in setup.records(2)] == [200, 200]


def test_stream_with_tools(setup: Setup) -> None:
    named: Any = {"type": "function", "function": {"name": "get_weather"}}
    chunks = list(
        setup.client().chat.completions.create(
            model=MODEL, messages=MESSAGES, tools=[WEATHER], tool_choice=named, stream=True
        )
    )
    calls = [d.tool_calls[0] for c in chunks if c.choices for d in [c.choices[0].delta] if d.tool_calls]
    assert len(calls) == 1 and calls[0].id and calls[0].function
    assert calls[0].function.name == "get_weather" and calls[0].function.arguments == '{"location":"Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert setup.upstream.requests[-1].json()["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert setup.records(1)[0]["stream"] is True


def test_vision(setup: Setup) -> None:
    content: Any = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    answer = setup.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}]
    )
    assert answer.choices[0].message.content == "Mock answer to: What is in these?"
    parts = setup.upstream.requests[-1].json()["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PIXEL}}
    assert parts[2] == {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}}
    no_type: Any = [{"type": "image_url", "image_url": {"url": "https://example.com/cat"}}]
    with pytest.raises(openai.BadRequestError, match="media type"):
        setup.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": no_type}])
    assert len(setup.upstream.requests) == 1  # refused before the upstream
    setup.records(2)


def test_embeddings(setup: Setup) -> None:
    client = setup.client()
    result = client.embeddings.create(model=EMBEDDING, input=["hello", "world"], dimensions=8)  # SDK: base64
    assert [len(d.embedding) for d in result.data] == [8, 8]
    floats = httpx.post(
        setup.gateway.url + "/openai/gemini/v1/embeddings",
        headers={"authorization": f"Bearer {APP_KEY}"},
        json={"model": EMBEDDING, "input": "hello", "dimensions": 8, "encoding_format": "float"},
    ).json()
    assert floats["data"][0]["embedding"] == pytest.approx(result.data[0].embedding, rel=1e-6)
    raw = httpx.post(
        setup.gateway.url + "/openai/gemini/v1/embeddings",
        headers={"authorization": f"Bearer {APP_KEY}"},
        json={"model": EMBEDDING, "input": "hello", "dimensions": 8, "encoding_format": "base64"},
    ).json()
    assert list(struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))) == pytest.approx(
        floats["data"][0]["embedding"], rel=1e-6
    )
    records = setup.records(3)
    assert {r["interaction_type"] for r in records} == {"embedding"}
    assert all(r["prompt_tokens"] > 0 and r["response_tokens"] == 0 for r in records)
    assert records[-1]["cost"] == pytest.approx(records[-1]["prompt_tokens"] * 0.15e-6)


def test_errors_keep_status_and_retry_after(setup: Setup) -> None:
    setup.upstream.fail_status, setup.upstream.fail_retry_after = 429, "30s"
    with pytest.raises(openai.RateLimitError) as limited:
        setup.client().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert limited.value.response.headers["retry-after"] == "30"
    assert limited.value.code == "RESOURCE_EXHAUSTED"
    setup.upstream.reset()
    with pytest.raises(openai.BadRequestError, match="temperature") as refused:
        setup.client().chat.completions.create(model=MODEL, messages=MESSAGES, temperature=3)
    assert refused.value.code == "INVALID_ARGUMENT"
    assert [r["status_code"] for r in setup.records(2)] == [400, 429]


def test_models(setup: Setup) -> None:
    ids = [m.id for m in setup.client().models.list()]
    assert MODEL in ids and EMBEDDING in ids


# --- /proxy/ with google-genai (the Gemini API) ------------------------------------------------------


@pytest.fixture(scope="module")
def gemini(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    yield from start("google_ai", tmp_path_factory.mktemp("proxy"))


def test_native_sdk_through_the_proxy(gemini: Setup) -> None:
    gemini.upstream.reset()
    client = genai.Client(
        api_key=APP_KEY, http_options=types.HttpOptions(base_url=gemini.gateway.url + "/proxy/gemini")
    )
    answer = client.models.generate_content(model=MODEL, contents="Hello there")
    assert answer.text == "Mock answer to: Hello there"
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Hello there"))
    assert "".join(c.text or "" for c in chunks) == "Mock answer to: Hello there"
    streamed = chunks[-1].usage_metadata
    assert answer.usage_metadata and streamed

    stream_record, plain_record = gemini.records(2)
    for record, usage, stream in (
        (plain_record, answer.usage_metadata, False),
        (stream_record, streamed, True),
    ):
        assert (record["interaction_type"], record["model_name"], record["stream"]) == (
            "proxy",
            MODEL,
            stream,
        )
        assert record["prompt_tokens"] == usage.prompt_token_count
        assert record["response_tokens"] == usage.candidates_token_count
        assert record["cost"] == pytest.approx(
            (usage.prompt_token_count or 0) * 0.30e-6 + (usage.candidates_token_count or 0) * 2.50e-6
        )
    for request in gemini.upstream.requests:
        assert request.headers["x-goog-api-key"] == GEMINI_KEY and "key=" not in request.query_string
    assert gemini.upstream.requests[-1].path == f"/v1/models/{MODEL}:streamGenerateContent"
