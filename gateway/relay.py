"""Send the call upstream through the process's one pooled client, and relay the answer to the client:
a complete body as it is, a stream event by event as it arrives. Usage is booked on the way."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from yarl import URL

from gateway import accounting, cache
from gateway.context import RequestContext
from gateway.errors import ContentBlocked, TollgateError, UpstreamTimeout, UpstreamUnavailable
from gateway.types import ASGIReceive, ASGISend
from pipeline import respond
from pipeline.frames import Framing
from providers import sse
from providers.base import Operation, Provider, UpstreamRequest

# Upstream response headers a pass-through answer does not forward (hop-by-hop, or no longer true:
# the body was decompressed and its length is set again).
_NOT_RELAYED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "set-cookie",
        "upgrade",
    }
)
# What vendors stream in: SSE (OpenAI, Anthropic, Gemini), NDJSON (Ollama), AWS event stream (Bedrock).
_FRAMINGS: dict[str, Framing] = {"text/event-stream": "sse", "application/x-ndjson": "ndjson"}
_STREAM_TYPES = ("text/event-stream", "application/x-ndjson", "application/vnd.amazon.eventstream")


async def forward(
    http: aiohttp.ClientSession, ctx: RequestContext, receive: ASGIReceive, send: ASGISend
) -> None:
    assert ctx.llm is not None and ctx.call is not None
    provider = ctx.llm.provider
    request = await provider.request(ctx.call)
    sent = time.perf_counter()
    response = await _open(http, request, provider, ctx.llm.slug)
    ctx.upstream_s = time.perf_counter() - sent
    try:
        if response.status >= 400:
            body = await _read(response, ctx.llm.slug)
            raise provider.error(ctx.call, response.status, body, response.headers)
        if response.content_type in _STREAM_TYPES:
            await _relay_stream(ctx, provider, response, receive, send)
        else:
            await _relay_body(ctx, provider, response, send)
    finally:
        response.release()


async def fetch(http: aiohttp.ClientSession, ctx: RequestContext) -> bytes:
    """A small upstream answer read whole (the model list)."""
    assert ctx.llm is not None and ctx.call is not None
    provider = ctx.llm.provider
    response = await _open(http, await provider.request(ctx.call), provider, ctx.llm.slug)
    try:
        body = await _read(response, ctx.llm.slug)
        if response.status >= 400:
            raise provider.error(ctx.call, response.status, body, response.headers)
        return body
    finally:
        response.release()


async def _open(
    http: aiohttp.ClientSession, request: UpstreamRequest, provider: Provider, slug: str
) -> aiohttp.ClientResponse:
    try:
        return await http.request(
            request.method,
            # as built: aiohttp would otherwise decode escapes such as Bedrock's `%3A`, which are signed
            URL(request.url, encoded=True),
            headers=request.headers,
            data=request.body,
            timeout=provider.timeout,
            allow_redirects=False,
        )
    except TimeoutError:
        raise UpstreamTimeout(f"LLM '{slug}': the upstream did not answer in time") from None
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(f"LLM '{slug}': cannot reach the upstream ({type(exc).__name__})") from None


async def _read(response: aiohttp.ClientResponse, slug: str) -> bytes:
    try:
        return await response.read()
    except TimeoutError:
        raise UpstreamTimeout(f"LLM '{slug}': the upstream's answer stalled") from None
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(
            f"LLM '{slug}': the upstream's answer broke off ({type(exc).__name__})"
        ) from None


async def _relay_body(
    ctx: RequestContext, provider: Provider, response: aiohttp.ClientResponse, send: ASGISend
) -> None:
    assert ctx.call is not None and ctx.llm is not None
    body = await _read(response, ctx.llm.slug)
    reply = provider.response(ctx.call, body, response.headers)
    usage = reply.usage
    if usage is None and ctx.call.op is not Operation.PROXY:
        usage = await asyncio.to_thread(accounting.estimate, ctx, None, reply.body)
    if usage is not None:
        accounting.settle(ctx, usage, reply.model)
    answer = reply.body
    if ctx.cache_key is not None and response.status == 200 and cache.cacheable(answer):
        ctx.cache_value = answer  # stored (before the response phase, which runs again on a hit)
    if ctx.llm.chain.responds:  # the response phase; a block raises before anything was sent
        answer = await respond.answer(ctx, answer)
    headers = _headers(ctx, response, b"application/json")
    headers.append((b"content-length", str(len(answer)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    ctx.response_started = True
    await send({"type": "http.response.body", "body": answer})
    ctx.status = response.status


async def _relay_stream(
    ctx: RequestContext,
    provider: Provider,
    response: aiohttp.ClientResponse,
    receive: ASGIReceive,
    send: ASGISend,
) -> None:
    assert ctx.call is not None and ctx.llm is not None
    ctx.call.stream = True
    relay = provider.stream(ctx.call)
    phase = respond.stream(ctx, _framing(ctx, response)) if ctx.llm.chain.responds else None
    headers = _headers(ctx, response, b"text/event-stream; charset=utf-8")
    headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]

    async def start() -> None:
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        ctx.response_started = True

    # Through a route the answer starts with its first chunk: until then a failure can still fail over.
    if ctx.route is None:
        await start()
    watcher = _DisconnectWatcher(receive, response)
    assembler = cache.Assembler() if ctx.cache_key is not None and ctx.op is Operation.CHAT else None
    settled = False
    try:
        async for chunk in response.content.iter_any():
            out = relay.feed(chunk)
            if assembler is not None and out:
                assembler.feed(out)
            if phase is not None and out:
                out = await phase.feed(out)
            if out:
                if not ctx.response_started:
                    await start()
                await send({"type": "http.response.body", "body": out, "more_body": True})
        tail = relay.finish()
        if assembler is not None:
            assembler.feed(tail)
        if phase is not None:
            tail = await phase.feed(tail) + await phase.finish()
        if watcher.gone:
            raise aiohttp.ClientConnectionError("client gone")
        if not ctx.response_started:
            await start()
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        ctx.status = response.status
        if relay.error is not None:  # the upstream failed mid-stream; the client got an SSE error event
            ctx.fail(relay.error)
        usage = relay.usage
        if usage is None:  # tiktoken is CPU work: off the event loop
            usage = await asyncio.to_thread(accounting.estimate, ctx, relay)
        accounting.settle(ctx, usage, relay.model)
        settled = True
        if assembler is not None and relay.error is None and response.status == 200:
            ctx.cache_value = assembler.result()
    except ContentBlocked as blocked:  # a response filter: end the client's stream with an error event
        ctx.fail(blocked)
        response.close()
        if not ctx.response_started:
            raise
        await send(
            {"type": "http.response.body", "body": sse.event(blocked.body(), "error"), "more_body": False}
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        if watcher.gone:
            ctx.status, ctx.error_code = 499, "client_closed"
        else:
            error = _broken_stream(ctx.llm.slug, exc)
            ctx.fail(error)
            if not ctx.response_started:  # nothing reached the client: a route may still fail over
                raise error from None
            await send(
                {"type": "http.response.body", "body": sse.event(error.body(), "error"), "more_body": False}
            )
    except asyncio.CancelledError:
        ctx.status, ctx.error_code = 503, "shutdown"
        raise
    finally:
        watcher.stop()
        if not settled:  # partial answer: count what was relayed (synchronously: we may be cancelled)
            accounting.settle(ctx, relay.usage or accounting.estimate(ctx, relay), relay.model)


def _framing(ctx: RequestContext, response: aiohttp.ClientResponse) -> Framing | None:
    """How the client's stream is framed: SSE on /openai/; on /proxy/ the vendor's own framing (None:
    AWS event streams are binary and pass through the response phase untouched; the snapshot warns)."""
    if ctx.op is not Operation.PROXY:
        return "sse"
    return _FRAMINGS.get(response.content_type)


def _broken_stream(slug: str, exc: BaseException) -> TollgateError:
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"LLM '{slug}': the upstream's stream stalled")
    return UpstreamUnavailable(f"LLM '{slug}': the upstream's stream broke off ({type(exc).__name__})")


def _headers(
    ctx: RequestContext, response: aiohttp.ClientResponse, content_type: bytes
) -> list[tuple[bytes, bytes]]:
    """The proxy passes the vendor's headers on; `/openai/` answers are OpenAI's JSON or SSE, whatever
    the vendor sent."""
    headers = [(b"x-request-id", ctx.request_id.encode())]
    if ctx.op is Operation.PROXY:
        headers += [
            (name.encode("latin-1").lower(), value.encode("latin-1"))
            for name, value in response.headers.items()
            if name.lower() not in _NOT_RELAYED and name.lower() != "x-request-id"
        ]
    else:
        headers.append((b"content-type", content_type))
    if ctx.response_headers:
        headers += ctx.response_headers
    return headers


class _DisconnectWatcher:
    """Waits for the client to go away during a stream, and then ends the upstream request too."""

    def __init__(self, receive: ASGIReceive, response: aiohttp.ClientResponse) -> None:
        self.gone = False
        self._response = response
        self._task = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: ASGIReceive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                self._response.close()
                return

    def stop(self) -> None:
        self._task.cancel()
