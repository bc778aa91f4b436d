"""The ordered filter chain: pre_auth → auth → post_auth → (upstream) → response.

A chain is composed once per LLM per snapshot (never per request). Built-in checks are filters like any
other, so `compose` is the one place that shows the order of every step:

    pre_auth    global filters, then the LLM's, in order
    auth        app key → app (pipeline/auth.py); app may use the LLM and model (pipeline/access.py)
    post_auth   global filters, then the LLM's; then rate limits and budgets (pipeline/limits.py), last,
                so a request that a filter refuses costs no quota
    upstream    the provider adapter and the relay (gateway/relay.py)
    response    text rules and event filters on the answer, streamed ones event by event
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from pipeline.access import LlmAccess
from pipeline.auth import AppKeyAuth
from pipeline.base import EventFilter, RequestFilter, TextRule
from pipeline.limits import Limits
from pipeline.registry import FILTER_KINDS, Services, is_text_rule
from sync.model import Filter

if TYPE_CHECKING:
    from gateway.context import RequestContext

REQUEST_PHASES = ("pre_auth", "auth", "post_auth")


class Chain(msgspec.Struct, frozen=True):
    request: tuple[RequestFilter, ...]  # the request phases, flattened in order
    rules: tuple[TextRule, ...]  # response: text rules (masks and blocks on the answer's texts)
    events: tuple[EventFilter, ...]  # response: python:/plugin: filters on the answer or each event
    order: tuple[tuple[str, str], ...]  # (phase, step name), for /readyz and the docs
    responds: bool  # the answer goes through the response phase (else it is relayed untouched)
    # The LLM's own request filters (its `filters:` list, no global one, no auth, no limits), in phase
    # order: a route whose chain ran once runs these on each attempt this LLM serves.
    own: tuple[RequestFilter, ...] = ()

    async def run_request(self, ctx: RequestContext) -> bool:
        """Run the request phases; True when a filter rewrote the body."""
        for step in self.request:
            await step(ctx)
        return ctx.commit_body()

    async def run_own(self, ctx: RequestContext) -> bool:
        """Run the LLM's own request filters (a route's attempt on it); True when one rewrote the body."""
        for step in self.own:
            await step(ctx)
        return ctx.commit_body()

    def names(self) -> list[str]:
        return [name for _, name in self.order]


def compose(
    configured: Iterable[Filter], services: Services, access: RequestFilter | None = None
) -> tuple[Chain, list[tuple[Filter, str]]]:
    """The chain for an LLM whose filters (global ones first, then its own in order) are `configured`.

    Returns the chain and the filters that could not be built, with why, which the caller reports.
    """
    steps: dict[str, list[Any]] = {
        "pre_auth": [],
        "auth": [AppKeyAuth(services.credentials), access or LlmAccess()],
        "post_auth": [],
    }
    own: dict[str, list[Any]] = {phase: [] for phase in REQUEST_PHASES}
    rules: list[TextRule] = []
    events: list[EventFilter] = []
    broken: list[tuple[Filter, str]] = []
    for spec in configured:
        factory = FILTER_KINDS.get(spec.kind.partition(":")[0] + ":" if ":" in spec.kind else spec.kind)
        if factory is None:
            broken.append((spec, f"kind {spec.kind} is not built"))
            continue
        try:
            step = factory(spec, services)
        except (ValueError, ImportError, OSError) as exc:
            broken.append((spec, str(exc)))
            continue
        if spec.phase != "response":
            steps[spec.phase].append(step)
            if not spec.global_:
                own[spec.phase].append(step)
        elif is_text_rule(step):
            rules.append(step)
        else:
            events.append(step)
    steps["post_auth"].append(Limits(services.counters))
    request = tuple(step for phase in REQUEST_PHASES for step in steps[phase])
    order = tuple((phase, step.name) for phase in REQUEST_PHASES for step in steps[phase])
    order += tuple(("response", rule.name) for rule in rules)
    order += tuple(("response", event.name) for event in events)
    mine = tuple(step for phase in REQUEST_PHASES for step in own[phase])
    return Chain(request, tuple(rules), tuple(events), order, bool(rules or events), mine), broken


__all__ = ["Chain", "Services", "compose"]
