"""A call to a route: attempts on its targets until one answers (INTERFACE.md, "Routes and response cache").

The route's chain has run once (the app key, the grant, global filters, limits: the request counts
once). Each attempt sends the call to a target chosen by `pipeline/routing.py`, through that target's
own request filters (its `filters:` list, on the attempt's copy of the call) and its own rate limit
and budget (a target at its limit is passed over for the next one, with no call made), translated by
its own adapter, through the ordinary relay (whose response phase is the target's). A failure listed in
`retry.on` moves to an untried healthy target (the same one when it is the only one) after a backoff
with jitter; 400, 401, 403, 404 and 422 are never retried; a failure listed in `fallback.on` goes
straight to `fallback.to`. A stream fails over only before its first chunk reached the client. Each
failed attempt is recorded (and billed what it reported) on its own; the last one is the request's own
record.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import msgspec

from gateway import relay
from gateway.context import RequestContext
from gateway.errors import (
    BudgetExceeded,
    LlmNotFound,
    NoHealthyTargets,
    RateLimited,
    TollgateError,
    UpstreamStatus,
    UpstreamTimeout,
    retry_after,
)
from gateway.request import ClientGone, reparse
from gateway.runtime import Runtime
from gateway.types import ASGIReceive, ASGISend
from pipeline.limits import Hold, admit_target, book
from pipeline.routing import NEVER_RETRIED, Target, failure
from providers.base import Call
from sync.snapshot import LlmEntry, RouteEntry

MAX_FALLBACKS = 3  # fallback.to may be a route with a fallback of its own: a chain this long at most


async def forward(
    rt: Runtime,
    ctx: RequestContext,
    receive: ASGIReceive,
    send: ASGISend,
    record: Callable[[RequestContext], None],
) -> None:
    """Serve `ctx` (a call to `ctx.route`, past its chain) from the route's targets."""
    route = ctx.route
    assert route is not None and ctx.call is not None
    original = ctx.call
    headers = list(ctx.response_headers)
    try:
        async with asyncio.timeout(route.deadline_s):
            await _attempts(rt, ctx, route, original, headers, receive, send, record, MAX_FALLBACKS)
    except TimeoutError:
        if ctx.response_started:
            raise
        raise UpstreamTimeout(f"route '{route.slug}': no answer within {route.deadline_s:g} s") from None


async def _pause(seconds: float, receive: ASGIReceive) -> None:
    """The backoff before a retry; a client that leaves meanwhile ends the call (no attempt is made for
    nobody). Only here is the client watched: during an attempt the relay does it for streams."""
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait((gone,), timeout=seconds)
        if gone.done():
            raise ClientGone()
    finally:
        gone.cancel()


