"""The plugin's side: `serve(handler)` runs a filter function as a Tollgate plugin.

    #!/usr/bin/env python3
    from pipeline.plugins.sdk import serve
    from pipeline.sdk import FilterCall, Verdict

    def guard(call: FilterCall) -> Verdict | None:
        if "password" in str(call.body):
            return Verdict.block("mentions a password")
        return None

    serve(guard)

The gateway starts the executable with `TOLLGATE_PLUGIN_ADDRESS` set (a `unix://` socket address) and
stops it with SIGTERM. The handler gets the same `FilterCall` a `python:` filter gets and may be async;
a sync handler runs on the server's event loop, so one that blocks should be async (or use a thread).
A handler that raises fails the call: the gateway applies the filter's `fail` policy.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import orjson

from pipeline.plugins.host import MESSAGE_OPTIONS, PHASE_METHODS
from pipeline.plugins.plugin_pb2 import FilterRequest, FilterResponse
from pipeline.sdk import FilterCall, Verdict

log = logging.getLogger("tollgate.plugin")

ADDRESS_ENV = "TOLLGATE_PLUGIN_ADDRESS"
GATEWAY_PID_ENV = "TOLLGATE_GATEWAY_PID"  # set by the gateway; the plugin stops when that process is gone
SERVICE = "tollgate.plugin.v1.FilterPlugin"
ACTIONS = {"pass": FilterResponse.PASS, "block": FilterResponse.BLOCK, "rewrite": FilterResponse.REWRITE}
PARENT_CHECK_S = 1.0
# gRPC cancels calls at random past 1,000 queued; a plugin behind a busy gateway should only ever miss
# deadlines, which the gateway reports as such.
SERVER_OPTIONS = (
    *MESSAGE_OPTIONS,
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
)

Handler = Callable[[FilterCall], "Verdict | Awaitable[Verdict | None] | None"]
if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[FilterRequest, FilterResponse]
    Rpc = Callable[[FilterRequest, Context], Awaitable[FilterResponse]]


def serve(handler: Handler) -> None:
    """Serve `handler` on `$TOLLGATE_PLUGIN_ADDRESS` until SIGTERM or SIGINT (or the gateway is gone)."""
    address = os.environ.get(ADDRESS_ENV)
    if not address:
        sys.exit(f"{ADDRESS_ENV} is not set: a Tollgate plugin is started by the gateway (kind: plugin:...)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(handler, address))


async def _serve(handler: Handler, address: str) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((_rpc_handlers(handler),))
    server.add_insecure_port(address)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    orphaned = loop.create_task(_watch_parent(stop))
    await stop.wait()
    orphaned.cancel()
    await server.stop(grace=1.0)


async def _watch_parent(stop: asyncio.Event) -> None:
    """Stop when the gateway that started us is gone (killed without a chance to stop us)."""
    parent = os.getppid()
    gateway = int(os.environ.get(GATEWAY_PID_ENV) or 0)  # also seen if it died before we got here
    while os.getppid() == parent and _exists(gateway):
        await asyncio.sleep(PARENT_CHECK_S)
    log.warning("the gateway is gone; stopping")
    stop.set()


def _exists(pid: int) -> bool:
    if pid:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return True


def _rpc_handlers(handler: Handler) -> grpc.GenericRpcHandler:
    methods = {
        method: grpc.unary_unary_rpc_method_handler(
            _phase_handler(phase, handler),
            request_deserializer=FilterRequest.FromString,
            response_serializer=FilterResponse.SerializeToString,
        )
        for phase, method in PHASE_METHODS.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def _phase_handler(phase: str, handler: Handler) -> Rpc:
    async def handle(request: FilterRequest, context: Context) -> FilterResponse:
        call = to_call(phase, request)
        try:
            verdict = handler(call)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            return to_response(verdict)
        except Exception as error:  # reported to the gateway as a failed call, and logged here
            log.exception("filter %s failed in %s", request.filter, phase)
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    return handle


def to_call(phase: str, request: FilterRequest) -> FilterCall:
    config: dict[str, Any] = orjson.loads(request.config_json) if request.config_json else {}
    body = orjson.loads(request.body) if request.body else None
    metadata = dict(request.metadata)
    return FilterCall(
        phase=phase,
        filter=request.filter,
        config=config,
        body=body,
        metadata=metadata,
        streamed=request.streamed,
    )


def to_response(verdict: object) -> FilterResponse:
    if verdict is None:
        return FilterResponse()
    if not isinstance(verdict, Verdict):
        raise TypeError(f"a filter returns a Verdict or None, not {type(verdict).__name__}")
    body = orjson.dumps(verdict.body) if verdict.action == "rewrite" else b""
    return FilterResponse(action=ACTIONS[verdict.action], reason=verdict.reason, body=body)
