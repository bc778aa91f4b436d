"""Nothing is lost: concurrency, SIGTERM during a stream, a client that goes away mid-stream, draining."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx
import pytest

from mocks.openai import MockOpenAI
from tests.conftest import StartGateway
from tests.support import APP_KEY, Gateway, base_config

CHAT = "/openai/gpt/v1/chat/completions"
LONG = {"role": "user", "content": "one two three four five six seven eight nine ten eleven twelve"}


def test_200_concurrent_requests_give_200_records(gateway: Gateway, upstream: MockOpenAI) -> None:
    async def fire() -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=60) as client:
            calls = [
                client.post(
                    CHAT,
                    headers={"authorization": f"Bearer {APP_KEY}"},
                    json={
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": f"q{i}"}],
                        "stream": i % 2 == 0,
                    },
                )
                for i in range(200)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(fire()) == [200] * 200
    records = gateway.records(expect=200)
    assert len(records) == 200
    assert len({r["request_id"] for r in records}) == 200
    assert sum(r["stream"] for r in records) == 100
    assert all(r["status_code"] == 200 and r["prompt_tokens"] > 0 for r in records)
    assert len(upstream.requests) == 200


def _stream_in_thread(gateway: Gateway, first_chunk: threading.Event, lines: list[str]) -> threading.Thread:
    def run() -> None:
        body = {"model": "gpt-4o-mini", "messages": [LONG], "stream": True}
        headers = {"authorization": f"Bearer {APP_KEY}"}
        try:
            with httpx.stream("POST", gateway.url + CHAT, json=body, headers=headers, timeout=60) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        lines.append(line)
                        first_chunk.set()
        except httpx.HTTPError as exc:
            lines.append(f"error: {exc!r}")
        first_chunk.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_sigterm_during_a_slow_stream_finishes_it_and_loses_no_record(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    gateway = start_gateway(base_config(upstream_url))
    upstream.chunk_delay_s = 0.15
    first, lines = threading.Event(), []  # type: ignore[var-annotated]
    thread = _stream_in_thread(gateway, first, lines)
    assert first.wait(10)
    gateway.process.send_signal(signal.SIGTERM)
    thread.join(30)
    assert gateway.process.wait(30) == 0
    assert lines[-1] == "data: [DONE]"  # the stream was finished, not cut
    (record,) = gateway.stored_records()
    assert record["status_code"] == 200 and record["response_tokens"] > 0 and record["stream"] == 1


def test_sigterm_past_the_shutdown_timeout_still_records_the_cut_stream(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    gateway = start_gateway(base_config(upstream_url), "--shutdown-timeout-s", "0.5")
    upstream.chunk_delay_s = 0.5
    first, lines = threading.Event(), []  # type: ignore[var-annotated]
    thread = _stream_in_thread(gateway, first, lines)
    assert first.wait(10)
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(30) == 0
    thread.join(30)
    assert "data: [DONE]" not in lines
    (record,) = gateway.stored_records()
    assert (record["status_code"], record["error_code"]) == (503, "shutdown")
    assert record["prompt_tokens"] > 0  # the partial answer is still counted


def test_client_gone_mid_stream_ends_the_upstream_request_and_is_recorded(
    gateway: Gateway, upstream: MockOpenAI
) -> None:
    upstream.chunk_delay_s = 0.2
    body = {"model": "gpt-4o-mini", "messages": [LONG], "stream": True}
    with httpx.stream(
        "POST", gateway.url + CHAT, json=body, headers={"authorization": f"Bearer {APP_KEY}"}, timeout=30
    ) as response:
        for line in response.iter_lines():
            if '"content":"one' in line.replace(" ", "") or "Mock" in line:
                break
    deadline = time.monotonic() + 5
    while upstream.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.disconnects == 1  # the gateway hung up on the upstream too
    (record,) = gateway.records(expect=1)
    assert (record["status_code"], record["error_code"]) == (499, "client_closed")
    assert record["prompt_tokens"] > 0 and record["response_tokens"] > 0


def test_drain_keeps_serving_while_readyz_says_503(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    gateway = start_gateway(base_config(upstream_url), "--drain-s", "1.5")
    gateway.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    answer = gateway.openai().chat.completions.create(model="gpt-4o-mini", messages=[LONG])  # type: ignore[list-item]
    assert answer.choices[0].message.content
    assert gateway.process.wait(30) == 0
    assert len(gateway.stored_records()) == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_exit_zero(start_gateway: StartGateway, upstream_url: str, sig: int) -> None:
    gateway = start_gateway(base_config(upstream_url))
    assert gateway.stop(sig) == 0
    assert "listening on" in gateway.output()
