"""Vertex AI through a real gateway: one OAuth token serves many calls, google-genai in Vertex mode on
`/proxy/{llm}`, and Claude through the Anthropic publisher on `/openai/{llm}`. The Gemini features common
to both Google vendors (chat, stream, tools, vision, embeddings, errors, cost) run for Vertex in
test_gemini.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import google.oauth2.credentials
import pytest
from google import genai
from google.genai import types

from mocks.server import ThreadedServer
from mocks.vertex import MockVertex, service_account_info
from tests.gateway.test_gemini import MODEL, PRICE, PROJECT, Setup, config
from tests.support import APP_KEY, Gateway

pytestmark = pytest.mark.one_store  # a vendor's wire format: the same on either store

CLAUDE = "claude-sonnet-4-5@20250929"
CLAUDE_PRICE = {"input_per_1m": 3.0, "output_per_1m": 15.0, "cache_read_per_1m": 0.3}
MESSAGES: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    info = service_account_info("pending", PROJECT)
    upstream = MockVertex(info, PROJECT)
    with ThreadedServer(upstream) as server:
        info["token_uri"] = server.url + "/token"
        cfg = config("vertex", server.url, json.dumps(info), project=PROJECT, region="us-central1")
        # dated Claude answers are priced through the undated name, as Vertex names its versions with `@`
        cfg["prices"].append({"vendor": "vertex", "model": "claude-sonnet-4-5", **CLAUDE_PRICE})
        gateway = Gateway(tmp_path_factory.mktemp("vertex"), cfg)
        try:
            yield Setup("vertex", gateway.wait_ready(), upstream)
        finally:
            gateway.stop()


@pytest.fixture(autouse=True)
def _fresh(setup: Setup) -> None:
    setup.upstream.reset()


def test_one_token_serves_many_calls(setup: Setup) -> None:
    assert isinstance(setup.upstream, MockVertex)
    client = setup.client()
    for _ in range(3):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    tokens = {r.headers["authorization"] for r in setup.upstream.requests if r.path != "/token"}
    assert len(tokens) == 1 and setup.upstream.token_requests <= 1  # minted once, maybe before this test
    setup.records(4)


def test_native_vertex_sdk_through_the_proxy(setup: Setup) -> None:
    # google-genai in Vertex mode sends its OAuth token as a Bearer: here, the app key is that token.
    client = genai.Client(
        vertexai=True,
        project=PROJECT,
        location="us-central1",
        credentials=google.oauth2.credentials.Credentials(token=APP_KEY),  # type: ignore[no-untyped-call]
        http_options=types.HttpOptions(base_url=setup.gateway.url + "/proxy/gemini", api_version="v1"),
    )
    answer = client.models.generate_content(model=MODEL, contents="Hello there")
    assert answer.text == "Mock answer to: Hello there"
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Hello there"))
    assert "".join(c.text or "" for c in chunks) == "Mock answer to: Hello there"

    stream_record, plain_record = setup.records(2)
    for record, usage in ((plain_record, answer.usage_metadata), (stream_record, chunks[-1].usage_metadata)):
        assert usage is not None
        assert (record["interaction_type"], record["vendor"], record["model_name"]) == (
            "proxy",
            "vertex",
            MODEL,
        )
        assert record["prompt_tokens"] == usage.prompt_token_count
        assert record["response_tokens"] == usage.candidates_token_count
        expected = (usage.prompt_token_count or 0) * 0.30e-6 + (usage.candidates_token_count or 0) * 2.50e-6
        assert record["cost"] == pytest.approx(expected) and PRICE["input_per_1m"] == 0.30
    for request in setup.upstream.requests:
        assert APP_KEY not in request.headers.get("authorization", "")
    assert setup.upstream.requests[-1].path == (
        f"/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models/{MODEL}:streamGenerateContent"
    )


def test_claude_on_vertex(setup: Setup) -> None:
    setup.upstream.cached_tokens = 4
    client = setup.client()
    answer = client.chat.completions.create(model=CLAUDE, messages=MESSAGES)
    assert answer.choices[0].message.content and answer.choices[0].finish_reason == "stop"
    usage = answer.usage
    assert usage and usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 4
    chunks = list(
        client.chat.completions.create(
            model=CLAUDE, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == answer.choices[0].message.content
    )
    assert chunks[-1].usage and chunks[-1].usage.prompt_tokens == usage.prompt_tokens

    stream_record, record = setup.records(2)
    assert (record["model_name"], record["cache_read_tokens"]) == (CLAUDE, 4)
    assert record["prompt_tokens"] == usage.prompt_tokens
    expected = (usage.prompt_tokens - 4) * 3.0e-6 + 4 * 0.3e-6 + usage.completion_tokens * 15.0e-6
    assert record["cost"] == pytest.approx(expected, rel=1e-9)
    assert stream_record["stream"] is True and stream_record["cost"] == pytest.approx(expected, rel=1e-9)
    sent = setup.upstream.requests[-1]
    location = f"/v1/projects/{PROJECT}/locations/us-central1"
    assert sent.path == f"{location}/publishers/anthropic/models/{CLAUDE}:streamRawPredict"
    body = sent.json()
    assert "model" not in body and body["anthropic_version"] == "vertex-2023-10-16" and body["stream"] is True
