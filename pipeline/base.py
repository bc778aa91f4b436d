"""What a filter is. Every phase's steps are one of three shapes:

- a `RequestFilter` (pre_auth, auth, post_auth): an async callable on the request's context that passes
  (returns), refuses (raises a `TollgateError`, `ContentBlocked` for content) or rewrites the call;
- a `TextRule` (pii_redact, regex_block, response_regex): finds spans in a text and masks or blocks them;
  the chain runs it over the prompt's texts, over an answer's texts, and over a stream with a holdback so
  matches split across chunks are still found;
- an `EventFilter` (python: and plugin: filters in the response phase): sees the whole answer (parsed
  JSON) or each streamed event, and may rewrite it or block it.

`FilterCall` and `Verdict` are the public shape a `python:` filter and a gRPC plugin see (pipeline/sdk.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from gateway.context import RequestContext

Action = Literal["mask", "block"]


class Span(NamedTuple):
    start: int
    end: int
    label: str  # what replaces it when masked: [REDACTED:<label>]


class RequestFilter(Protocol):
    name: str

    async def __call__(self, ctx: RequestContext) -> None:
        """Pass (return), refuse (raise a TollgateError) or rewrite the call in `ctx`."""


class TextRule(Protocol):
    name: str  # the filter's name (named by a block, recorded in analytics)
    action: Action
    holdback: int  # the longest match a stream must hold back to see whole, in characters

    def find(self, text: str) -> list[Span]:
        """Non-overlapping matches, in order."""


class EventFilter(Protocol):
    name: str

    async def __call__(self, ctx: RequestContext, doc: Any, streamed: bool) -> Any:
        """The answer `doc` (a parsed JSON answer, or one streamed event's JSON when `streamed`), possibly
        rewritten; raises ContentBlocked to block it."""
