"""ThreadedServer: serve an ASGI app with uvicorn from a background thread, for tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

_START_TIMEOUT_S = 10.0


class ThreadedServer:
    """Run `app` on 127.0.0.1 in a thread with its own event loop.

    `start()` returns once the server accepts connections; port 0 picks a free port, read back from
    `port` / `url`. `stop()` shuts down gracefully (streams get `graceful_timeout_s`) and joins the thread.
    Uvicorn installs no signal handlers here: it skips them off the main thread.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        graceful_timeout_s: int = 5,
        *,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._scheme = "https" if ssl_certfile else "http"
        self._config = uvicorn.Config(
            app,
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            log_config=None,  # leave the process's logging alone
            timeout_graceful_shutdown=graceful_timeout_s,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        )
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The bound port; still readable after stop(), so a test can check that nothing listens there."""
        if not self._port:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        return f"{self._scheme}://{self._host}:{self.port}"

    def start(self) -> ThreadedServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        # Binding here, not in uvicorn, makes port 0 race-free: the port is ours before the thread runs.
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then, and without it
        # every response stalls ~40 ms (Nagle against the client's delayed ACK).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._requested_port))
        self._socket, self._port = sock, sock.getsockname()[1]
        self._server = uvicorn.Server(self._config)  # a fresh one, so a stopped server can start again
        self._thread = threading.Thread(
            target=self._run, args=(self._server, sock), name=f"uvicorn-{self._port}"
        )
        self._thread.daemon = True
        self._thread.start()
        self._wait_started(self._thread)
        return self

    @staticmethod
    def _run(server: uvicorn.Server, sock: socket.socket) -> None:
        # Errors surface through threading.excepthook; a failed startup also fails start().
        asyncio.run(server.serve(sockets=[sock]))

    def _wait_started(self, thread: threading.Thread) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn did not start on {self._host}:{self.port}")
            thread.join(0.005)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join()
        self._thread = None
        if self._socket is not None:
            self._socket.close()  # uvicorn closes it too; closing twice is harmless
            self._socket = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
