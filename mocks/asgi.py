"""What every mock shares: the request loop (`MockApp`), the recorded request, the reply, and the ASGI
plumbing under them (headers and body, whole answers, disconnects, lifespan)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec
import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


def scope_headers(scope: Scope) -> dict[str, str]:
    """Request headers by lowercased name; repeated ones joined by ", "."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body  # the usual case: the whole body in one message
    chunks = [body]
    while message.get("more_body"):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def send_whole(send: Send, status: int, headers: Headers, body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    """Set `gone` when the client goes away (the body is read: the next message is the disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def lifespan(receive: Receive, send: Send) -> None:
    """Nothing to set up; acknowledge so a mock also runs under servers with lifespan on."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class RecordedRequest(msgspec.Struct, frozen=True):
    """One request as it arrived; header names are lowercased, repeated headers joined by ", "."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Reply(msgspec.Struct, frozen=True):
    status: int
    headers: Headers
    body: bytes = b""
    events: list[bytes] | None = None  # a stream: each event (line, frame) goes out as its own message


class MockApp:
    """The request loop of every mock: record the request, answer it (after `first_byte_delay_s`), and
    stream an answer's events `chunk_delay_s` apart, counting clients that leave mid-stream.

    A mock implements `_reply`; `_path` says which path it routes on (the decoded one by default)."""

    requests: list[RecordedRequest]
    record_requests: bool
    disconnects: int
    chunk_delay_s: float
    first_byte_delay_s: float

    def _reply(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    def _path(self, scope: Scope) -> str:
        return str(scope["path"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan(receive, send)
            return
        query = scope["query_string"].decode("latin-1")
        request = RecordedRequest(
            scope["method"], self._path(scope), query, scope_headers(scope), await read_body(receive)
        )
        if self.record_requests:
            self.requests.append(request)
        reply = self._reply(request)
        if self.first_byte_delay_s > 0:
            await asyncio.sleep(self.first_byte_delay_s)
        if reply.events is None:
            await send_whole(send, reply.status, reply.headers, reply.body)
        else:
            await self._send_stream(receive, send, reply)

    async def _send_stream(self, receive: Receive, send: Send, reply: Reply) -> None:
        gone = asyncio.Event()
        watcher = asyncio.create_task(watch_disconnect(receive, gone))
        try:
            await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
            break_after = getattr(self, "break_after_events", None)
            for index, event in enumerate(reply.events or ()):
                if index == break_after:  # an injected failure: the connection drops mid-stream
                    raise ConnectionAbortedError(f"mock: stream broken after {index} events")
                if index and self.chunk_delay_s > 0:
                    await asyncio.sleep(self.chunk_delay_s)
                if gone.is_set():
                    self.disconnects += 1
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # servers on ASGI spec 2.4+ may raise on a closed connection
            self.disconnects += 1
        finally:
            watcher.cancel()
