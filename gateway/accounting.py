"""Usage → cost, inline; and token counts from tiktoken when an upstream reported none."""

from __future__ import annotations

import logging

from gateway.context import RequestContext
from providers import tokens
from providers.base import Operation, StreamRelay, Usage
from sync.prices import Rate

log = logging.getLogger("tollgate.accounting")


def cost(rate: Rate, usage: Usage) -> float:
    """Cached prompt tokens are priced at the cache rates only; the rest of the prompt at the input rate."""
    uncached = max(usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens, 0)
    return (
        uncached * rate.input
        + usage.cache_write_tokens * rate.cache_write
        + usage.cache_read_tokens * rate.cache_read
        + usage.output_tokens * rate.output
    )


def settle(ctx: RequestContext, usage: Usage, response_model: str | None) -> None:
    """Book `usage` on the request, priced by the answering model (else the requested one)."""
    ctx.usage = usage
    ctx.response_model = response_model
    if ctx.llm is None:
        return
    prices = ctx.snapshot.prices
    rate = (response_model and prices.rate(ctx.llm.vendor, response_model)) or prices.rate(
        ctx.llm.vendor, ctx.model
    )
    if rate is None:
        if len(prices):
            log.debug("no price for %s model %r", ctx.llm.vendor, response_model or ctx.model)
        return
    ctx.cost = cost(rate, usage)


def estimate(ctx: RequestContext, relay: StreamRelay | None = None, answer: bytes | None = None) -> Usage:
    """Count with tiktoken what the upstream did not report: the prompt, and the answer (what a stream
    relayed so far, or the OpenAI-shaped `answer` of a complete one)."""
    call = ctx.call
    if call is None:
        return Usage()
    if call.op is Operation.EMBEDDINGS:
        return Usage(input_tokens=tokens.count_embedding_input(call.body))
    prompt = tokens.count_chat_prompt(call.body)
    if relay is not None:
        output = tokens.count_text(relay.completion_text())
    else:
        output = tokens.count_answer(answer) if answer else 0
    return Usage(input_tokens=prompt, output_tokens=output)
