"""An edge's admin port: its sync status, and nothing to configure (its configuration is its hub's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.app import JSON, AdminAuth, http_error, tollgate_error
from gateway.errors import Forbidden, TollgateError
from gateway.types import ASGIApp
from store.base import Store

if TYPE_CHECKING:
    from sync.edge import EdgeAgent


def build_edge_admin_app(agent: EdgeAgent, store: Store, admin_token: str | None) -> ASGIApp:
    async def sync(request: Request) -> Response:
        return JSON(agent.status())

    async def healthz(request: Request) -> Response:
        return JSON({"status": "ok"})

    async def hub_owned(request: Request) -> Response:
        raise Forbidden(
            f"this is an edge: its configuration comes from its hub ({agent.settings.hub}); change it there"
        )

    routes = [
        Route("/healthz", healthz),
        Route("/api/v1/sync", sync),
        Route("/api/v1/{rest:path}", hub_owned, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={TollgateError: tollgate_error, HTTPException: http_error},  # type: ignore[dict-item]
    )
    return AdminAuth(app, store, admin_token)
