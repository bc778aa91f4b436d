"""A rolling restart under load (issue 8): two gateways on one PostgreSQL and one Redis behind a small
round-robin balancer that checks /readyz (as HAProxy or a Kubernetes Service does), a steady load through
it, and both gateways restarted one after the other: no request fails, and every answered request is in
the analytics, counted."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import aiohttp
import pytest
from aiohttp import web

from mocks.openai import MockOpenAI
from tests.conftest import StartGateway
from tests.support import APP_KEY, Gateway, base_config, free_port

pytestmark = pytest.mark.one_store  # on PostgreSQL already, a database of its own

ENV = {"TOLLGATE_SECRET_KEY": "a-shared-master-key-for-tests"}
RATE = 40  # requests per second, steady


class Balancer:
    """Round robin over the backends whose /readyz answered 200 at the last check (every 100 ms); a
    backend that refuses the connection is skipped for that request (the request never reached it)."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.ready = set(backends)
        self.port = free_port()
        self.turn = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Balancer:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection per request, as HAProxy's close
        async with aiohttp.ClientSession(connector=connector) as http:
            self.http = http
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._forward)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            checks = asyncio.create_task(self._check())
            self._started.set()
            await self._stop.wait()
            checks.cancel()
            await runner.cleanup()

    async def _check(self) -> None:
        while True:
            for backend in self.backends:
                try:
                    async with self.http.get(
                        backend + "/readyz", timeout=aiohttp.ClientTimeout(total=0.5)
                    ) as r:
                        ok = r.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                (self.ready.add if ok else self.ready.discard)(backend)
            await asyncio.sleep(0.1)

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        for _ in range(len(self.backends) * 2):
            candidates = [b for b in self.backends if b in self.ready] or self.backends
            self.turn += 1
            backend = candidates[self.turn % len(candidates)]
            try:
                async with self.http.request(
                    request.method, backend + request.path_qs, data=body, headers=headers
                ) as r:
                    return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)
            except aiohttp.ClientConnectorError:  # refused: it never saw the request
                self.ready.discard(backend)
        return web.Response(status=503, text="no backend")


def load(url: str, stop: threading.Event, results: list[int]) -> None:
    """A steady RATE of chat requests until `stop`, each status appended to `results`."""

    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            tasks = set()

            async def one() -> None:
                try:
                    async with http.post(
                        url + "/openai/gpt/v1/chat/completions",
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                        headers={"authorization": f"Bearer {APP_KEY}"},
                        timeout=aiohttp.ClientTimeout(total=30),
                    ) as response:
                        await response.read()
                        results.append(response.status)
                except (aiohttp.ClientError, TimeoutError):
                    results.append(-1)

            while not stop.is_set():
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(1 / RATE)
            await asyncio.gather(*tasks)

    asyncio.run(main())


def restart(gateway: Gateway, database: str, redis: str) -> Gateway:
    """SIGTERM (it drains, finishes, flushes, exits 0), then a new process on the same ports and database."""
    assert gateway.stop(signal.SIGTERM) == 0
    args = ("--db", database, "--redis", redis, "--drain-s", "1", "--port", str(gateway.port),
            "--admin-port", str(gateway.admin_port))  # fmt: skip
    fresh = Gateway(gateway.tmp, None, *args, env=ENV)
    fresh.port, fresh.admin_port = gateway.port, gateway.admin_port
    fresh.url, fresh.admin_url = gateway.url, gateway.admin_url
    return fresh.wait_ready()


def test_a_rolling_restart_under_load_fails_no_request_and_loses_no_record(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str, database: str
) -> None:
    redis = "redis://127.0.0.1:6379/0"
    upstream.first_byte_delay_s = 0.05  # requests are in flight when a gateway is told to stop
    common = ("--db", database, "--redis", redis, "--drain-s", "1")
    one = start_gateway(base_config(upstream_url), *common, env=ENV)
    two = start_gateway(None, *common, env=ENV)
    results: list[int] = []
    stop = threading.Event()
    restarted: list[Gateway] = []
    try:
        with Balancer([one.url, two.url]) as balancer:
            loader = threading.Thread(target=load, args=(f"http://127.0.0.1:{balancer.port}", stop, results))
            loader.start()
            time.sleep(2)
            restarted.append(restart(one, database, redis))
            time.sleep(1)
            restarted.append(restart(two, database, redis))
            time.sleep(2)
            stop.set()
            loader.join(60)
        assert len(results) > RATE * 4
        failed = [status for status in results if status != 200]
        assert failed == [], f"{len(failed)} of {len(results)} requests failed: {sorted(set(failed))}"
        time.sleep(1.5)  # the analytics writer's interval
        usage = (
            restarted[0].admin("GET", "/api/v1/analytics/usage", params={"group_by": "app"}).json()["data"]
        )
        assert sum(row["requests"] for row in usage) == len(results)  # every answered request, once
    finally:
        stop.set()
        for gateway in restarted:
            gateway.stop()
