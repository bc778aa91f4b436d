"""The `auth` phase's second filter: the app may use this LLM (or route), and the model is one the LLM
allows (a route chooses its targets' models itself).

An app's grants are resolved at snapshot build (its `llms` that its owner may use: admins any, others
through their groups), so this is a set lookup and one precompiled full-match regex.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.errors import InvalidRequest, ModelNotAllowed
from providers.base import Operation

if TYPE_CHECKING:
    from gateway.context import RequestContext


class LlmAccess:
    name = "access"

    async def __call__(self, ctx: RequestContext) -> None:
        llm, app, call = ctx.llm, ctx.app, ctx.call
        assert llm is not None and app is not None and call is not None
        if llm.slug not in app.llms:
            raise ModelNotAllowed(f"app '{app.name}' may not use LLM '{llm.slug}'")
        if not call.model and call.op in (Operation.CHAT, Operation.EMBEDDINGS):
            if not llm.default_model:
                raise InvalidRequest(f"no model named, and LLM '{llm.slug}' has no default_model")
            call.model = llm.default_model
        if call.model and llm.allowed_models and not llm.allowed_models.fullmatch(call.model):
            raise ModelNotAllowed(f"model '{call.model}' is not allowed on LLM '{llm.slug}'")


class RouteAccess:
    """auth, for a route: the app is granted the route's slug, and the request leaves the model to it."""

    name = "access"

    async def __call__(self, ctx: RequestContext) -> None:
        route, app, call = ctx.route, ctx.app, ctx.call
        assert route is not None and app is not None and call is not None
        if route.slug not in app.llms:
            raise ModelNotAllowed(f"app '{app.name}' may not use route '{route.slug}'")
        if call.model and call.model != route.slug:
            raise InvalidRequest(f"route '{route.slug}' chooses the model: send model '{route.slug}' or none")
        call.model = route.price[1] if route.price else ""  # what the reservation is priced at
