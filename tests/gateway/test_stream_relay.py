"""Every vendor's stream reaches the OpenAI client as it is produced, not when it ends: with an upstream
that sends one event every 0.1 s, the first text arrives long before the last.

One gateway fronts every vendor's mock at once (Vertex shares Gemini's translation and is left out)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from mocks.anthropic import MockAnthropic
from mocks.azure import MockAzureOpenAI
from mocks.bedrock import MockBedrock
from mocks.gemini import MockGemini
from mocks.huggingface import MockHuggingFace
from mocks.mistral import MockMistral
from mocks.ollama import MockOllama
from mocks.openai import MockOpenAI
from mocks.server import ThreadedServer
from tests.conftest import StartGateway
from tests.support import APP_KEY, Gateway

pytestmark = pytest.mark.one_store  # the relay of streamed bytes: the same on either store

KEY = "sk-stream-relay-key-0123456789"
DELAY_S = 0.1
PROMPT = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"


@dataclass(frozen=True)
class Vendor:
    slug: str
    mock: Callable[[], Any]
    base: Callable[[str], str]
    model: str
    key: str = KEY


VENDORS = [
    Vendor("openai", lambda: MockOpenAI(KEY), lambda url: url + "/v1", "gpt-4o-mini"),
    Vendor("anthropic", lambda: MockAnthropic(KEY), lambda url: url, "claude-sonnet-4-6"),
    Vendor("google_ai", lambda: MockGemini(KEY), lambda url: url, "gemini-2.5-flash"),
    Vendor("bedrock", lambda: MockBedrock(None), lambda url: url, "amazon.nova-lite-v1:0", "AKIATEST:secret"),
    Vendor("azure_openai", lambda: MockAzureOpenAI(KEY), lambda url: url, "gpt-4o-mini"),
    Vendor("mistral", lambda: MockMistral(KEY), lambda url: url + "/v1", "mistral-small-latest"),
    Vendor(
        "huggingface",
        lambda: MockHuggingFace(KEY),
        lambda url: url + "/v1",
        "meta-llama/Llama-3.1-8B-Instruct",
    ),
    Vendor("ollama", lambda: MockOllama(), lambda url: url, "llama3.2"),
]


@pytest.fixture(scope="module")
def mocks() -> Iterator[dict[str, tuple[ThreadedServer, Any]]]:
    servers: dict[str, tuple[ThreadedServer, Any]] = {}
    try:
        for vendor in VENDORS:
            mock = vendor.mock()
            servers[vendor.slug] = (ThreadedServer(mock).start(), mock)
        yield servers
    finally:
        for server, _ in servers.values():
            server.stop()


@pytest.fixture
def gateway(start_gateway: StartGateway, mocks: dict[str, tuple[ThreadedServer, Any]]) -> Gateway:
    slugs = [v.slug for v in VENDORS]
    llms = [
        {"slug": v.slug, "vendor": v.slug, "api_base": v.base(mocks[v.slug][0].url), "api_key": v.key,
         "default_model": v.model}
        for v in VENDORS
    ]  # fmt: skip
    config = {
        "llms": llms,
        "users": [{"email": "dev@example.com", "role": "developer", "groups": ["all"]}],
        "groups": [{"name": "all", "llms": slugs}],
        "apps": [{"name": "app", "owner": "dev@example.com", "api_key": APP_KEY, "llms": slugs}],
    }
    return start_gateway(config)


@pytest.mark.parametrize("vendor", VENDORS, ids=[v.slug for v in VENDORS])
def test_the_first_text_arrives_as_soon_as_the_upstream_sends_it(
    gateway: Gateway, mocks: dict[str, tuple[ThreadedServer, Any]], vendor: Vendor
) -> None:
    mock = mocks[vendor.slug][1]
    mock.chunk_delay_s = DELAY_S
    try:
        started = time.monotonic()
        stream = gateway.openai(llm=vendor.slug).chat.completions.create(
            model=vendor.model, messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        first = None
        texts = []
        for chunk in stream:
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text:
                first = first or time.monotonic() - started
                texts.append(text)
        total = time.monotonic() - started
    finally:
        mock.chunk_delay_s = 0.0
    assert first is not None and len(texts) >= 4
    # the upstream spent ~0.1 s per event on the whole answer; the first text was not held back for it
    assert total > DELAY_S * (len(texts) - 1)
    assert first < total / 2, (first, total)
