"""The ordered filter chain a request runs through: pre_auth → auth → post_auth → upstream → response.

A chain is composed once per LLM per snapshot (never per request). Built-in checks are filters like any
other, so the order is visible in one place: `compose`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import msgspec

from pipeline.access import LlmAccess
from pipeline.auth import AppKeyAuth
from pipeline.registry import FILTER_KINDS
from sync.model import Filter

if TYPE_CHECKING:
    from gateway.context import RequestContext

REQUEST_PHASES = ("pre_auth", "auth", "post_auth")


class RequestFilter(Protocol):
    name: str

    async def __call__(self, ctx: RequestContext) -> None:
        """Pass (return), refuse (raise a TollgateError) or rewrite the call in `ctx`."""


class Chain(msgspec.Struct, frozen=True):
    phases: dict[str, tuple[RequestFilter, ...]]
    request: tuple[RequestFilter, ...]  # the request phases, flattened in order

    async def run_request(self, ctx: RequestContext) -> None:
        for step in self.request:
            await step(ctx)

    def names(self) -> list[str]:
        return [step.name for step in self.request]


BUILT_IN: dict[str, tuple[RequestFilter, ...]] = {
    "pre_auth": (),
    "auth": (AppKeyAuth(), LlmAccess()),
    "post_auth": (),
}


def compose(configured: Iterable[Filter]) -> tuple[Chain, list[Filter]]:
    """The chain for an LLM whose filters (global ones first, then its own in order) are `configured`.

    Returns the chain and the filters whose kind is not built yet, which the caller reports.
    """
    phases = {phase: list(BUILT_IN[phase]) for phase in REQUEST_PHASES}
    missing = []
    for spec in configured:
        factory = FILTER_KINDS.get(spec.kind)
        if factory is None or spec.phase not in phases:
            missing.append(spec)
            continue
        phases[spec.phase].append(factory(spec))
    frozen = {phase: tuple(steps) for phase, steps in phases.items()}
    return Chain(frozen, tuple(step for phase in REQUEST_PHASES for step in frozen[phase])), missing
