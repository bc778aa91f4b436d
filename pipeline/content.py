"""Request filters on the body: text rules over the prompt, prompt size, and required/stripped fields.

Each reads the body through `ctx.body` (parsed on first use, written back once after the request phases).
A refusal is `ContentBlocked` naming the filter, never what matched (INTERFACE.md, "Filters").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.errors import ContentBlocked
from pipeline.base import TextRule
from pipeline.slots import request_texts
from pipeline.textstream import mask_request
from providers import tokens
from providers.base import Operation
from sync.model import Filter

if TYPE_CHECKING:
    from gateway.context import RequestContext


class TextFilter:
    """A text rule (pii_redact, regex_block) over every prompt text of the request."""

    def __init__(self, rule: TextRule) -> None:
        self.name = rule.name
        self.rule = rule

    async def __call__(self, ctx: RequestContext) -> None:
        body = ctx.body
        if mask_request(body.doc, (self.rule,)):
            body.changed()


class MaxPromptTokens:
    """Refuses a prompt longer than `max` tokens (every message, counted as tiktoken counts them)."""

    def __init__(self, spec: Filter) -> None:
        self.name = spec.name
        self.max = int(spec.config["max"])

    async def __call__(self, ctx: RequestContext) -> None:
        body = ctx.body
        if body.doc is None:
            return
        # a prompt of fewer bytes than `max` cannot have more tokens: skip the tokenizer
        assert ctx.call is not None
        if len(ctx.call.body) <= self.max:
            return
        if _prompt_tokens(ctx, body.doc) > self.max:
            raise ContentBlocked(self.name, f"the prompt is longer than {self.max} tokens")


def _prompt_tokens(ctx: RequestContext, doc: Any) -> int:
    assert ctx.call is not None
    if ctx.call.op is Operation.CHAT:  # OpenAI's own way of counting a chat prompt
        return tokens.count_chat_prompt(ctx.call.body)
    return sum(tokens.count_text(container[key]) for container, key in request_texts(doc))


class RequireFields:
    def __init__(self, spec: Filter) -> None:
        self.name = spec.name
        self.fields = tuple(spec.config["fields"])

    async def __call__(self, ctx: RequestContext) -> None:
        doc = ctx.body.doc
        missing = [f for f in self.fields if not isinstance(doc, dict) or f not in doc]
        if missing:
            raise ContentBlocked(self.name, f"the request must set {', '.join(missing)}")


class StripFields:
    def __init__(self, spec: Filter) -> None:
        self.name = spec.name
        self.fields = tuple(spec.config["fields"])

    async def __call__(self, ctx: RequestContext) -> None:
        body = ctx.body
        doc = body.doc
        if not isinstance(doc, dict):
            return
        removed = [doc.pop(f) for f in self.fields if f in doc]
        if removed:
            body.changed()