async def _disconnect(receive: ASGIReceive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _attempts(
    rt: Runtime,
    ctx: RequestContext,
    route: RouteEntry,
    original: Call,
    headers: list[tuple[bytes, bytes]],
    receive: ASGIReceive,
    send: ASGISend,
    record: Callable[[RequestContext], None],
    fallbacks: int,
) -> None:
    state = rt.services.routing.state(route.slug)
    tried: set[int] = set()
    retries = route.retry.attempts
    target = _next_target(rt, route, tried)
    if target is None:
        wait = max(1, math.ceil(state.next_ready(route.targets, time.monotonic())))
        raise NoHealthyTargets(
            f"route '{route.slug}': every target cools down after failures; retry after {wait} s",
            headers={"Retry-After": str(wait)},
        )
    while True:
        tried.add(target.index)
        llm = ctx.snapshot.llms.get(target.llm)
        if llm is None:  # the snapshot was built with it; only a race with a reload gets here
            raise LlmNotFound(f"route '{route.slug}': target '{target.llm}' is gone")
        try:
            hold = await _aim(rt, ctx, llm, original, target.model)
        except (RateLimited, BudgetExceeded):
            # The target is at its own limit: the next one serves, with no call made and none counted.
            following = _next_target(rt, route, tried)
            if following is None or following is target:
                raise  # every target is at its limit: that is the answer (429 or 402)
            _counter(rt, route.slug, target.llm, "limited").inc()
            target = following
            continue
        ctx.response_headers = [
            *headers,
            (b"x-tollgate-target", target.llm.encode()),
            (b"x-tollgate-attempts", str(ctx.attempt).encode()),
        ]
        health = state.of(target)
        health.inflight += 1
        try:
            await _relay(rt, ctx, hold, receive, send)
        except TollgateError as error:
            if ctx.response_started:  # the client has part of an answer: no failing over now
                raise
            kind = failure(error)
            cooldown = route.cooldown
            counts = kind in route.retry.on or kind in ("timeout", "connect") or _is_server_error(kind)
            now = time.monotonic()
            if counts and state.failed(target, now, cooldown.fails, cooldown.window_s, cooldown.duration_s):
                rt.metrics.route_cooldowns.labels(route.slug, target.llm).inc()
            if counts and rt.cooldowns is not None:  # and counted across gateways (gateway/cooldowns.py)
                member = f"{ctx.request_id}:{ctx.attempt}"
                rt.cooldowns.report(
                    route.slug, target.llm, cooldown.fails, cooldown.window_s, cooldown.duration_s, member
                )
            _counter(rt, route.slug, target.llm, "failed").inc()
            fallback = route.fallback
            if fallback is not None and kind in fallback.on and fallbacks > 0:
                ctx.fail(error)
                _next_attempt(ctx, record)
                rt.metrics.route_failovers.labels(route.slug).inc()
                await _fall_back(rt, ctx, fallback.to, original, headers, receive, send, record, fallbacks)
                return
            if kind in NEVER_RETRIED or kind not in route.retry.on or retries <= 0:
                raise
            following = _next_target(rt, route, tried)
            delay = _backoff(route, ctx.attempt, error, rt, same_target=following is target)
            if following is None or delay is None:
                raise  # every target tried (or cooling down), or a Retry-After too long: this is the answer
            ctx.fail(error)
            _next_attempt(ctx, record)  # recorded now: a client gone during the backoff ends it all
            retries -= 1
            rt.metrics.route_failovers.labels(route.slug).inc()
            await _pause(delay, receive)
            target = following
            continue
        finally:
            health.inflight -= 1
        state.succeeded(target, ctx.upstream_s)
        _counter(rt, route.slug, target.llm, "answered").inc()
        return


def _counter(rt: Runtime, slug: str, target: str, outcome: str) -> Any:
    """tollgate_route_attempts_total's child for these labels, kept by the route's state (labels()
    costs more than the inc())."""
    children = rt.services.routing.state(slug).children
    child = children.get((target, outcome))
    if child is None:
        child = children[(target, outcome)] = rt.metrics.route_attempts.labels(slug, target, outcome)
    return child


def _next_target(rt: Runtime, route: RouteEntry, tried: set[int]) -> Target | None:
    """An untried healthy target, lowest tier first; the only target again when there is just one."""
    state = rt.services.routing.state(route.slug)
    now = time.monotonic()
    target = state.pick(route.strategy, route.targets, tried, now, rt.services.routing.rng)
    if target is None and len(route.targets) == 1 and state.of(route.targets[0]).cooled_until <= now:
        target = route.targets[0]
    return target


async def _fall_back(
    rt: Runtime,
    ctx: RequestContext,
    slug: str,
    original: Call,
    headers: list[tuple[bytes, bytes]],
    receive: ASGIReceive,
    send: ASGISend,
    record: Callable[[RequestContext], None],
    fallbacks: int,
) -> None:
    """`fallback.to`: another route (its own attempts) or an LLM (one attempt, its default model)."""
    route = ctx.snapshot.routes.get(slug)
    if route is not None:
        await _attempts(rt, ctx, route, original, headers, receive, send, record, fallbacks - 1)
        return
    llm = ctx.snapshot.llms.get(slug)
    if llm is None:
        raise LlmNotFound(f"fallback '{slug}' is not an LLM or route this gateway serves")
    hold = await _aim(rt, ctx, llm, original, llm.default_model or "")
    ctx.response_headers = [
        *headers,
        (b"x-tollgate-target", llm.slug.encode()),
        (b"x-tollgate-attempts", str(ctx.attempt).encode()),
    ]
    await _relay(rt, ctx, hold, receive, send)


async def _relay(
    rt: Runtime, ctx: RequestContext, hold: Hold | None, receive: ASGIReceive, send: ASGISend
) -> None:
    """One attempt through the relay; then what it used is booked against the target's own limits."""
    try:
        await relay.forward(rt.http, ctx, receive, send)
    finally:
        if hold is not None:
            book(rt.counters, hold, ctx.usage.total_tokens if ctx.usage else 0, ctx.cost)


async def _aim(rt: Runtime, ctx: RequestContext, llm: LlmEntry, original: Call, model: str) -> Hold | None:
    """Point `ctx` at `llm` with its own copy of the call, through the LLM's own request filters (a block
    raises: the request is refused, not retried elsewhere), then its own rate limit and budget (a refusal
    raises RateLimited or BudgetExceeded). Returns what the attempt holds against those limits."""
    ctx.llm = llm
    ctx.call = msgspec.structs.replace(original, model=model, model_in_body=False)
    if llm.chain.own:
        ctx.reset_body()
        if await llm.chain.run_own(ctx):
            ctx.call = msgspec.structs.replace(reparse(ctx.call), model=model, model_in_body=False)
    return await admit_target(rt.counters, ctx)


def _next_attempt(ctx: RequestContext, record: Callable[[RequestContext], None]) -> None:
    """Record the attempt that just failed, carry what it cost, and start the next one afresh."""
    record(ctx)
    ctx.prior_cost += ctx.cost
    ctx.prior_tokens += ctx.usage.total_tokens if ctx.usage else 0
    ctx.cost = 0.0
    ctx.usage = None
    ctx.status, ctx.error_code = 0, ""
    ctx.upstream_s = 0.0
    ctx.attempt += 1


def _backoff(
    route: RouteEntry, attempt: int, error: TollgateError, rt: Runtime, *, same_target: bool
) -> float | None:
    """Seconds before the next attempt: exponential with jitter; when the same target is asked again and
    the route respects it, the upstream's Retry-After, or None when that is longer than
    `max_retry_after_s` (then the error is the answer)."""
    retry = route.retry
    delay: float = retry.backoff_ms / 1000 * 2 ** (attempt - 1) * rt.services.routing.rng.uniform(0.5, 1.0)
    if same_target and retry.respect_retry_after and isinstance(error, UpstreamStatus):
        asked = next((v for k, v in error.headers.items() if k.lower() == "retry-after"), None)
        seconds = retry_after(asked) if asked is not None else None
        if seconds is not None:
            if float(seconds) > retry.max_retry_after_s:
                return None
            delay = max(delay, float(seconds))
    return delay


def _is_server_error(kind: int | str) -> bool:
    return isinstance(kind, int) and (kind >= 500 or kind == 429)
