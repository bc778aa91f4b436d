"""Helpers for the gateway tests of the OpenAI-like vendors (Azure OpenAI, Mistral, Hugging Face): one
gateway per test module in front of the vendor's mock, and the analytics records each test produced."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mocks.asgi import MockApp
from mocks.server import ThreadedServer
from tests.support import APP_KEY, UPSTREAM_KEY, Gateway

M = 1e-6  # prices are per 1,000,000 tokens
USER_TEXT = "Say hello to Tollgate"
ANSWER = "Mock answer to: " + USER_TEXT
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"
_WRITER_INTERVAL_S = 0.25  # a little over the analytics writer's 0.2 s


def vendor_config(llms: list[dict[str, Any]], prices: list[dict[str, Any]]) -> dict[str, Any]:
    """One app (APP_KEY) granted every LLM of the config, through its owner's group."""
    slugs = [llm["slug"] for llm in llms]
    return {
        "secrets": {"UPSTREAM": UPSTREAM_KEY},
        "llms": [{"api_key": "$SECRET/UPSTREAM", "timeout_s": 30, **llm} for llm in llms],
        "prices": prices,
        "users": [{"email": "alice@example.com", "role": "developer", "groups": ["team"]}],
        "groups": [{"name": "team", "llms": slugs}],
        "apps": [{"name": "app-one", "owner": "alice@example.com", "api_key": APP_KEY, "llms": slugs}],
    }


@contextmanager
def running_gateway(directory: Path, config: dict[str, Any]) -> Iterator[Gateway]:
    gateway = Gateway(directory, config)
    try:
        yield gateway.wait_ready()
    finally:
        gateway.stop()


def price(vendor: str, model: str, rates: tuple[float, float, float]) -> dict[str, Any]:
    """A price entry at (input, output, cache read) USD per 1M tokens."""
    inp, out, cache = rates
    return {
        "vendor": vendor,
        "model": model,
        "input_per_1m": inp,
        "output_per_1m": out,
        "cache_read_per_1m": cache,
    }


def vendor_fixtures(
    mock_class: Callable[..., MockApp], llm: Callable[[str], dict[str, Any]], prices: list[dict[str, Any]]
) -> tuple[Any, Any, Any, Any]:
    """The fixtures a vendor's test module shares, in order `upstream, gateway, mock, records`: the
    vendor's mock on its own port (module-wide), one gateway in front of it with the LLM `llm(mock_url)`
    and `prices` (module-wide), the mock reset for each test, and that test's analytics records."""

    @pytest.fixture(scope="module")
    def upstream() -> Iterator[tuple[ThreadedServer, Any]]:
        app = mock_class(api_key=UPSTREAM_KEY)
        with ThreadedServer(app) as server:
            yield server, app

    @pytest.fixture(scope="module")
    def gateway(
        upstream: tuple[ThreadedServer, Any], tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Gateway]:
        config = llm(upstream[0].url)
        directory = tmp_path_factory.mktemp(config["slug"])
        with running_gateway(directory, vendor_config([config], prices)) as running:
            yield running

    @pytest.fixture
    def mock(upstream: tuple[ThreadedServer, Any]) -> Iterator[Any]:
        app = upstream[1]
        app.reset()
        yield app
        app.reset()

    @pytest.fixture
    def records(gateway: Gateway, mock: Any) -> Records:
        tracker = Records(gateway)
        tracker.settle()
        return tracker

    return upstream, gateway, mock, records


class Records:
    """The analytics records of one test, on a gateway that the module's tests share."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.seen = 0

    def settle(self) -> None:
        """Count what is there once the records of earlier tests' answers have landed."""
        count = len(self.gateway.records())
        while True:
            time.sleep(_WRITER_INTERVAL_S)
            now = len(self.gateway.records())
            if now == count:
                break
            count = now
        self.seen = count

    def new(self, expect: int = 1) -> list[dict[str, Any]]:
        """The records made since the last look, newest first; waits for `expect` of them."""
        data = self.gateway.records(expect=self.seen + expect)
        fresh = data[: len(data) - self.seen]
        self.seen = len(data)
        assert len(fresh) == expect, fresh
        return fresh


def cost(prompt: int, completion: int, rates: tuple[float, float, float], cached: int = 0) -> float:
    """USD at (input, output, cache read) rates per 1M tokens; cached prompt tokens at the cache rate."""
    inp, out, cache = rates
    return ((prompt - cached) * inp + cached * cache + completion * out) * M
