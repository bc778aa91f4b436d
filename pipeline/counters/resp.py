"""A minimal pipelined RESP connection to Redis: asyncio.Protocol + hiredis.Reader.

Measured on this project's VM: redis-py's asyncio client costs ~200 µs CPU per EVALSHA, this one 55–67 µs
(bench/README.md). Opened lazily and again after a failure; a refused connection or a timeout raises
`CountersUnavailable`; an error reply is returned as a `hiredis.ReplyError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

from pipeline.counters.base import CountersUnavailable

log = logging.getLogger("tollgate.counters")

CONNECT_TIMEOUT_S = 0.25
CALL_TIMEOUT_S = 1.0
_WATCH_S = 0.25


class RedisConnection:
    """One lazily opened, pipelined connection to `redis://[[user]:password@]host[:port][/db]`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"a Redis URL starts with redis:// (got {url!r})")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.db = int(parts.path.strip("/") or 0)
        self.address = f"{self.host}:{self.port}/{self.db}"
        self._hello: list[tuple[Any, ...]] = []
        if parts.password is not None:
            user = unquote(parts.username or "")
            self._hello.append(
                (b"AUTH", user, unquote(parts.password)) if user else (b"AUTH", unquote(parts.password))
            )
        if self.db:
            self._hello.append((b"SELECT", self.db))
        self._protocol: _Resp | None = None
        self._connecting: asyncio.Task[_Resp] | None = None

    async def call(self, *args: Any) -> Any:
        """The reply to one command; an error reply is returned as a `hiredis.ReplyError`."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        return await protocol.call(hiredis.pack_command(args))

    def idle(self) -> _Resp | None:
        """The connection when it is open with no call in flight, else None."""
        protocol = self._protocol
        if protocol is None or protocol.closed or protocol.pending:
            return None
        return protocol

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None

    async def _connect(self) -> _Resp:
        if self._connecting is None:  # concurrent callers share one attempt
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(_retrieve)
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Resp:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, protocol = await loop.create_connection(lambda: _Resp(self.address), self.host, self.port)
            replies = await asyncio.gather(*(protocol.call(hiredis.pack_command(c)) for c in self._hello))
        except (OSError, TimeoutError) as exc:
            raise CountersUnavailable(f"{self.address} ({str(exc) or 'connect timed out'})") from exc
        finally:
            self._connecting = None
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                protocol.close()
                raise CountersUnavailable(f"{self.address} ({reply})")
        self._protocol = protocol
        return protocol


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Marks a shared task's failure as seen even when every caller waiting on it was cancelled."""
    if not task.cancelled():
        task.exception()


class _Resp(asyncio.Protocol):
    """Replies come in the order of the commands: pending calls are a queue; writes are batched per loop
    iteration, and a connection whose oldest call is past its deadline is dropped."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.closed = False
        self.reader = hiredis.Reader()
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.out: list[bytes] = []
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport
        self.watch = self.loop.call_later(_WATCH_S, self._check_deadline)

    def call(self, command: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        if self.closed:
            future.set_exception(CountersUnavailable(f"{self.address} (connection lost)"))
            return future
        if self.out:
            self.out.append(command)
        elif self.pending:  # calls in flight: more may come in this loop iteration, send them together
            self.out.append(command)
            self.loop.call_soon(self._flush)
        elif self.transport is not None:
            self.transport.write(command)
        self.pending.append((future, self.loop.time() + CALL_TIMEOUT_S))
        return future

    def _flush(self) -> None:
        out, self.out = self.out, []
        if not self.closed and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def data_received(self, data: bytes) -> None:
        reader, pending = self.reader, self.pending
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                future = pending.popleft()[0]
                if not future.done():
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            log.error("redis at %s: unexpected data (%s); reconnecting", self.address, exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.watch is not None:
            self.watch.cancel()
        pending, self.pending = self.pending, deque()
        for future, _ in pending:
            if not future.done():
                future.set_exception(CountersUnavailable(f"{self.address} (connection lost)"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _check_deadline(self) -> None:
        if self.pending and self.pending[0][1] < self.loop.time():
            log.warning("redis at %s did not answer within %.1f s", self.address, CALL_TIMEOUT_S)
            self.close()
            return
        self.watch = self.loop.call_later(_WATCH_S, self._check_deadline)
