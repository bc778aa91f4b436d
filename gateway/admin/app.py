"""The admin REST API (port 8080): config CRUD, analytics, OpenAPI. JSON in and out, errors OpenAI-shaped."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin import analytics
from gateway.admin.openapi import document
from gateway.admin.service import ConfigService, json_object
from gateway.errors import (
    ERRORS,
    Forbidden,
    InvalidApiKey,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    TollgateError,
)
from gateway.types import ASGIApp, ASGIReceive, ASGISend, Scope
from store.base import Store
from sync.entities import KINDS, from_stored, hash_key
from sync.snapshot import ADMIN_ROLES

if TYPE_CHECKING:
    from sync.hub import Hub

_PUBLIC = frozenset({"/healthz", "/openapi.json"})


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def build_admin_app(
    service: ConfigService, store: Store, admin_token: str | None, hub: Hub | None = None
) -> ASGIApp:
    """`hub`: in control mode, the edges' registry (`/api/v1/edges`, `/api/v1/edges/push`)."""
    openapi = document()

    def collection(kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if request.method == "POST":
                return JSON(await service.create(kind, await request.body()), status_code=201)
            return JSON({"data": await service.entities(kind)})

        return endpoint

    def member(kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            id = request.path_params["id"]
            if request.method == "PATCH":
                return JSON(await service.patch(kind, id, await request.body()))
            if request.method == "DELETE":
                await service.delete(kind, id)
                return Response(status_code=204)
            return JSON(await service.get(kind, id))

        return endpoint

    async def interactions(request: Request) -> Response:
        return JSON({"data": await analytics.interactions(store, dict(request.query_params))})

    async def usage(request: Request) -> Response:
        state = await service.state()
        return JSON({"data": await analytics.usage(store, state, dict(request.query_params))})

    async def edges(request: Request) -> Response:
        if hub is None:
            raise NotFound("/api/v1/edges is served by a hub (tollgate serve --mode control)")
        return JSON({"data": hub.listing()})

    async def push(request: Request) -> Response:
        if hub is None:
            raise NotFound("/api/v1/edges/push is served by a hub (tollgate serve --mode control)")
        body = json_object(await request.body() or b"{}")
        namespace = body.get("namespace") or ""
        if not isinstance(namespace, str):
            raise InvalidRequest("'namespace' must be a string")
        return JSON(await hub.push(namespace))

    async def openapi_json(request: Request) -> Response:
        return JSON(openapi)

    async def healthz(request: Request) -> Response:
        return JSON({"status": "ok"})

    routes = [Route("/healthz", healthz), Route("/openapi.json", openapi_json)]
    routes += [Route("/api/v1/analytics/interactions", interactions), Route("/api/v1/analytics/usage", usage)]
    routes += [Route("/api/v1/edges", edges), Route("/api/v1/edges/push", push, methods=["POST"])]
    for kind in KINDS:
        routes.append(Route(f"/api/v1/{kind}", collection(kind), methods=["GET", "POST"]))
        routes.append(Route(f"/api/v1/{kind}/{{id:int}}", member(kind), methods=["GET", "PATCH", "DELETE"]))
    app = Starlette(
        routes=routes,
        exception_handlers={TollgateError: tollgate_error, HTTPException: http_error},  # type: ignore[dict-item]
    )
    return AdminAuth(app, store, admin_token)


class AdminAuth:
    """Bearer TOLLGATE_ADMIN_TOKEN, or the API key of a user whose role is admin or super_admin."""

    def __init__(self, app: ASGIApp, store: Store, admin_token: str | None) -> None:
        self.app = app
        self.store = store
        self.token = admin_token.encode() if admin_token else None

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http" or scope["path"] in _PUBLIC:
            await self.app(scope, receive, send)
            return
        try:
            await self._check(dict(scope["headers"]).get(b"authorization", b""))
        except TollgateError as error:
            response = JSON({"error": _error_fields(error)}, status_code=error.status)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _check(self, header: bytes) -> None:
        if header[:7].lower() != b"bearer ":
            raise InvalidApiKey("missing admin token: send 'Authorization: Bearer <token>'")
        token = header[7:].strip()
        if self.token is not None and hmac.compare_digest(token, self.token):
            return
        row = await self.store.find("users", key_hash=hash_key(token.decode("latin-1")))
        if row is None:
            raise InvalidApiKey("invalid admin token")
        if from_stored(KINDS["users"], row).entity.role not in ADMIN_ROLES:
            raise Forbidden("this user's role may not use the admin API")


def _error_fields(error: TollgateError) -> dict[str, Any]:
    return {"message": error.message, "type": error.type, "code": error.code, "param": None}


async def tollgate_error(request: Request, error: TollgateError) -> Response:
    return JSON({"error": _error_fields(error)}, status_code=error.status, headers=error.headers)


async def http_error(request: Request, exc: HTTPException) -> Response:
    error: TollgateError
    if exc.status_code == 404:
        error = NotFound(f"no such endpoint: {request.url.path}")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    else:
        code = next((c for c, (status, _) in ERRORS.items() if status == exc.status_code), "invalid_request")
        error = TollgateError(str(exc.detail))
        error.code = code
    return JSON({"error": _error_fields(error)}, status_code=error.status)
