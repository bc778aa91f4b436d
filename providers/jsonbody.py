"""Edit a client's JSON body without re-encoding what the gateway does not change."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import InvalidRequest


def prepend_fields(body: bytes, fields: dict[str, Any]) -> bytes:
    """`body` (a JSON object that has none of `fields`) with `fields` added as its first members."""
    start = body.index(b"{") + 1
    members = orjson.dumps(fields)[1:-1]
    rest = body[start:]
    separator = b"" if rest.lstrip()[:1] == b"}" else b","
    return body[:start] + members + separator + rest


def merge_fields(body: bytes, fields: dict[str, Any]) -> bytes:
    """`body` re-encoded with `fields` merged in (an object merges into an object one level deep).

    The slow path, for when a field exists already."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body cannot be re-encoded: {exc}") from None
    for name, value in fields.items():
        current = obj.get(name)
        obj[name] = {**current, **value} if isinstance(current, dict) and isinstance(value, dict) else value
    return orjson.dumps(obj)
