"""Helpers for the gateway tests of the OpenAI-like vendors (Azure OpenAI, Mistral, Hugging Face): one
gateway per test module in front of the vendor's mock, and the analytics records each test produced."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import APP_KEY, UPSTREAM_KEY, Gateway

M = 1e-6  # prices are per 1,000,000 tokens
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
