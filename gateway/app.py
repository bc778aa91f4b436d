"""The gateway's ASGI app (port 9090): LLM traffic goes straight to the handler, the rest to Starlette."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.handler import GatewayHandler
from gateway.runtime import Runtime
from gateway.types import ASGIReceive, ASGISend, Scope


class GatewayApp:
    """Dispatch by path prefix. Starlette's router and middleware in front of a pass-through cost 11 µs of
    CPU a request, 7% of its throughput (bench/clients.py, bench/README.md), so the LLM prefixes bypass
    them; everything else is plain Starlette."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.handler = GatewayHandler(runtime)
        self.other = Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", self.metrics),
            ]
        )

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/openai/") or path.startswith("/proxy/"):
                await self.handler(scope, receive, send)
                return
        await self.other(scope, receive, send)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        rt = self.runtime
        snapshot = rt.snapshot
        warnings = list(snapshot.warnings)
        if rt.counters_degraded:
            warnings.append(
                "Redis is unreachable: limits and budgets are counted on this host until it is back"
            )
        warnings += [f"plugin '{p.name}' is not answering" for p in rt.plugins if not p.ready]
        if rt.semantic_problem:
            warnings.append(rt.semantic_problem)
        if rt.store_problem:
            warnings.append(rt.store_problem)
        sync = rt.sync_status() if rt.sync_status is not None else None
        if sync is not None and not sync["hub_connected"]:
            state = "the cached snapshot" if snapshot.version >= 0 else "nothing until it answers"
            warnings.append(f"the hub {sync['hub']} is unreachable: serving {state}")
        detail = {
            "config_version": snapshot.version,
            "llms": len(snapshot.llms),
            "apps": len(snapshot.apps),
            "counters": rt.counters.name,  # where limits and budgets are counted: local, host or redis
            "warnings": warnings,
        }
        if sync is not None:
            detail["sync"] = sync
        if rt.draining:
            return JSONResponse({"status": "draining", **detail}, status_code=503)
        if snapshot.version < 0:
            return JSONResponse({"status": "loading", **detail}, status_code=503)
        return JSONResponse({"status": "ready", **detail})

    async def metrics(self, request: Request) -> Response:
        body, content_type = self.runtime.metrics.render()
        return PlainTextResponse(body, media_type=content_type)
