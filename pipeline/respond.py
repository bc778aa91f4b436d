"""The response phase: the chain's text rules and event filters on the answer.

A complete answer is parsed once, its texts masked (or the answer blocked) by the text rules, then
handed to each event filter. A stream goes through the text rules with a holdback (pipeline/textstream.py:
matches split across events are found) and then, event by event, through the event filters. A block
raises ContentBlocked; the relay turns it into a 400 (complete answers) or an SSE error event (streams).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from pipeline.base import EventFilter
from pipeline.textstream import ResponseTextStream, filter_answer

if TYPE_CHECKING:
    from gateway.context import RequestContext


async def answer(ctx: RequestContext, body: bytes) -> bytes:
    """A complete answer through the response phase (unchanged bytes when nothing changed)."""
    assert ctx.llm is not None
    chain = ctx.llm.chain
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # not JSON (a /proxy/ binary answer): nothing a text rule could read
    changed = filter_answer(doc, chain.rules) if chain.rules else False
    for step in chain.events:  # an event filter may edit the answer in place: always written again
        doc, changed = await step(ctx, doc, False), True
    return orjson.dumps(doc) if changed else body


def stream(ctx: RequestContext, framing: str | None) -> Stream | None:
    """The response phase of one stream, or None when its framing cannot be read (AWS event streams)."""
    if framing is None:
        return None
    assert ctx.llm is not None
    return Stream(ctx, ctx.llm.chain.rules, ctx.llm.chain.events, framing)


class Stream:
    def __init__(
        self, ctx: RequestContext, rules: Any, events: tuple[EventFilter, ...], framing: str
    ) -> None:
        self._ctx = ctx
        self._text = ResponseTextStream(rules, framing) if rules else None  # type: ignore[arg-type]
        self._events = events
        self._framer = _Framer(framing) if events else None

    async def feed(self, data: bytes) -> bytes:
        if self._text is not None:
            data = self._text.feed(data)
        if self._framer is not None and data:
            data = await self._filter_events(self._framer.feed(data))
        return data

    async def finish(self) -> bytes:
        data = self._text.finish() if self._text is not None else b""
        if self._framer is not None:
            events = self._framer.feed(data) if data else []
            data = await self._filter_events([*events, *self._framer.finish()])
        return data

    async def _filter_events(self, events: list[bytes]) -> bytes:
        out = []
        for event in events:
            out.append(await self._filter_event(event))
        return b"".join(out)

    async def _filter_event(self, event: bytes) -> bytes:
        assert self._framer is not None
        prefix, payload, suffix = self._framer.payload(event)
        if payload is None:
            return event
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return event  # [DONE], pings
        for step in self._events:  # an event filter may edit the event in place: always written again
            doc = await step(self._ctx, doc, True)
        return prefix + orjson.dumps(doc) + suffix


class _Framer:
    """Splits a byte stream into whole events (SSE: up to a blank line; NDJSON: a line)."""

    def __init__(self, framing: str) -> None:
        self._sse = framing == "sse"
        self._separator = b"\n\n" if self._sse else b"\n"
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data
        if self._sse:
            buffer = buffer.replace(b"\r\n", b"\n")
        events = []
        start = 0
        while True:
            end = buffer.find(self._separator, start)
            if end < 0:
                break
            events.append(buffer[start : end + len(self._separator)])
            start = end + len(self._separator)
        self._buffer = buffer[start:]
        return events

    def finish(self) -> list[bytes]:
        rest, self._buffer = self._buffer, b""
        return [rest] if rest else []

    def payload(self, event: bytes) -> tuple[bytes, bytes | None, bytes]:
        """(bytes before the JSON, the JSON or None, bytes after) of one event."""
        if not self._sse:
            body = event.rstrip(b"\n")
            return b"", body or None, event[len(body) :]
        lines = event.split(b"\n")
        data = [i for i, line in enumerate(lines) if line.startswith(b"data:")]
        if len(data) != 1:  # no data, or a multi-line payload: passed as it is
            return event, None, b""
        i = data[0]
        before = b"\n".join(lines[:i]) + (b"\n" if i else b"") + b"data: "
        after = b"\n" + b"\n".join(lines[i + 1 :])
        return before, lines[i][5:].strip(), after
