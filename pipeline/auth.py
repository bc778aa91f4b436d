"""The `auth` phase's first filter: the app key → the app, by SHA-256 hash in the snapshot (O(1)).

An edge's snapshot has no apps: it asks its `Credentials` (sync/edge.py: a cache in front of the hub)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl

from gateway.errors import InvalidApiKey
from providers.base import Operation

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from sync.snapshot import AppEntry

_sha256 = hashlib.sha256


class Credentials(Protocol):
    """Apps that are not in the snapshot, found by key hash elsewhere (an edge asks its hub)."""

    async def find(self, key_hash: str) -> AppEntry | None: ...


class AppKeyAuth:
    name = "auth"

    def __init__(self, credentials: Credentials | None = None) -> None:
        self.credentials = credentials

    async def __call__(self, ctx: RequestContext) -> None:
        key = credential(ctx)
        if not key:
            raise InvalidApiKey("missing API key: send your app key as 'Authorization: Bearer <key>'")
        key_hash = _sha256(key).hexdigest()
        app = ctx.snapshot.apps.get(key_hash)
        if app is None and self.credentials is not None:
            app = await self.credentials.find(key_hash)
        if app is None or not app.active:
            raise InvalidApiKey("invalid API key")
        ctx.app = app


def credential(ctx: RequestContext) -> bytes:
    """The app key: a Bearer token everywhere; on /proxy/ also where the vendors' SDKs put theirs:
    `x-api-key` (Anthropic), `x-goog-api-key` or `?key=` (Google), `api-key` (Azure OpenAI)."""
    auth = ctx.headers.get(b"authorization", b"")
    if auth[:7].lower() == b"bearer ":
        return auth[7:].strip()
    if ctx.op is not Operation.PROXY:
        return b""
    key = ctx.headers.get(b"x-api-key") or ctx.headers.get(b"x-goog-api-key") or ctx.headers.get(b"api-key")
    if key:
        return key.strip()
    if b"key=" in ctx.query:
        for name, value in parse_qsl(ctx.query.decode("latin-1")):
            if name == "key":
                return value.encode("latin-1")
    return b""
