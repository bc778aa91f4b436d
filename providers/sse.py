"""Server-sent events, at the byte level: find complete events, split them, read their data."""

from __future__ import annotations

import re

SEPARATOR = re.compile(rb"\r?\n\r?\n")
DATA_LINE = re.compile(rb"^data: ?(.*?)\r?$", re.MULTILINE)
DONE = b"[DONE]"


def complete_length(buf: bytes) -> int:
    """Length of the prefix of `buf` made of complete events (0 when no event is complete yet)."""
    lf = buf.rfind(b"\n\n")
    crlf = buf.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def split(block: bytes) -> list[bytes]:
    """The events of a block of complete events, without their separators."""
    return [event for event in SEPARATOR.split(block) if event.strip()]


def data(event: bytes) -> bytes:
    """The event's data: its `data:` lines joined by newlines."""
    return b"\n".join(DATA_LINE.findall(event))


def event(payload: bytes, name: str | None = None) -> bytes:
    """One encoded event."""
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + payload + b"\n\n"
