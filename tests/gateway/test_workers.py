"""`--workers N` runs N processes on one port; they share the store, see admin changes, and stop cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest

from mocks.openai import MockOpenAI
from tests.conftest import StartGateway
from tests.support import APP_KEY, Gateway, base_config

HELLO: list[dict[str, str]] = [{"role": "user", "content": "hello"}]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def worker_pids(gateway: Gateway) -> list[int]:
    """The spawned gateway workers (multiprocessing's resource tracker is a child too)."""
    return [pid for pid in children(gateway.process.pid) if b"spawn_main" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def fire(gateway: Gateway, count: int) -> list[int]:
    async def run() -> list[int]:
        async with httpx.AsyncClient(
            base_url=gateway.url, timeout=60, limits=httpx.Limits(max_connections=50)
        ) as c:
            body = {"model": "gpt-4o-mini", "messages": HELLO}
            headers = {"authorization": f"Bearer {APP_KEY}"}
            calls = [
                c.post("/openai/gpt/v1/chat/completions", json=body, headers=headers) for _ in range(count)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    return asyncio.run(run())


@pytest.fixture
def workers(start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str) -> Gateway:
    return start_gateway(base_config(upstream_url), "--workers", "3")


def test_workers_are_processes_sharing_the_port(workers: Gateway) -> None:
    assert len(worker_pids(workers)) == 3
    assert fire(workers, 300) == [200] * 300
    assert len(workers.records(expect=300)) == 300
    deadline = time.monotonic() + 5
    while True:  # each worker moves its last half second into the shared files on its own tick
        metrics = httpx.get(workers.url + "/metrics").text
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("tollgate_requests_total{") and 'status="200"' in line
        )
        if total == 300 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert total == 300  # any worker's /metrics shows the sum of all


def test_admin_changes_reach_every_worker(workers: Gateway) -> None:
    created = workers.admin(
        "POST", "/api/v1/apps", json={"name": "late", "owner": "alice@example.com", "llms": ["gpt"]}
    )
    key = created.json()["api_key"]
    time.sleep(1.5)  # workers poll the config version every 0.5 s
    client = workers.openai(key=key)
    for _ in range(30):  # many connections: each lands on some worker
        assert (
            client.with_options(http_client=httpx.Client())
            .chat.completions.create(
                model="gpt-4o-mini",
                messages=HELLO,  # type: ignore[arg-type]
            )
            .choices
        )
    llm = workers.admin("GET", "/api/v1/llms").json()["data"][0]
    workers.admin("PATCH", f"/api/v1/llms/{llm['id']}", json={"active": False})
    time.sleep(1.5)
    for _ in range(30):
        with pytest.raises(openai.NotFoundError):
            client.with_options(http_client=httpx.Client()).chat.completions.create(
                model="gpt-4o-mini", messages=HELLO
            )  # type: ignore[arg-type]


def test_sigterm_stops_every_worker_and_keeps_every_record(workers: Gateway) -> None:
    pids = worker_pids(workers)
    assert fire(workers, 100) == [200] * 100
    assert workers.stop() == 0
    assert not any(_cmdline(pid) for pid in pids)  # gone (a zombie's cmdline is empty too)
    assert len(workers.stored_records()) == 100


def test_a_dead_worker_is_replaced(workers: Gateway) -> None:
    victim = worker_pids(workers)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = worker_pids(workers)
        if victim not in now and len(now) == 3:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the dead worker was not replaced")
    time.sleep(1)
    assert fire(workers, 30) == [200] * 30
