"""CPU per chunk of streaming translation: every adapter's stream relay fed a real stream of its vendor.

For each vendor the adapter builds its native streaming request, the vendor's mock answers it over a
real socket (one event per TCP segment, as a real upstream that generates tokens sends them), and the
chunks are kept exactly as they arrived; then the adapter's relay (`feed`, `finish`) is timed over them
many times, in this process, with `time.process_time`. Translation is incremental: this is the CPU each
upstream chunk costs before its bytes go to the client.

    python bench/stream.py [--repeat 2000] [--words 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from mocks.server import ThreadedServer
from providers.base import Call, Operation
from providers.registry import bind, has_adapter
from sync.model import Llm

KEY = "sk-bench-stream-key"


@dataclass(frozen=True)
class Vendor:
    name: str
    mock: Callable[[], Any]
    llm: Callable[[str], dict[str, Any]]  # base URL → the LLM's config fields
    model: str
    key: str = KEY


def _vendors() -> list[Vendor]:
    from mocks.anthropic import MockAnthropic
    from mocks.azure import MockAzureOpenAI
    from mocks.bedrock import MockBedrock
    from mocks.gemini import MockGemini
    from mocks.huggingface import MockHuggingFace
    from mocks.mistral import MockMistral
    from mocks.ollama import MockOllama
    from mocks.openai import MockOpenAI

    return [
        Vendor("openai", lambda: MockOpenAI(KEY), lambda url: {"api_base": url + "/v1"}, "gpt-4o-mini"),
        Vendor("anthropic", lambda: MockAnthropic(KEY), lambda url: {"api_base": url}, "claude-sonnet-4-6"),
        Vendor("google_ai", lambda: MockGemini(KEY), lambda url: {"api_base": url}, "gemini-2.5-flash"),
        Vendor(
            "bedrock",
            lambda: MockBedrock(None),
            lambda url: {"api_base": url},
            "amazon.nova-lite-v1:0",
            key="AKIABENCH:benchsecret",
        ),
        Vendor("azure_openai", lambda: MockAzureOpenAI(KEY), lambda url: {"api_base": url}, "gpt-4o-mini"),
        Vendor(
            "mistral", lambda: MockMistral(KEY), lambda url: {"api_base": url + "/v1"}, "mistral-small-latest"
        ),
        Vendor(
            "huggingface",
            lambda: MockHuggingFace(KEY),
            lambda url: {"api_base": url + "/v1"},
            "meta-llama/Llama-3.1-8B-Instruct",
        ),
        Vendor("ollama", lambda: MockOllama(), lambda url: {"api_base": url}, "llama3.2"),
    ]


async def capture(vendor: Vendor, url: str, call: Call) -> list[bytes]:
    """The vendor's native stream for `call`, chunk by chunk as it arrived."""
    llm = Llm(slug=vendor.name, vendor=vendor.name, **vendor.llm(url))  # type: ignore[arg-type]
    adapter = bind(llm, vendor.key)
    request = await adapter.request(call)
    chunks: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        target = aiohttp.client.URL(request.url, encoded=True)
        async with session.request(request.method, target, headers=request.headers, data=request.body) as r:
            if r.status != 200:
                raise SystemExit(f"{vendor.name}: HTTP {r.status}: {(await r.read())[:300]!r}")
            async for chunk in r.content.iter_any():
                chunks.append(chunk)
    return chunks


def measure(vendor: Vendor, url: str, words: int, repeat: int) -> tuple[int, float]:
    prompt = " ".join(f"word{i}" for i in range(words))
    body = orjson.dumps(
        {"model": vendor.model, "messages": [{"role": "user", "content": prompt}], "stream": True}
    )
    call = Call(op=Operation.CHAT, body=body, model=vendor.model, stream=True)
    chunks = asyncio.run(capture(vendor, url, call))
    llm = Llm(slug=vendor.name, vendor=vendor.name, **vendor.llm(url))  # type: ignore[arg-type]
    adapter = bind(llm, vendor.key)
    started = time.process_time()
    for _ in range(repeat):
        relay = adapter.stream(call)
        for chunk in chunks:
            relay.feed(chunk)
        relay.finish()
    used = time.process_time() - started
    return len(chunks), used / (repeat * len(chunks)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--words", type=int, default=60, help="prompt words (the mocks echo part of it)")
    args = parser.parse_args()
    print(f"{'vendor':14} {'chunks':>7} {'µs CPU/chunk':>13}")
    for vendor in _vendors():
        if not has_adapter(vendor.name):
            print(f"{vendor.name:14} {'(no adapter)':>21}")
            continue
        mock = vendor.mock()
        mock.chunk_delay_s = 0.003  # each upstream event in its own TCP segment: one chunk per event
        with ThreadedServer(mock) as server:
            chunks, per_chunk = measure(vendor, server.url, args.words, args.repeat)
        print(f"{vendor.name:14} {chunks:7d} {per_chunk:13.1f}")


if __name__ == "__main__":
    main()
