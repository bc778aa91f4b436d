"""The filter API that `python:pkg.module:callable` filters and gRPC plugins share.

A filter is a callable taking a `FilterCall` and returning a `Verdict` (or None to pass); it may be async.
The same function runs in-process (`kind: python:mypkg.filters:no_secrets`) or out of process behind
`pipeline.plugins.sdk.serve` (`kind: plugin:/path/to/executable`).

    from pipeline.sdk import FilterCall, Verdict

    def no_secrets(call: FilterCall) -> Verdict | None:
        if "password" in str(call.body):
            return Verdict.block("mentions a password")
        return None
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

VerdictAction = Literal["pass", "block", "rewrite"]


class FilterCall(msgspec.Struct, kw_only=True):
    phase: str  # pre_auth | auth | post_auth | response
    filter: str  # the filter's configured name
    config: dict[str, Any] = {}  # the filter's `config` from the configuration
    # request phases: the request's JSON body; response: the answer's JSON, or one streamed event's
    body: Any = None
    # request_id, llm, vendor, model, app (after auth), operation (chat|embeddings|proxy), path (proxy),
    # stream ("true"/"false")
    metadata: dict[str, str] = {}
    streamed: bool = False  # response phase: `body` is one event of a streamed answer


class Verdict(msgspec.Struct, kw_only=True):
    action: VerdictAction = "pass"
    reason: str = ""  # for block: shown to the client after the filter's name
    body: Any = None  # for rewrite: the new JSON body

    @classmethod
    def allow(cls) -> Verdict:
        return cls()

    @classmethod
    def block(cls, reason: str = "") -> Verdict:
        return cls(action="block", reason=reason)

    @classmethod
    def rewrite(cls, body: Any) -> Verdict:
        return cls(action="rewrite", body=body)
