"""The HTTP servers of a process: sockets bound here (a taken port is a one-line error, not a traceback)
and uvicorn servers run inside our own event loop, with our own signal handling: SIGTERM/SIGINT awaits
the caller's drain, then the servers stop accepting and let in-flight requests and streams finish; a
second SIGINT forces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from typing import Any

import uvicorn

from gateway.settings import Settings
from gateway.types import ASGIApp

log = logging.getLogger("tollgate")

MOCK = "mock upstream"  # the bundled mock's server: stopped last, after the gateway's streams from it


class StartupError(Exception):
    """Why the process cannot start, in one line for the operator."""


class Server(uvicorn.Server):
    """A uvicorn server that leaves signals to us (uvicorn would re-raise them and exit non-zero) and
    starts its shutdown as soon as `exit()` is called, not at its next 0.1 s tick."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def exit(self) -> None:
        self.should_exit = True
        if self._wake is not None:
            self._wake.set()

    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)  # uvicorn's tick, cut short by exit()
            should_exit = await self.on_tick(counter)


def make_server(app: ASGIApp, settings: Settings, *, timeout_s: float | None = None) -> Server:
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",  # uvicorn's start/stop chatter is replaced by ours
        server_header=False,
        proxy_headers=False,  # nothing here reads the client address; saves ~5 µs a request
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s if timeout_s is None else timeout_s),
        timeout_keep_alive=30,
    )
    return Server(config)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(
        family, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )  # proto set: event loops turn Nagle off
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def run_servers(
    servers: Sequence[tuple[str, Server, socket.socket]], *, on_stop: Callable[[], Awaitable[None]]
) -> None:
    """Serve until SIGTERM/SIGINT, await `on_stop` (draining), then stop the servers in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Future[None]] = []

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set() and sig == signal.SIGINT:  # a second Ctrl+C: stop now
            for _, server, _ in servers:
                server.force_exit = True
            for future in stopping:
                future.cancel()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for _, server, sock in servers]
    for (name, server, sock), task in zip(servers, tasks, strict=True):
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            raise StartupError(f"the {name} server failed to start")
        host, port = sock.getsockname()[:2]
        log.info("%s listening on http://%s:%d", name, host if ":" not in host else f"[{host}]", port)
    await stop.wait()
    stopping.append(asyncio.ensure_future(on_stop()))
    with contextlib.suppress(asyncio.CancelledError):
        await stopping[0]
    # The gateway and the admin API stop together; a bundled mock upstream last, after the gateway's
    # streams from it have ended.
    last = [(server, task) for (name, server, _), task in zip(servers, tasks, strict=True) if name == MOCK]
    first = [(server, task) for (name, server, _), task in zip(servers, tasks, strict=True) if name != MOCK]
    for group in (first, last):
        for server, _ in group:
            server.exit()
        await asyncio.gather(*(task for _, task in group))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop (plain asyncio where uvloop does not exist)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover (Windows)
        asyncio.run(main)
    else:
        uvloop.run(main)
