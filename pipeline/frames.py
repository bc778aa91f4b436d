"""A client-bound stream in whole events (SSE: up to a blank line; NDJSON: a line), and where an event's
JSON sits in it, so the response phase can rewrite the JSON and put the bytes around it back as they were.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import orjson

from providers.sse import DATA_LINE, SEPARATOR

Framing = Literal["sse", "ndjson"]


class Splitter:
    """Cuts bytes arriving in any splits into whole events (each with its separator)."""

    def __init__(self, framing: Framing) -> None:
        self.sse = framing == "sse"
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        events = []
        pos = 0
        if self.sse and b"\r" in buffer:
            for m in SEPARATOR.finditer(buffer):
                events.append(buffer[pos : m.end()])
                pos = m.end()
        else:
            separator = b"\n\n" if self.sse else b"\n"
            while (end := buffer.find(separator, pos)) >= 0:
                end += len(separator)
                events.append(buffer[pos:end])
                pos = end
        self._buffer = buffer[pos:]
        return events

    def finish(self) -> list[bytes]:
        """What is left when the stream ends (an event cut short, as it came)."""
        rest, self._buffer = self._buffer, b""
        return [rest] if rest else []


class Payload(NamedTuple):
    head: bytes  # the bytes before the JSON (SSE: the lines before `data:`, and `data: `)
    doc: Any  # the JSON object
    tail: bytes  # the bytes after it


def payload(raw: bytes, sse: bool) -> Payload | None:
    """The JSON object of one event; None for comments, [DONE], pings and anything not a JSON object."""
    if sse and raw.startswith(b"data: {") and raw.count(b"data:") == 1:  # the usual event
        end = raw.find(b"\n") % (len(raw) + 1)  # (no newline: the last event, cut short)
        end -= raw[end - 1 : end] == b"\r"
        try:
            return Payload(b"data: ", orjson.loads(raw[6:end]), raw[end:])
        except orjson.JSONDecodeError:
            return None
    if sse:
        lines = list(DATA_LINE.finditer(raw))
        if not lines:
            return None  # a comment, or an event without data
        data = lines[0].group(1) if len(lines) == 1 else b"\n".join(m.group(1) for m in lines)
        head, tail = raw[: lines[0].start()] + b"data: ", raw[lines[-1].end(1) :]
    else:
        data = raw.rstrip(b"\r\n")
        head, tail = b"", raw[len(data) :]
    if not data.lstrip().startswith(b"{"):
        return None
    try:
        return Payload(head, orjson.loads(data), tail)
    except orjson.JSONDecodeError:
        return None
