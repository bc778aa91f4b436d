"""The text rules over answers: a complete answer in place, a stream event by event with a holdback.

A stream is rewritten as it passes. Events wait in a queue, and each text channel (a choice, a content
block: pipeline/slots.py) keeps the text of its waiting events. An event goes out once each of its texts
lies more than the rules' holdback before the end of its channel's text and outside any match that could
still grow, so a match split across events is seen whole: [REDACTED:<LABEL>] goes in the event where
the match starts and the rest of the match is cut from the events after it. Events without text keep
their place in the queue, and an event that did not change goes out as the bytes that came in.

Every rule sees the text as it came; where the matches of several mask rules overlap they are masked as
one (merge_spans). A block rule's match raises ContentBlocked, in a stream also one that straddles
text already sent (the channel keeps the last `holdback` characters it sent for that).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import orjson

from gateway.errors import ContentBlocked
from pipeline.base import Span, TextRule
from pipeline.frames import Framing, Splitter, payload
from pipeline.slots import Slot, answer_slots, answer_texts, request_texts
from pipeline.text import mask


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """The spans of several rules as one sorted list; overlapping spans become one, labelled as the
    earliest (longest on a tie), so no matched character is left unmasked."""
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and span.start < out[-1].end:
            if span.end > out[-1].end:
                out[-1] = out[-1]._replace(end=span.end)
        else:
            out.append(span)
    return out


def redact(text: str, rules: Iterable[TextRule]) -> str | None:
    """`text` masked by the mask rules, None when none matched; ContentBlocked when a block rule matches."""
    spans: list[Span] = []
    found_by = 0
    for rule in rules:
        found = rule.find(text)
        if found:
            if rule.action == "block":
                raise ContentBlocked(rule.name)
            spans.extend(found)
            found_by += 1
    if not spans:
        return None
    return mask(text, spans if found_by == 1 else merge_spans(spans))


def _redact_all(slots: Iterable[Slot], rules: Sequence[TextRule]) -> bool:
    changed = False
    for container, key in slots:
        masked = redact(container[key], rules)
        if masked is not None:
            container[key] = masked
            changed = True
    return changed


def filter_answer(doc: Any, rules: Sequence[TextRule]) -> bool:
    """Masks the texts of a complete answer in place (True when one changed), or raises ContentBlocked."""
    return _redact_all(answer_texts(doc), rules)


def mask_request(doc: Any, rules: Sequence[TextRule]) -> bool:
    """Masks the prompt texts of a request body in place (True when one changed), or raises ContentBlocked."""
    return _redact_all(request_texts(doc), rules)


# Text goes out in steps of this many characters at least: each scan runs the rules over the holdback and
# the waiting text, so scanning for every few characters would cost more than the latency it saves.
_STEP = 32


class _Channel:
    """One text of a stream (a choice, a content block), in channel positions: 0 is its first character."""

    __slots__ = ("base", "cut", "dirty", "next", "pending", "safe", "sent", "spans")

    def __init__(self) -> None:
        self.base = 0  # where `pending`, the text of the waiting events, starts
        self.pending = ""
        self.sent = ""  # the last `holdback` characters before `base`, as they came: the rules' context
        self.safe = 0  # text before this may go out
        self.cut = 0  # text before this belongs to a match whose label has gone out
        self.spans: list[Span] = []  # the settled matches still to go out, by start
        self.next = 0  # the first of `spans` not yet out
        self.dirty = False  # text came since the last scan


class _Event:
    __slots__ = ("doc", "head", "raw", "slots", "tail")

    def __init__(self, raw: bytes, doc: Any = None, head: bytes = b"", tail: bytes = b"") -> None:
        self.raw = raw
        self.doc = doc
        self.head = head  # the bytes before the JSON (SSE: the lines before `data:` and `data: `)
        self.tail = tail  # the bytes after it
        self.slots: list[tuple[_Channel, Any, Any, int, int]] = []  # channel, container, key, start, end


class ResponseTextStream:
    """Rewrites a client-bound stream (SSE events or NDJSON lines) through text rules, chunk by chunk."""

    def __init__(self, rules: Sequence[TextRule], framing: Framing) -> None:
        self._rules = tuple(rules)
        self._holdback = max((rule.holdback for rule in self._rules), default=0)
        self._splitter = Splitter(framing)
        self._events: deque[_Event] = deque()
        self._channels: dict[Hashable, _Channel] = {}

    def feed(self, data: bytes) -> bytes:
        """The bytes that may go to the client now; raises ContentBlocked when a block rule matched."""
        if not self._rules:
            return data
        for raw in self._splitter.feed(data):
            self._add(raw)
        self._scan(final=False)
        return self._release()

    def finish(self) -> bytes:
        """The rest, once the upstream's stream has ended: everything held back, masked."""
        for raw in self._splitter.finish():
            self._add(raw)
        self._scan(final=True)
        return self._release()

    def _add(self, raw: bytes) -> None:
        event = self._parse(raw)
        self._events.append(event)
        if event.doc is None:
            return
        for channel, container, key in answer_slots(event.doc):
            text = container[key]
            if text:
                ch = self._channels.get(channel)
                if ch is None:
                    ch = self._channels[channel] = _Channel()
                start = ch.base + len(ch.pending)
                ch.pending += text
                ch.dirty = True
                event.slots.append((ch, container, key, start, start + len(text)))
        if not event.slots:
            event.doc = None  # nothing to rewrite: it goes out as it came

    def _parse(self, raw: bytes) -> _Event:
        found = payload(raw, self._splitter.sse)
        return _Event(raw) if found is None else _Event(raw, found.doc, found.head, found.tail)

    def _scan(self, final: bool) -> None:
        """Runs the rules over each channel that got text: what may go out, and the matches to mask."""
        for ch in self._channels.values():
            if not (ch.dirty or final):
                continue
            end = ch.base + len(ch.pending)
            limit = end if final else end - self._holdback  # a match ending after this may still grow
            if not final and limit - ch.base < _STEP:
                continue  # too little to let out yet: scan later (what `safe` says still holds)
            ch.dirty = False
            origin = ch.base - len(ch.sent)
            text = ch.sent + ch.pending
            safe = limit
            spans: list[Span] = []
            for rule in self._rules:
                for start, stop, label in rule.find(text):
                    start, stop = start + origin, stop + origin
                    if stop <= ch.base:
                        continue  # in text already out, judged then
                    if stop > limit:
                        safe = min(safe, start)  # could still grow: hold it back
                    elif rule.action == "block":
                        raise ContentBlocked(rule.name)
                    else:
                        spans.append(Span(start, stop, label))
            ch.safe = safe
            ch.spans = self._settle(ch, merge_spans(spans)) if spans else spans
            ch.next = 0

    @staticmethod
    def _settle(ch: _Channel, spans: list[Span]) -> list[Span]:
        """The spans whose label is still to go out; those continuing a span already labelled only move
        the cut, one that starts in text already out (longer than the holdback) is labelled where it
        reaches the waiting text."""
        kept = []
        for span in spans:
            if span.start < ch.cut:
                ch.cut = max(ch.cut, span.end)
            else:
                kept.append(span if span.start >= ch.base else span._replace(start=ch.base))
        return kept

    def _release(self) -> bytes:
        out: list[bytes] = []
        events = self._events
        while events:
            event = events[0]
            for ch, _, _, _, end in event.slots:
                if end > ch.safe:
                    return b"".join(out)
            events.popleft()
            changed = False
            for ch, container, key, start, end in event.slots:
                changed = self._rewrite(ch, container, key, start, end) or changed
            out.append(event.head + orjson.dumps(event.doc) + event.tail if changed else event.raw)
        return b"".join(out)

    def _rewrite(self, ch: _Channel, container: Any, key: Any, start: int, end: int) -> bool:
        """Sends one text of a channel, masked: False when it goes out unchanged."""
        text: str = container[key]
        ch.pending = ch.pending[end - start :]
        ch.base = end
        ch.sent = (ch.sent + text)[-self._holdback :] if self._holdback else ""
        pos = start
        pieces: list[str] | None = None
        if ch.cut > start:  # the rest of a match labelled in an earlier event
            pos = min(ch.cut, end)
            pieces = []
        spans, i = ch.spans, ch.next
        while i < len(spans) and spans[i].start < end:
            s, e, label = spans[i]
            if pieces is None:
                pieces = []
            pieces += (text[pos - start : s - start], f"[REDACTED:{label}]")
            pos = min(e, end)
            ch.cut = max(ch.cut, e)
            i += 1
        ch.next = i
        if pieces is None:
            return False
        pieces.append(text[pos - start :])
        container[key] = "".join(pieces)
        return True
