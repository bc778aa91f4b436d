"""The response cache, exact mode (INTERFACE.md, "Routes and response cache").

A chat call whose LLM, route or app sets `cache: {mode: exact}` is looked up after the request filters
and the limits (a blocked prompt is never answered from the cache; a hit counts against the rate
limits) under a SHA-256 of its scope (the app, unless `scope: global`), the slug, the model and every
field of the body but `stream`, `stream_options`, `user` and `model`. A hit is replayed as JSON or as
SSE, whichever the request asks, through the response filters, and costs nothing. Only complete 200
answers are stored: a stream once it has ended (assembled into the answer it stands for). The store is
an LRU in memory per process, or Redis shared by every gateway; a failing store is a miss, logged and
counted, never a failed request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from pipeline import respond
from pipeline.counters.resp import RedisConnection
from pipeline.frames import Splitter, payload
from providers.answer import ChunkWriter
from providers.base import Usage

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.metrics import Metrics
    from gateway.types import ASGISend
    from sync.model import CacheSettings

log = logging.getLogger("tollgate.cache")

NOT_KEYED = frozenset({"stream", "stream_options", "user", "model"})
REDIS_PREFIX = "{tollgate:}cache:"


class Backend(Protocol):
    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def close(self) -> None: ...


class MemoryBackend:
    """A bounded LRU with per-entry expiry, in this process."""

    name = "memory"

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries[key] = (time.monotonic() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        self._entries.clear()


class RedisBackend:
    """Entries in Redis (`--redis`), shared by every gateway, expiring on Redis's clock."""

    name = "redis"

    def __init__(self, url: str) -> None:
        self.redis = RedisConnection(url)

    async def get(self, key: str) -> bytes | None:
        value = await self.redis.call(b"GET", (REDIS_PREFIX + key).encode())
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self.redis.call(
            b"SET", (REDIS_PREFIX + key).encode(), value, b"PX", str(int(ttl_s * 1000)).encode()
        )

    async def close(self) -> None:
        self.redis.close()


class ResponseCache:
    def __init__(self, backend: Backend, metrics: Metrics | None = None) -> None:
        self.backend = backend
        self.metrics = metrics
        self.index: Any = None  # the semantic index (gateway/semantic.py), once a semantic call needs it
        self._writes: set[asyncio.Task[None]] = set()

    async def get(self, key: str) -> bytes | None:
        try:
            return await asyncio.wait_for(self.backend.get(key), 1.0)
        except Exception as exc:  # a failing store is a miss
            self.failed("lookup", exc)
            return None

    def put(self, key: str, value: bytes, ttl_s: float, semantic: tuple[str, Any, Any] | None = None) -> None:
        """Store in the background: the answer has gone out already. `semantic`: (bucket, vector,
        negations) of the call, indexed once its answer is stored."""
        task = asyncio.create_task(self._put(key, value, ttl_s, semantic))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _put(self, key: str, value: bytes, ttl_s: float, semantic: tuple[str, Any, Any] | None) -> None:
        try:
            await asyncio.wait_for(self.backend.set(key, value, ttl_s), 1.0)
            if semantic is not None and self.index is not None:
                bucket, vector, negations = semantic
                await asyncio.wait_for(self.index.put(bucket, vector, key, ttl_s, negations), 1.0)
        except Exception as exc:
            self.failed("store", exc)

    def failed(self, what: str, exc: BaseException) -> None:
        log.warning("response cache %s failed (%s: %s): treated as a miss", what, type(exc).__name__, exc)
        if self.metrics is not None:
            self.metrics.cache_errors.inc()

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self.backend.close()


def policy(ctx: RequestContext) -> CacheSettings | None:
    """The cache settings that apply: the app's when it has some, else the route's or the LLM's."""
    app = ctx.app
    chosen: CacheSettings | None
    if app is not None and app.cache is not None:
        chosen = app.cache
    elif ctx.route is not None:
        chosen = ctx.route.cache
    else:
        chosen = ctx.llm.cache if ctx.llm is not None else None
    return chosen if chosen is not None and chosen.mode != "off" else None


