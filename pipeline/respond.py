"""The response phase: the chain's text rules and event filters on the answer.

A complete answer is parsed once, its texts masked (or the answer blocked) by the text rules, then
handed to each event filter. A stream goes through the text rules with a holdback (pipeline/textstream.py:
matches split across events are found) and then, event by event, through the event filters. A block
raises ContentBlocked; the relay turns it into a 400 (complete answers) or an SSE error event (streams).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from pipeline.base import EventFilter, TextRule
from pipeline.frames import Framing, Splitter, payload
from pipeline.textstream import ResponseTextStream, filter_answer

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from pipeline.chain import Chain


async def answer(ctx: RequestContext, body: bytes) -> bytes:
    """A complete answer through the response phase (unchanged bytes when nothing changed)."""
    chain = chain_of(ctx)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # not JSON (a /proxy/ binary answer): nothing a text rule could read
    changed = filter_answer(doc, chain.rules) if chain.rules else False
    for step in chain.events:  # an event filter may edit the answer in place: always written again
        doc, changed = await step(ctx, doc, False), True
    return orjson.dumps(doc) if changed else body


def stream(ctx: RequestContext, framing: Framing | None) -> Stream | None:
    """The response phase of one stream, or None when its framing cannot be read (AWS event streams)."""
    if framing is None:
        return None
    chain = chain_of(ctx)
    return Stream(ctx, chain.rules, chain.events, framing)


def chain_of(ctx: RequestContext) -> Chain:
    """The chain whose response phase applies: the answering LLM's, or (a cache hit on a route, which
    no LLM answered) the route's, which holds the global filters."""
    if ctx.llm is not None:
        return ctx.llm.chain
    assert ctx.route is not None
    return ctx.route.chain


class Stream:
    def __init__(
        self,
        ctx: RequestContext,
        rules: tuple[TextRule, ...],
        events: tuple[EventFilter, ...],
        framing: Framing,
    ) -> None:
        self._ctx = ctx
        self._text = ResponseTextStream(rules, framing) if rules else None
        self._events = events
        self._splitter = Splitter(framing) if events else None

    async def feed(self, data: bytes) -> bytes:
        if self._text is not None:
            data = self._text.feed(data)
        if self._splitter is not None and data:
            data = await self._filter_events(self._splitter.feed(data))
        return data

    async def finish(self) -> bytes:
        data = self._text.finish() if self._text is not None else b""
        if self._splitter is not None:
            events = self._splitter.feed(data) if data else []
            data = await self._filter_events([*events, *self._splitter.finish()])
        return data

    async def _filter_events(self, events: list[bytes]) -> bytes:
        out = []
        for event in events:
            out.append(await self._filter_event(event))
        return b"".join(out)

    async def _filter_event(self, event: bytes) -> bytes:
        assert self._splitter is not None
        found = payload(event, self._splitter.sse)
        if found is None:
            return event  # [DONE], pings, comments
        doc = found.doc
        for step in self._events:  # an event filter may edit the event in place: always written again
            doc = await step(self._ctx, doc, True)
        return found.head + orjson.dumps(doc) + found.tail
