"""The request body as content filters see it: parsed once, on the first filter that asks, and written
back for the upstream only when a filter changed it (a request no filter reads is never parsed)."""

from __future__ import annotations

from typing import Any

import orjson

from providers.base import Call


class RequestBody:
    __slots__ = ("_call", "_doc", "_parsed", "dirty")

    def __init__(self, call: Call) -> None:
        self._call = call
        self._doc: Any = None
        self._parsed = False
        self.dirty = False

    @property
    def doc(self) -> Any:
        """The body's JSON (a dict for every JSON API); None when it is empty or not JSON."""
        if not self._parsed:
            self._parsed = True
            if self._call.body:
                try:
                    self._doc = orjson.loads(self._call.body)
                except orjson.JSONDecodeError:
                    self._doc = None
        return self._doc

    def changed(self) -> None:
        """A filter edited `doc` in place."""
        self.dirty = True

    def replace(self, doc: Any) -> None:
        self._doc, self._parsed, self.dirty = doc, True, True

    def commit(self) -> bool:
        """Write an edited body back into the call (once, after the request phases)."""
        if not self.dirty:
            return False
        self._call.body = orjson.dumps(self._doc)
        self.dirty = False
        return True
