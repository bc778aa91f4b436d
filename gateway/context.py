"""Per-request state: what later steps of the request's path need travels here, and nothing reaches back."""

from __future__ import annotations

import time
from random import getrandbits
from typing import TYPE_CHECKING

from gateway.types import Scope
from providers.base import Call, Operation, Usage

if TYPE_CHECKING:
    from gateway.errors import TollgateError
    from sync.snapshot import AppEntry, LlmEntry, Snapshot


class RequestContext:
    __slots__ = (
        "app",
        "call",
        "cost",
        "error_code",
        "headers",
        "llm",
        "op",
        "query",
        "request_id",
        "response_model",
        "response_started",
        "snapshot",
        "started",
        "status",
        "timestamp",
        "upstream_s",
        "usage",
    )

    def __init__(self, snapshot: Snapshot, scope: Scope) -> None:
        self.snapshot = snapshot
        self.timestamp = time.time()
        self.started = time.perf_counter()
        self.request_id = f"{getrandbits(64):016x}"  # an id, not a secret: os.urandom costs 13 µs
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self.query: bytes = scope.get("query_string", b"")
        self.op: Operation | None = None
        self.llm: LlmEntry | None = None
        self.app: AppEntry | None = None
        self.call: Call | None = None
        self.status = 0
        self.error_code = ""
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.cost = 0.0
        self.upstream_s = 0.0
        self.response_started = False

    def fail(self, error: TollgateError) -> None:
        self.status = error.status
        self.error_code = error.code

    @property
    def model(self) -> str:
        return self.call.model if self.call else ""

    @property
    def stream(self) -> bool:
        return self.call.stream if self.call else False