def key_of(ctx: RequestContext, settings: CacheSettings, slug: str) -> str | None:
    """The entry's key; None when the body is not a JSON object (nothing to key)."""
    doc = ctx.body.doc
    if not isinstance(doc, dict):
        return None
    scope = "*" if settings.scope == "global" else f"app:{ctx.app.id if ctx.app else ''}"
    material = {k: v for k, v in doc.items() if k not in NOT_KEYED}
    model = ctx.call.model if ctx.call is not None else ""
    blob = orjson.dumps([scope, slug, model, material], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


async def replay(
    ctx: RequestContext, stored: bytes, send: ASGISend, headers: list[tuple[bytes, bytes]]
) -> None:
    """Answer from a stored `chat.completion`, as JSON or as SSE, through the response filters."""
    assert ctx.call is not None
    chain = respond.chain_of(ctx)
    if not ctx.call.stream:
        body = await respond.answer(ctx, stored) if chain.responds else stored
        headers = [
            *headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        ctx.response_started = True
        await send({"type": "http.response.body", "body": body})
        return
    events = as_stream(stored, ctx.call.include_usage)
    phase = respond.stream(ctx, "sse") if chain.responds else None
    if phase is not None:
        events = await phase.feed(events) + await phase.finish()
    headers = [
        *headers,
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    ctx.response_started = True
    await send({"type": "http.response.body", "body": events})


def as_stream(stored: bytes, include_usage: bool) -> bytes:
    """A stored answer as OpenAI's stream of chunks (one text chunk, its tool calls, the end)."""
    answer = orjson.loads(stored)
    choice = answer["choices"][0]
    message = choice.get("message") or {}
    writer = ChunkWriter(answer.get("model", ""), include_usage)
    out = writer.start() + writer.text(message.get("content") or "")
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        out += writer.tool_call(
            index, call.get("id", ""), function.get("name", ""), function.get("arguments", "")
        )
    usage = answer.get("usage")
    used = None
    if isinstance(usage, dict):
        used = Usage(
            input_tokens=usage.get("prompt_tokens", 0), output_tokens=usage.get("completion_tokens", 0)
        )
    return out + writer.end(choice.get("finish_reason"), used)


def cacheable(answer: bytes) -> bool:
    """A complete answer with one choice (a stream replays one choice)."""
    try:
        doc = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return False
    choices = doc.get("choices") if isinstance(doc, dict) else None
    return isinstance(choices, list) and len(choices) == 1 and choices[0].get("finish_reason") is not None


class Assembler:
    """Rebuilds the `chat.completion` an OpenAI stream stands for, from the events sent to the client."""

    def __init__(self) -> None:
        self._splitter = Splitter("sse")
        self._head: dict[str, Any] = {}
        self._content: list[str] = []
        self._tools: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None
        self._usage: Any = None
        self._other_choices = False

    def feed(self, data: bytes) -> None:
        for raw in self._splitter.feed(data):
            found = payload(raw, True)
            if found is None or not isinstance(found.doc, dict):
                continue
            chunk = found.doc
            if not self._head:
                self._head = {k: chunk.get(k) for k in ("id", "created", "model", "system_fingerprint")}
            if chunk.get("usage"):
                self._usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) != 0:
                    self._other_choices = True
                    continue
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    self._content.append(delta["content"])
                for call in delta.get("tool_calls") or ():
                    slot = self._tools.setdefault(
                        call.get("index", 0), {"id": "", "name": "", "arguments": []}
                    )
                    slot["id"] = call.get("id") or slot["id"]
                    function = call.get("function") or {}
                    slot["name"] = function.get("name") or slot["name"]
                    slot["arguments"].append(function.get("arguments") or "")
                if choice.get("finish_reason"):
                    self._finish = choice["finish_reason"]

    def result(self) -> bytes | None:
        """The answer, or None when the stream did not end cleanly or had several choices."""
        if self._finish is None or self._other_choices or not self._head:
            return None
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self._content) or None,
            "refusal": None,
        }
        if self._tools:
            message["tool_calls"] = [
                {
                    "id": t["id"],
                    "type": "function",
                    "function": {"name": t["name"], "arguments": "".join(t["arguments"])},
                }
                for _, t in sorted(self._tools.items())
            ]
        answer = {
            **{k: v for k, v in self._head.items() if v is not None},
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish}],
        }
        if self._usage is not None:
            answer["usage"] = self._usage
        return orjson.dumps(answer)
