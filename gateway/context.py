"""Per-request state: what later steps of the request's path need travels here, and nothing reaches back."""

from __future__ import annotations

import time
from collections.abc import Sequence
from random import getrandbits
from typing import TYPE_CHECKING, Any

from gateway.types import Scope
from pipeline.body import RequestBody
from providers.base import Call, Operation, Usage

if TYPE_CHECKING:
    from gateway.errors import TollgateError
    from pipeline.limits import Hold
    from sync.snapshot import AppEntry, LlmEntry, RouteEntry, Snapshot


class RequestContext:
    __slots__ = (
        "_body",
        "app",
        "attempt",
        "cache_key",
        "cache_status",
        "cache_ttl_s",
        "cache_value",
        "cache_vector",
        "call",
        "cost",
        "error_code",
        "filter",
        "headers",
        "hold",
        "llm",
        "op",
        "prior_cost",
        "prior_tokens",
        "query",
        "request_id",
        "response_headers",
        "response_model",
        "response_started",
        "route",
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
        self.filter = ""  # the filter that blocked the request or its answer
        self._body: RequestBody | None = None
        self.hold: Hold | None = None  # what the request holds against limits and budgets until settled
        # added to the answer (x-ratelimit-*); a list is made only when there are some
        self.response_headers: Sequence[tuple[bytes, bytes]] = ()
        self.route: RouteEntry | None = None  # the route called, when it is one (gateway/routing.py)
        self.attempt = 1
        self.prior_cost = 0.0  # a route's earlier attempts: billed, and settled with the last one
        self.prior_tokens = 0
        self.cache_key: str | None = None  # set on a cache miss that may be stored (gateway/cache.py)
        self.cache_ttl_s = 0.0
        self.cache_value: bytes | None = None  # the complete answer, to store once it went out
        self.cache_status = ""  # HIT, SEMANTIC_HIT, MISS or BYPASS when the cache applies
        self.cache_vector: tuple[str, Any, Any] | None = None  # semantic: (bucket, vector, negations)

    def fail(self, error: TollgateError) -> None:
        self.status = error.status
        self.error_code = error.code
        blocked_by = getattr(error, "filter", None)
        if blocked_by:
            self.filter = blocked_by

    @property
    def body(self) -> RequestBody:
        """The request's JSON for content filters, parsed on first use (pipeline/body.py)."""
        if self._body is None:
            assert self.call is not None
            self._body = RequestBody(self.call)
        return self._body

    def reset_body(self) -> None:
        """Forget the parsed body: filters read `call`'s afresh (a route's next attempt has its own copy)."""
        self._body = None

    def commit_body(self) -> bool:
        """Write a body that filters edited back into the call; True when there was one."""
        return self._body is not None and self._body.commit()

    @property
    def model(self) -> str:
        return self.call.model if self.call else ""

    @property
    def stream(self) -> bool:
        return self.call.stream if self.call else False
