"""Host-wide counters for `serve --workers N` without Redis: the supervisor serves one `LocalCounters`
over a Unix socket and every worker asks it.

Frames are a 4-byte big-endian length and a msgpack message: a request is a tagged array
`[kind, id, ...]`, a reply `[id, answer or nil]`. A worker keeps one connection and pipelines its calls
(replies are matched by id). The server runs each request synchronously as it reads it, so every
check-and-count is atomic across workers. A call fails with `CountersUnavailable` when the server cannot
be reached, the connection drops while the call is pending, or no reply comes within CALL_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, cast

import msgspec

from pipeline.counters.base import Answer, Ask, CountersUnavailable, Settle
from pipeline.counters.local import LocalCounters

log = logging.getLogger("tollgate.counters")

CONNECT_TIMEOUT_S = 0.5
CALL_TIMEOUT_S = 1.0
_WATCH_S = 0.25  # how often a connection looks for a call past its deadline


class _Admit(msgspec.Struct, frozen=True, array_like=True, tag=0):
    id: int
    ask: Ask


class _Settle(msgspec.Struct, frozen=True, array_like=True, tag=1):
    id: int
    settle: Settle


class _Seed(msgspec.Struct, frozen=True, array_like=True, tag=2):
    id: int
    month: str
    spent: dict[str, int]


class _Reply(msgspec.Struct, frozen=True, array_like=True):
    id: int
    answer: Answer | None = None


_Request = _Admit | _Settle | _Seed
_encode = msgspec.msgpack.Encoder().encode
_requests = msgspec.msgpack.Decoder(_Request)
_replies = msgspec.msgpack.Decoder(_Reply)


def _frame(message: Any) -> bytes:
    body = _encode(message)
    return len(body).to_bytes(4, "big") + body


class _Frames:
    """Splits a byte stream into frame payloads."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[memoryview]:
        if self.buffer:
            self.buffer += data
            data = bytes(self.buffer)
            self.buffer.clear()
        view = memoryview(data)
        payloads = []
        at, size = 0, len(data)
        while size - at >= 4:
            end = at + 4 + int.from_bytes(view[at : at + 4], "big")
            if end > size:
                break
            payloads.append(view[at + 4 : end])
            at = end
        if at < size:
            self.buffer += view[at:]
        return payloads


class CounterServer:
    """Serves one `LocalCounters` on a Unix socket (run in the supervisor)."""

    def __init__(self, path: str, counters: LocalCounters | None = None) -> None:
        self.path = path
        self.counters = counters or LocalCounters()
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_ServerConnection] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by a supervisor that died
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: _ServerConnection(self.counters, self._connections), self.path
        )
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.close()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class _ServerConnection(asyncio.Protocol):
    def __init__(self, counters: LocalCounters, connections: set[_ServerConnection]) -> None:
        self.counters = counters
        self.connections = connections
        self.frames = _Frames()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        counters = self.counters
        out = []
        try:
            requests = [_requests.decode(payload) for payload in self.frames.feed(data)]
        except msgspec.DecodeError as exc:
            log.error("counter server: a malformed request (%s); closing that connection", exc)
            self.close()
            return
        for request in requests:
            if type(request) is _Admit:
                out.append(_frame(_Reply(request.id, counters.admit_now(request.ask))))
            elif type(request) is _Settle:
                counters.settle_now(request.settle)
                out.append(_frame(_Reply(request.id)))
            else:
                counters.seed_now(request.month, request.spent)
                out.append(_frame(_Reply(request.id)))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


class HostCounters:
    """A worker's client of the `CounterServer` at `path`."""

    name = "host"

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: _ClientConnection | None = None
        self._connecting: asyncio.Task[_ClientConnection] | None = None
        self._next_id = 0
        # Settlements the supervisor could not take: FailoverCounters books them on its fallback.
        self.on_unsent: Callable[[list[Settle]], None] | None = None
        self._settling: set[asyncio.Future[None]] = set()  # deferred settlements on their way

    async def admit(self, ask: Ask) -> Answer:
        self._next_id += 1
        answer = await self._call(self._next_id, _Admit(self._next_id, ask))
        assert answer is not None
        return answer

    async def settle(self, settle: Settle) -> None:
        self._next_id += 1
        await self._call(self._next_id, _Settle(self._next_id, settle))

    def defer_settle(self, settle: Settle) -> None:
        task = asyncio.ensure_future(self.settle(settle))
        self._settling.add(task)
        task.add_done_callback(lambda done: self._settled(done, settle))

    def _settled(self, done: asyncio.Future[None], settle: Settle) -> None:
        self._settling.discard(done)
        if done.cancelled() or done.exception() is None:
            return
        if self.on_unsent is not None:
            self.on_unsent([settle])
        else:
            log.error("settling usage at the supervisor failed: %s", done.exception())

    async def seed(self, month: str, spent: dict[str, int]) -> None:
        self._next_id += 1
        await self._call(self._next_id, _Seed(self._next_id, month, spent))

    async def close(self) -> None:
        if self._settling:  # the settlements of the last requests go before the connection closes
            await asyncio.wait(self._settling, timeout=CALL_TIMEOUT_S)
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _call(self, request_id: int, request: _Request) -> Answer | None:
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        return await connection.call(request_id, _frame(request))

    async def _connect(self) -> _ClientConnection:
        if self._connecting is None:  # concurrent callers share one attempt
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(_retrieve)
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _ClientConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, connection = await loop.create_unix_connection(
                    lambda: _ClientConnection(self.path), self.path
                )
        except (OSError, TimeoutError) as exc:
            raise CountersUnavailable(f"{self.path} ({str(exc) or 'connect timed out'})") from exc
        finally:
            self._connecting = None
        self._connection = connection
        return connection


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Marks a shared task's failure as seen even when every caller waiting on it was cancelled."""
    if not task.cancelled():
        task.exception()


class _ClientConnection(asyncio.Protocol):
    """One pipelined connection: pending calls by id, writes batched per loop iteration."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.closed = False
        self.frames = _Frames()
        self.pending: dict[int, tuple[asyncio.Future[Answer | None], float]] = {}
        self.out: list[bytes] = []
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport
        self.watch = self.loop.call_later(_WATCH_S, self._check_deadlines)

    def call(self, request_id: int, frame: bytes) -> asyncio.Future[Answer | None]:
        future: asyncio.Future[Answer | None] = self.loop.create_future()
        if self.out:
            self.out.append(frame)
        elif self.pending:  # calls in flight: more may come in this loop iteration, send them together
            self.out.append(frame)
            self.loop.call_soon(self._flush)
        elif self.transport is not None:
            self.transport.write(frame)
        self.pending[request_id] = (future, self.loop.time() + CALL_TIMEOUT_S)
        return future

    def _flush(self) -> None:
        out, self.out = self.out, []
        if not self.closed and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def data_received(self, data: bytes) -> None:
        pending = self.pending
        for payload in self.frames.feed(data):
            reply = _replies.decode(payload)
            entry = pending.pop(reply.id, None)
            if entry is not None and not entry[0].done():
                entry[0].set_result(reply.answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.watch is not None:
            self.watch.cancel()
        pending, self.pending = self.pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(CountersUnavailable(f"{self.path} (connection lost)"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _check_deadlines(self) -> None:
        """A server that stops answering is treated as gone: the connection is dropped."""
        for _, deadline in self.pending.values():  # the oldest call first
            if deadline < self.loop.time():
                log.warning("counter server at %s did not answer within %.1f s", self.path, CALL_TIMEOUT_S)
                self.close()
                return
            break
        self.watch = self.loop.call_later(_WATCH_S, self._check_deadlines)
