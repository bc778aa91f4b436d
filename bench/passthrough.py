"""The reference line: a bare pass-through proxy on the gateway's own stack (uvicorn + httptools + uvloop
server, one pooled aiohttp client), doing nothing but forwarding. Tollgate is measured against it.

    python bench/passthrough.py --port 9302 --upstream http://127.0.0.1:9301 --api-key K [--client httpx]

`--client httpx` swaps the upstream client, and `--starlette` puts Starlette's router (with the gateway's
route table) in front, to measure what each costs (bench/clients.py).
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import httpx
import uvicorn


async def read_body(receive: Any) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


class PassThrough:
    def __init__(self, upstream: str, api_key: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {api_key}"}
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        url = self.upstream + "/v1/chat/completions"
        async with self.session.post(url, data=await read_body(receive), headers=self.headers) as response:
            body = await response.read()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})


class HttpxPassThrough(PassThrough):
    client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.client is None:
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
            self.client = httpx.AsyncClient(limits=limits, timeout=300)
        url = self.upstream + "/v1/chat/completions"
        response = await self.client.post(url, content=await read_body(receive), headers=self.headers)
        body = response.content
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def routed(endpoint: Any) -> Any:
    """`endpoint` behind Starlette's router and default middleware, with the gateway's routes."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def plain(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/healthz", plain), Route("/readyz", plain), Route("/metrics", plain),
            Route("/openai/{llm}/v1/chat/completions", endpoint, methods=["POST"]),
            Route("/openai/{llm}/v1/embeddings", endpoint, methods=["POST"]),
            Route("/proxy/{llm}/{path:path}", endpoint),
        ]
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp")
    parser.add_argument("--starlette", action="store_true")
    args = parser.parse_args()
    app: Any = (HttpxPassThrough if args.client == "httpx" else PassThrough)(args.upstream, args.api_key)
    if args.starlette:
        app = routed(app)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
