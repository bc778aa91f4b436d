"""The edge's side of hub and edges (`serve --mode edge --hub HOST:PORT`).

`EdgeAgent` is an edge runtime's config source (what the hub last pushed, cached sealed in the local
store's kv) and its credentials (keys looked up at the hub by hash, cached in memory and in the kv). It
keeps one session with the hub at a time: Register, fetch the published snapshot when it differs from
ours, then Watch (reloads and revocations), heartbeats and analytics uploads side by side; any failure
ends the session and the next one starts after a jittered exponential backoff. Without the hub the edge
serves from its cache: the snapshot it had, the keys it knew (past their TTL), and its analytics wait in
its own table until the hub takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import version as package_version
from typing import Any

import grpc
import msgspec

from gateway.settings import Settings
from store.base import Store
from sync import control_pb2 as pb
from sync import control_pb2_grpc as pb_grpc
from sync.hub import GRPC_OPTIONS
from sync.payload import Published, checksum, seal, to_state, unseal
from sync.secrets import SecretBox, SecretError
from sync.snapshot import AppEntry
from sync.state import ConfigState

log = logging.getLogger("tollgate")

FIRST_BACKOFF_S = 0.25  # the wait before the second try; it doubles (jittered) up to --heartbeat-s
CALL_TIMEOUT_S = 10.0
LOOKUP_TIMEOUT_S = 2.0  # a request waits at most this long for the hub to know its key
NEGATIVE_TTL_S = 30.0  # unknown keys are asked again after this (or --credential-ttl-s if shorter)
UPLOAD_BATCH = 1000
UPLOAD_EVERY_S = 1.0
KEEP_UPLOADED_S = 35 * 86400  # uploaded records stay this long (a restart seeds this month's budgets)
MAX_NEGATIVE = 100_000  # unknown keys remembered at most (garbage keys must not grow memory forever)

_SNAPSHOT_KEY = "edge:snapshot"
_CURSOR_KEY = "edge:upload_cursor"
_DB_ID_KEY = "edge:db_id"
_KEY_PREFIX = "edge:key:"


class CachedKey(msgspec.Struct, frozen=True):
    app: AppEntry
    expires_at: float


_encode = msgspec.msgpack.Encoder().encode
_read_key = msgspec.msgpack.Decoder(CachedKey)
_read_app = msgspec.msgpack.Decoder(AppEntry)


class SyncError(Exception):
    """The hub sent something this edge cannot use."""


class EdgeAgent:
    def __init__(self, settings: Settings, store: Store, box: SecretBox) -> None:
        if not settings.hub:
            raise ValueError("edge mode needs --hub HOST:PORT")
        self.settings = settings
        self.store = store
        self.box = box
        self.edge_id = settings.edge_id or f"{socket.gethostname()}:{settings.port}"
        self.namespace = settings.namespace
        self.key_ttl_s = settings.credential_ttl_s
        self.published: Published | None = None  # what this edge serves
        self.on_apply: Callable[[], Awaitable[None]] = _nothing  # the runtime's reload
        self.counters: Callable[[], dict[str, int]] = dict  # extra heartbeat counters (the runtime's)
        self._state: ConfigState | None = None
        self._sequence = 0  # local version of the applied snapshots (the runtime reloads when it moves)
        self._keys: dict[str, tuple[AppEntry | None, float]] = {}  # key hash → (app or None, expires at)
        self._lookups: dict[str, asyncio.Future[AppEntry | None]] = {}
        self._stub: pb_grpc.ControlStub | None = None
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {settings.edge_token}"),) if settings.edge_token else ()
        )
        self._source = ""  # "<edge_id>/<db id>": whose row ids the uploads carry
        self._cursor = 0  # the highest local analytics id the hub has
        self._uploaded = 0
        self._beat_now = asyncio.Event()
        self._apply_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- the cache ----------------------------------------------------------------------------------

    async def open(self) -> None:
        """Load what the last run kept: the snapshot, the keys, the upload cursor."""
        values = await self.store.get_values("edge:")
        db_id = values.get(_DB_ID_KEY)
        if db_id is None:
            db_id = uuid.uuid4().hex.encode()
            await self.store.put_values({_DB_ID_KEY: db_id})
        self._source = f"{self.edge_id}/{db_id.decode()}"
        self._cursor = int(values.get(_CURSOR_KEY, b"0"))
        if _SNAPSHOT_KEY in values:
            try:
                published = unseal(values[_SNAPSHOT_KEY], self.box)
                self._load(published)
                self.published = published
                log.info(
                    "edge: serving the cached snapshot %s until the hub answers", published.checksum[:12]
                )
            except (SecretError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("edge: the cached snapshot cannot be read (%s); waiting for the hub", exc)
        for key, value in values.items():
            if key.startswith(_KEY_PREFIX):
                cached = _read_key.decode(value)
                self._keys[key.removeprefix(_KEY_PREFIX)] = (cached.app, cached.expires_at)

    def _load(self, published: Published) -> None:
        """Make `published` the configuration this edge serves from (the runtime builds it next)."""
        if checksum(published.config) != published.checksum:
            raise SyncError(f"snapshot checksum mismatch (expected {published.checksum})")
        self._state = to_state(published.config, self._sequence + 1)
        self._sequence += 1

    # -- ConfigSource (gateway/runtime.py) ----------------------------------------------------------

    async def version(self) -> int:
        return self._state.version if self._state is not None else -1

    async def load(self) -> ConfigState:
        if self._state is None:
            raise SyncError("no snapshot yet")
        return self._state

    # -- Credentials (pipeline/auth.py) -------------------------------------------------------------

    async def find(self, key_hash: str) -> AppEntry | None:
        cached = self._keys.get(key_hash)
        if cached is not None:
            app, expires_at = cached
            # While the hub is unreachable a known key keeps working past its TTL (an unknown one not).
            if expires_at > time.time() or (app is not None and self._stub is None):
                return app
        if self._stub is None:
            return None
        pending = self._lookups.get(key_hash)
        if pending is None:
            pending = self._lookups[key_hash] = asyncio.ensure_future(self._ask(key_hash))
            pending.add_done_callback(lambda _: self._lookups.pop(key_hash, None))
        return await asyncio.shield(pending)

    async def _ask(self, key_hash: str) -> AppEntry | None:
        stub = self._stub
        cached = self._keys.get(key_hash)
        stale = cached[0] if cached is not None else None
        if stub is None:
            return stale
        try:
            reply = await stub.LookupCredential(
                pb.CredentialRequest(edge_id=self.edge_id, key_hash=key_hash),
                metadata=self._metadata,
                timeout=LOOKUP_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("edge: key lookup at the hub failed (%s)", exc.code().name)
            return stale  # the hub did not answer: what we knew stands
        now = time.time()
        if not reply.found:
            if len(self._keys) >= MAX_NEGATIVE:
                self._forget_expired(now)
            self._keys[key_hash] = (None, now + min(NEGATIVE_TTL_S, self.key_ttl_s))
            if cached is not None and cached[0] is not None:
                await self.store.put_values({_KEY_PREFIX + key_hash: None})
            return None
        app = _read_app.decode(reply.app)
        expires_at = now + self.key_ttl_s
        self._keys[key_hash] = (app, expires_at)
        await self.store.put_values({_KEY_PREFIX + key_hash: _encode(CachedKey(app, expires_at))})
        return app

    def _forget_expired(self, now: float) -> None:
        for key_hash in [h for h, (app, expires) in self._keys.items() if app is None and expires <= now]:
            del self._keys[key_hash]

    async def _revoke(self, key_hashes: list[str]) -> None:
        known = [h for h in key_hashes if h in self._keys]
        for key_hash in known:
            del self._keys[key_hash]
        if known:
            await self.store.put_values(dict.fromkeys((_KEY_PREFIX + h for h in known), None))
            log.info("edge: %d key(s) revoked by the hub", len(known))

    # -- the session with the hub -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="edge-sync")

    async def close(self) -> None:
        """Stop syncing; first one last upload of what the runtime flushed (a short, bounded try)."""
        if self._task is not None:
            stub = self._stub
            if stub is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._upload_all(stub), timeout=3.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failures = 0
        while True:
            channel = self._channel()
            try:
                await self._session(pb_grpc.ControlStub(channel))  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                if self.connected or failures == 0:
                    log.warning("edge: hub %s unreachable (%s)", self.settings.hub, _reason(exc))
            except Exception:
                log.exception("edge: the session with the hub failed")
            finally:
                was_connected = self.connected
                self._stub = None
                await channel.close(grace=None)
            failures = 1 if was_connected else failures + 1
            longest = max(FIRST_BACKOFF_S, self.settings.heartbeat_s)  # at least one try per heartbeat
            delay = min(longest, FIRST_BACKOFF_S * 2 ** min(failures - 1, 16)) * random.uniform(0.5, 1.0)
            await asyncio.sleep(delay)

    def _channel(self) -> grpc.aio.Channel:
        target = str(self.settings.hub)
        if self.settings.grpc_tls_ca:
            with open(self.settings.grpc_tls_ca, "rb") as roots:
                credentials = grpc.ssl_channel_credentials(root_certificates=roots.read())
            return grpc.aio.secure_channel(target, credentials, options=GRPC_OPTIONS)
        return grpc.aio.insecure_channel(target, options=GRPC_OPTIONS)

    async def _session(self, stub: pb_grpc.ControlStub) -> None:
        reply = await stub.Register(
            pb.RegisterRequest(
                edge_id=self.edge_id,
                namespace=self.namespace,
                version=package_version("tollgate"),
                checksum=self.checksum,
            ),
            metadata=self._metadata,
            timeout=CALL_TIMEOUT_S,
        )
        self._stub = stub  # registered: lookups may use it
        log.info("edge %s: connected to the hub %s", self.edge_id, self.settings.hub)
        if reply.published_checksum and reply.published_checksum != self.checksum:
            await self._fetch(stub)
        tasks = [
            asyncio.create_task(self._watch(stub)),
            asyncio.create_task(self._heartbeats(stub)),
            asyncio.create_task(self._uploads(stub)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # its exception ends the session
            raise SyncError("the hub closed the control stream")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def connected(self) -> bool:
        """Registered with the hub in the current session."""
        return self._stub is not None

    @property
    def checksum(self) -> str:
        return self.published.checksum if self.published is not None else ""

    async def _watch(self, stub: pb_grpc.ControlStub) -> None:
        stream = stub.Watch(pb.WatchRequest(edge_id=self.edge_id), metadata=self._metadata)
        async for message in stream:
            if message.HasField("reload"):
                if message.reload.checksum != self.checksum:
                    await self._fetch(stub)
            elif message.HasField("revoke"):
                await self._revoke(list(message.revoke.key_hashes))

    async def _fetch(self, stub: pb_grpc.ControlStub) -> None:
        """Pull the published snapshot, check it, keep it (sealed), and have the runtime swap to it."""
        async with self._apply_lock:
            reply = await stub.FetchSnapshot(
                pb.SnapshotRequest(edge_id=self.edge_id), metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
            if reply.checksum == self.checksum:
                return
            published = Published(reply.checksum, reply.version, reply.config, time.time())
            before = self._state
            self._load(published)
            try:
                await self.on_apply()  # the runtime builds and swaps: only now is it what we serve
            except BaseException:
                self._state = before
                raise
            self.published = published
            await self.store.put_values({_SNAPSHOT_KEY: seal(published, self.box)})
        log.info("edge: applied snapshot %s (hub config version %d)", reply.checksum[:12], reply.version)
        self._beat_now.set()

    async def _heartbeats(self, stub: pb_grpc.ControlStub) -> None:
        while True:
            self._beat_now.clear()
            counters = {
                **self.counters(),
                "credentials": sum(1 for app, _ in self._keys.values() if app is not None),
                "uploaded": self._uploaded,
            }
            reply = await stub.Heartbeat(
                pb.HeartbeatRequest(edge_id=self.edge_id, checksum=self.checksum, counters=counters),
                metadata=self._metadata,
                timeout=CALL_TIMEOUT_S,
            )
            if reply.published_checksum and reply.published_checksum != self.checksum:
                await self._fetch(stub)  # a Reload this edge missed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), self.settings.heartbeat_s)

    async def _uploads(self, stub: pb_grpc.ControlStub) -> None:
        pruned_at = 0.0
        while True:
            await self._upload_all(stub)
            now = time.time()
            if now - pruned_at > 3600:
                await self.store.prune_records(self._cursor, now - KEEP_UPLOADED_S)
                pruned_at = now
            await asyncio.sleep(min(UPLOAD_EVERY_S, self.settings.heartbeat_s))

    async def _upload_all(self, stub: pb_grpc.ControlStub) -> None:
        """Send the records after the cursor, batch by batch; the hub's watermark makes a resend harmless."""
        while True:
            records = await self.store.records_after(self._cursor, UPLOAD_BATCH)
            if not records:
                return
            batch_id = f"{self._source}:{records[0].id}-{records[-1].id}"
            reply = await stub.UploadAnalytics(
                pb.AnalyticsBatch(
                    edge_id=self.edge_id, source=self._source, batch_id=batch_id, records=_encode(records)
                ),
                metadata=self._metadata,
                timeout=CALL_TIMEOUT_S,
            )
            self._uploaded += reply.inserted
            self._cursor = max(self._cursor, reply.last_id, records[-1].id)
            await self.store.put_values({_CURSOR_KEY: str(self._cursor).encode()})
            if len(records) < UPLOAD_BATCH:
                return

    def status(self) -> dict[str, Any]:
        from gateway.admin.analytics import iso

        return {
            "edge_id": self.edge_id,
            "namespace": self.namespace,
            "checksum": self.checksum or None,
            "last_sync": iso(self.published.at) if self.published is not None else None,
            "hub_connected": self.connected,
            "hub": self.settings.hub,
        }


def _reason(exc: grpc.aio.AioRpcError) -> str:
    details = exc.details() or ""
    return f"{exc.code().name}: {details}" if details else exc.code().name


async def _nothing() -> None:
    return None
