"""The request's path for `/openai/{llm}/v1/...` and `/proxy/{llm}/{path}`, one step per call:

endpoint → LLM → body → call → chain (pre_auth, auth, post_auth) → provider → relay → accounting → record.

A raw ASGI callable: the hot path skips Starlette's router and Request/Response objects (bench/README.md
says what that saves). Every refusal is a TollgateError, rendered here in one place and
recorded like any other interaction.
"""

from __future__ import annotations

import logging
import time

import orjson

from gateway import cache, relay, routing
from gateway.context import RequestContext
from gateway.errors import InternalError, InvalidRequest, LlmNotFound, NotReady, TollgateError
from gateway.request import ClientGone, endpoint, parse_call, proxy_call, read_body, reparse
from gateway.runtime import Runtime
from gateway.types import ASGIReceive, ASGISend, Scope
from pipeline.limits import settle
from providers.base import Operation
from store.records import AnalyticsRecord
from sync.model import CacheSettings

log = logging.getLogger("tollgate.gateway")

_INTERACTION = {Operation.CHAT: "chat", Operation.EMBEDDINGS: "embedding", Operation.PROXY: "proxy"}


class GatewayHandler:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        rt = self.runtime
        ctx = RequestContext(rt.snapshot, scope)
        rt.inflight += 1
        try:
            await self._serve(ctx, scope, receive, send)
        except TollgateError as refusal:
            ctx.fail(refusal)
            if not ctx.response_started:
                await _send_error(send, refusal, ctx)
        except ClientGone:
            ctx.status, ctx.error_code = 499, "client_closed"
        except Exception:
            log.exception("request %s failed", ctx.request_id)
            error = InternalError(
                f"internal error (request id {ctx.request_id}); the gateway's log has the cause"
            )
            ctx.fail(error)
            if not ctx.response_started:
                await _send_error(send, error, ctx)
        finally:
            rt.inflight -= 1
            if ctx.hold is not None:
                settle(rt.counters, ctx)
            self._record(ctx)

    async def _serve(self, ctx: RequestContext, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        rt = self.runtime
        op, slug, path = endpoint(scope)
        ctx.op = op
        if ctx.snapshot.version < 0:
            raise NotReady("the gateway has not loaded its configuration yet")
        ctx.llm = ctx.snapshot.llms.get(slug)
        if ctx.llm is None:
            ctx.route = ctx.snapshot.routes.get(slug)
            if ctx.route is not None:
                await self._route(ctx, op, receive, send)
                return
            raise LlmNotFound(ctx.snapshot.unserved.get(slug) or f"unknown LLM '{slug}'")
        body = await read_body(ctx.headers, receive, rt.max_body_bytes)
        if op is Operation.PROXY:
            ctx.call = proxy_call(scope, ctx.headers, path, body)
            ctx.call.model = ctx.llm.provider.proxy_model(path, body)
        else:
            ctx.call = parse_call(op, body)
        if await ctx.llm.chain.run_request(ctx):
            ctx.call = reparse(ctx.call)
        if op is Operation.MODELS:
            await self._models(ctx, send)
            return
        if (
            op is Operation.CHAT
            and (settings := cache.policy(ctx))
            and await self._from_cache(ctx, settings, slug, send)
        ):
            return
        await relay.forward(rt.http, ctx, receive, send)
        self._to_cache(ctx)

    async def _route(self, ctx: RequestContext, op: Operation, receive: ASGIReceive, send: ASGISend) -> None:
        """A call to a route: its chain once, then attempts on its targets (gateway/routing.py)."""
        route = ctx.route
        assert route is not None
        if op is Operation.PROXY:
            raise InvalidRequest(f"'{route.slug}' is a route: call it on /openai/, /proxy/ needs an LLM")
        ctx.call = parse_call(op, await read_body(ctx.headers, receive, self.runtime.max_body_bytes))
        if await route.chain.run_request(ctx):
            ctx.call = reparse(ctx.call)
        if op is Operation.MODELS:
            body = orjson.dumps(
                {"object": "list", "data": [{"id": route.slug, "object": "model", "owned_by": "tollgate"}]}
            )
            await _send_json(send, 200, body, ctx)
            ctx.status = 200
            return
        if (
            op is Operation.CHAT
            and (settings := cache.policy(ctx))
            and await self._from_cache(ctx, settings, route.slug, send)
        ):
            return
        await routing.forward(self.runtime, ctx, receive, send, self._record)
        self._to_cache(ctx)

    async def _from_cache(
        self, ctx: RequestContext, settings: CacheSettings, slug: str, send: ASGISend
    ) -> bool:
        """Answer from the response cache when it holds the answer (gateway/cache.py); on a miss,
        mark the call so that its answer is stored."""
        key = cache.key_of(ctx, settings, slug)
        if key is None:
            return False
        control = ctx.headers.get(b"cache-control", b"").lower()
        if b"no-cache" in control:
            ctx.cache_status = "BYPASS"
        else:
            stored = await self.runtime.cache.get(key)
            self.runtime.metrics.cache_lookups.labels("hit" if stored is not None else "miss").inc()
            if stored is not None:
                ctx.cache_status = "HIT"
                headers = [(b"x-request-id", ctx.request_id.encode()), *ctx.response_headers]
                await cache.replay(ctx, stored, send, [*headers, (b"x-tollgate-cache", b"HIT")])
                ctx.status = 200
                return True
            if settings.mode == "semantic" and await self._semantic_hit(ctx, settings, slug, send):
                return True
            ctx.cache_status = "MISS"
        if b"no-store" not in control:
            ctx.cache_key, ctx.cache_ttl_s = key, settings.ttl_s
        ctx.response_headers = [*ctx.response_headers, (b"x-tollgate-cache", ctx.cache_status.encode())]
        return False

    async def _semantic_hit(
        self, ctx: RequestContext, settings: CacheSettings, slug: str, send: ASGISend
    ) -> bool:
        """After an exact miss: a stored answer to a conversation worded nearly the same
        (gateway/semantic.py); remembers this call's vector so that its own answer is indexed."""
        from gateway import semantic

        found = self.runtime.semantic()
        text = semantic.conversation(ctx, settings) if found is not None else None
        if found is None or text is None:
            return False
        embedder, index = found
        try:
            vector = await embedder.embed(text)
        except Exception as exc:  # no embedding: an exact lookup only
            self.runtime.cache.failed("embedding", exc)
            return False
        bucket = semantic.bucket_of(ctx, settings, slug)
        negations = semantic.polarity(text)
        ctx.cache_vector = (bucket, vector, negations)
        try:
            near = await index.find(bucket, vector, settings.threshold, negations)
        except Exception as exc:  # a failing index is a miss, like a failing store
            self.runtime.cache.failed("semantic lookup", exc)
            near = None
        stored = await self.runtime.cache.get(near) if near is not None else None
        self.runtime.metrics.cache_lookups.labels("semantic_hit" if stored else "semantic_miss").inc()
        if stored is None:
            return False
        ctx.cache_status = "SEMANTIC_HIT"
        headers = [(b"x-request-id", ctx.request_id.encode()), *ctx.response_headers]
        await cache.replay(ctx, stored, send, [*headers, (b"x-tollgate-cache", b"SEMANTIC_HIT")])
        ctx.status = 200
        return True

    def _to_cache(self, ctx: RequestContext) -> None:
        if ctx.cache_key is not None and ctx.cache_value is not None and ctx.status == 200:
            self.runtime.cache.put(ctx.cache_key, ctx.cache_value, ctx.cache_ttl_s, ctx.cache_vector)

    async def _models(self, ctx: RequestContext, send: ASGISend) -> None:
        """The models this app may use on the LLM: the upstream's list, filtered by `allowed_models`."""
        assert ctx.llm is not None
        listed = ctx.llm.provider.models(await relay.fetch(self.runtime.http, ctx))
        allowed = ctx.llm.allowed_models
        data = [m for m in listed if allowed is None or allowed.fullmatch(m["id"])]
        body = orjson.dumps({"object": "list", "data": data})
        await _send_json(send, 200, body, ctx)
        ctx.status = 200

    def _record(self, ctx: RequestContext) -> None:
        llm, app, usage = ctx.llm, ctx.app, ctx.usage
        elapsed = time.perf_counter() - ctx.started
        llm_slug = llm.slug if llm else ""
        app_name = app.name if app else ""
        self.runtime.metrics.observe(llm_slug, app_name, ctx.status, elapsed, usage, ctx.cost)
        if ctx.upstream_s:
            self.runtime.metrics.observe_upstream(llm_slug, ctx.upstream_s)
        interaction = _INTERACTION.get(ctx.op) if ctx.op else None
        if interaction is None:  # the model list and unknown endpoints are not interactions
            return
        self.runtime.analytics.record(
            AnalyticsRecord(
                timestamp=ctx.timestamp,
                request_id=ctx.request_id,
                interaction_type=interaction,  # type: ignore[arg-type]
                status_code=ctx.status,
                error_code=ctx.error_code,
                user_id=app.owner_id if app else None,
                user_email=app.owner_email if app else "",
                app_id=app.id if app else None,
                app_name=app_name,
                llm_id=llm.id if llm else None,
                llm_slug=llm_slug,
                vendor=llm.vendor if llm else "",
                model_name=ctx.model,
                prompt_tokens=usage.input_tokens if usage else 0,
                response_tokens=usage.output_tokens if usage else 0,
                total_tokens=usage.total_tokens if usage else 0,
                cache_write_tokens=usage.cache_write_tokens if usage else 0,
                cache_read_tokens=usage.cache_read_tokens if usage else 0,
                cost=ctx.cost,
                latency_ms=round(elapsed * 1000, 3),
                upstream_latency_ms=round(ctx.upstream_s * 1000, 3),
                stream=ctx.stream,
                edge_id=self.runtime.edge_id,
                route=ctx.route.slug if ctx.route is not None else "",
                attempt=ctx.attempt,
                cache_status=ctx.cache_status,
                blocked_by=ctx.filter,
            )
        )


async def _send_error(send: ASGISend, error: TollgateError, ctx: RequestContext) -> None:
    body = error.body()
    headers = [
        (b"content-type", error.content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", ctx.request_id.encode()),
        *ctx.response_headers,
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: ASGISend, status: int, body: bytes, ctx: RequestContext) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", ctx.request_id.encode()),
        *ctx.response_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
