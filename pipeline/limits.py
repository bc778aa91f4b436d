"""Rate limits and monthly budgets: the last step of post_auth, and the settlement after the answer.

`Limits` asks the counters (pipeline/counters/) once per request: every window (app, LLM) and budget
(app, LLM) is checked and the request counted and its estimated cost reserved in one atomic step, so
concurrency cannot slip past a limit. `settle` books each admitted request when its answer has
ended: its tokens count against tpm, its real cost against the budgets, and its reservation is released.

The reservation is an upper bound, not a guess: the prompt's UTF-8 bytes stand for its tokens (every
token of a byte-level BPE is at least one byte; tiktoken would cost 165 µs per 2 KB and undercount other
vendors' tokenizers) plus the call's output cap (`max_tokens` and its vendor spellings, else
DEFAULT_OUTPUT_TOKENS), priced at the model's rates. So the spend can pass a budget by one call's
reservation at most (INTERFACE.md: "concurrency overshoots by one call at most").
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from gateway.errors import BudgetExceeded, RateLimited
from pipeline.counters.base import NANO_USD, Answer, Ask, Budget, Counters, Settle, Window, WindowState
from providers.base import Operation

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from sync.model import RateLimit

log = logging.getLogger("tollgate.limits")

DEFAULT_OUTPUT_TOKENS = 4096
_RESERVATION_SLACK_MS = 60_000  # a reservation outlives its call's timeout by this much
# Where vendors put the output cap: OpenAI, Anthropic and Mistral; Gemini; Bedrock Converse; Ollama.
_OUTPUT_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


class Hold:
    """What an admitted request holds until it settles (kept on the request's context)."""

    __slots__ = ("answer", "ask", "tpm_keys")

    def __init__(self, ask: Ask, answer: Answer, tpm_keys: tuple[str, ...]) -> None:
        self.ask = ask
        self.answer = answer
        self.tpm_keys = tpm_keys


class Limits:
    """post_auth's last step: admit the request against its app's and LLM's windows and budgets."""

    name = "limits"

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    async def __call__(self, ctx: RequestContext) -> None:
        app, llm = ctx.app, ctx.llm
        assert app is not None
        # Through a route (no LLM yet) the app's limits apply, once, whichever targets serve it.
        llm_window = llm.window if llm is not None else None
        llm_budget = llm.budget if llm is not None else None
        if app.window is None and llm_window is None and app.budget is None and llm_budget is None:
            return
        if ctx.op is Operation.MODELS:  # listing the models is not a call: it costs no quota
            return
        windows = tuple(w for w in (app.window, llm_window) if w is not None)
        budgets = tuple(b for b in (app.budget, llm_budget) if b is not None)
        hold_ms = llm.hold_ms if llm is not None else ctx.route.hold_ms if ctx.route else 660_000
        ask = Ask(
            windows=windows,
            budgets=budgets,
            month=_month(ctx.timestamp),
            reserve=reservation(ctx) if budgets else 0,
            reservation=ctx.request_id,
            hold_ms=hold_ms,
        )
        answer = await self.counters.admit(ask)
        if app.window is not None:
            ctx.response_headers = rate_headers(app.window, answer.windows[0])
        if not answer.allowed:
            raise _refusal(ctx, answer)
        tpm_keys = tuple(w.key for w in windows if w.tpm)
        ctx.hold = Hold(ask, answer, tpm_keys)


def settle(counters: Counters, ctx: RequestContext) -> None:
    """Book what an admitted request used (called once, when its answer has ended or failed)."""
    hold = ctx.hold
    if hold is None:
        return
    ctx.hold = None
    usage = ctx.usage
    book(counters, hold, (usage.total_tokens if usage else 0) + ctx.prior_tokens, ctx.cost + ctx.prior_cost)


def book(counters: Counters, hold: Hold, tokens: int, cost_usd: float) -> None:
    """Settle `hold` with what its call used."""
    counters.defer_settle(
        Settle(
            windows=hold.tpm_keys,
            tokens=tokens,
            budgets=tuple(b.key for b in hold.ask.budgets),
            month=hold.ask.month,
            reservation=hold.ask.reservation,
            cost=round(cost_usd * NANO_USD),
            reserved=hold.ask.reserve,
        )
    )


async def admit_target(counters: Counters, ctx: RequestContext) -> Hold | None:
    """A route's attempt on `ctx.llm`: admit it against that LLM's own rate limit and budget (the app's
    were counted once, for the route). Returns the hold to `book` after the attempt; raises the refusal."""
    llm = ctx.llm
    assert llm is not None
    if llm.window is None and llm.budget is None:
        return None
    windows = (llm.window,) if llm.window is not None else ()
    budgets = (llm.budget,) if llm.budget is not None else ()
    ask = Ask(
        windows=windows,
        budgets=budgets,
        month=_month(ctx.timestamp),
        reserve=reservation(ctx) if budgets else 0,
        reservation=f"{ctx.request_id}#{ctx.attempt}",
        hold_ms=llm.hold_ms,
    )
    answer = await counters.admit(ask)
    if not answer.allowed:
        raise _refusal(ctx, answer)
    return Hold(ask, answer, tuple(w.key for w in windows if w.tpm))


def reservation(ctx: RequestContext) -> int:
    """An upper bound of the call's cost, in nano-USD (0 when the model has no price)."""
    llm, call = ctx.llm, ctx.call
    assert call is not None
    if llm is not None:
        vendor = llm.vendor
    elif ctx.route is not None and ctx.route.price is not None:
        vendor = ctx.route.price[0]  # the dearest of its targets
    else:
        return 0
    rate = ctx.snapshot.prices.rate(vendor, call.model) if call.model else None
    if rate is None:
        return 0
    output = 0 if call.op is Operation.EMBEDDINGS else _output_cap(ctx.body.doc)
    return math.ceil((len(call.body) * rate.input + output * rate.output) * NANO_USD)


def _output_cap(doc: Any) -> int:
    if not isinstance(doc, dict):
        return DEFAULT_OUTPUT_TOKENS
    for key in _OUTPUT_CAPS:
        value = doc.get(key)
        if isinstance(value, int) and value > 0:
            return value
    nested = doc.get("generationConfig") or doc.get("generation_config") or doc.get("inferenceConfig")
    if isinstance(nested, dict):
        value = nested.get("maxOutputTokens") or nested.get("max_output_tokens") or nested.get("maxTokens")
        if isinstance(value, int) and value > 0:
            return value
    options = doc.get("options")
    if (
        isinstance(options, dict)
        and isinstance(options.get("num_predict"), int)
        and options["num_predict"] > 0
    ):
        return int(options["num_predict"])
    return DEFAULT_OUTPUT_TOKENS


def rate_headers(window: Window, state: WindowState) -> list[tuple[bytes, bytes]]:
    """OpenAI's x-ratelimit-* headers for the app's window."""
    headers = []
    if window.rpm:
        headers += [
            (b"x-ratelimit-limit-requests", str(window.rpm).encode()),
            (b"x-ratelimit-remaining-requests", str(max(state.requests_remaining, 0)).encode()),
            (b"x-ratelimit-reset-requests", _duration(state.requests_reset_ms)),
        ]
    if window.tpm:
        headers += [
            (b"x-ratelimit-limit-tokens", str(window.tpm).encode()),
            (b"x-ratelimit-remaining-tokens", str(max(state.tokens_remaining, 0)).encode()),
            (b"x-ratelimit-reset-tokens", _duration(state.tokens_reset_ms)),
        ]
    return headers


def _refusal(ctx: RequestContext, answer: Answer) -> Exception:
    kind, _, key = answer.refused.partition(":")
    who = _owner(ctx, key)
    if kind == "budget":
        return BudgetExceeded(f"the monthly budget of {who} is spent")
    seconds = max(1, math.ceil(answer.retry_after_ms / 1000))
    what = "requests" if kind == "rpm" else "tokens"
    return RateLimited(
        f"rate limit of {who} reached ({what} per minute); retry after {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def _owner(ctx: RequestContext, key: str) -> str:
    if key.startswith("app:") and ctx.app is not None:
        return f"app '{ctx.app.name}'"
    if key.startswith("llm:") and ctx.llm is not None:
        return f"LLM '{ctx.llm.slug}'"
    return key


def _duration(ms: int) -> bytes:
    """OpenAI's reset format: `1s`, `6m0s`, `250ms`."""
    if ms < 1000:
        return f"{max(ms, 0)}ms".encode()
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:g}s".encode()
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s".encode()


def _month(timestamp: float) -> str:
    """The UTC calendar month of `timestamp`, e.g. "2026-11"."""
    return _month_of_hour(int(timestamp // 3600))


@functools.lru_cache(maxsize=4)
def _month_of_hour(hour: int) -> str:  # strftime is not free; a month starts on an hour
    return time.strftime("%Y-%m", time.gmtime(hour * 3600))


def budget_for(key: str, usd: float | None) -> Budget | None:
    return None if usd is None else Budget(key, round(usd * NANO_USD))


def window_for(key: str, limit: RateLimit | None) -> Window | None:
    """The Window of a configured `rate_limit`, or None."""
    if limit is None or not (limit.rpm or limit.tpm):
        return None
    return Window(key, limit.rpm or 0, limit.tpm or 0)
