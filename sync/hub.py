"""The hub's side of hub and edges (`serve --mode control`): the gRPC `Control` service of control.proto.

`Hub` follows the hub's configuration (each new `ConfigState`, with the apps resolved), keeps per namespace
the checksum of the current content and the content last *published* (pushed), the registry of edges
with their heartbeats, and one queue per connected edge for its Watch stream. Config changes reach an
edge only when pushed; revoked keys are announced at once. Registry and published contents live in the
store's kv, so a restarted hub knows its edges and serves what it had published.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import msgspec

from gateway.settings import Settings
from store.base import Store
from store.records import AnalyticsRecord
from sync import control_pb2 as pb
from sync import control_pb2_grpc as pb_grpc
from sync.payload import Published, checksum, content, in_namespace, seal, unseal
from sync.secrets import SecretBox, SecretError
from sync.snapshot import AppEntry, Snapshot, resolve_apps
from sync.state import ConfigState, StoreSource

log = logging.getLogger("tollgate")

STALE_S = 15 * 60  # pending, or silent, for longer than this: stale
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a snapshot of many LLMs is one message
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),  # notice a vanished peer within a minute, not at the OS's leisure
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]
_EDGE_KEY = "hub:edge:"
_PUBLISHED_KEY = "hub:published:"


class EdgeRecord(msgspec.Struct, kw_only=True):
    """One edge as the hub knows it (kept in the kv)."""

    edge_id: str
    namespace: str = ""
    version: str = ""
    checksum: str = ""  # what it reported serving ("" until its first heartbeat after a load)
    checksum_at: float = 0.0  # when it first reported this checksum
    registered_at: float = 0.0
    last_heartbeat: float = 0.0
    counters: dict[str, int] = {}


class Current(msgspec.Struct):
    """A namespace's content at the hub's current config version."""

    version: int
    config: bytes
    checksum: str
    changed_at: float  # when the checksum took this value (as far as this process saw)


_edge_codec = msgspec.msgpack.Encoder()
_read_edge = msgspec.msgpack.Decoder(EdgeRecord)
_app_codec = msgspec.msgpack.Encoder()
_read_records = msgspec.msgpack.Decoder(list[AnalyticsRecord])


class Hub:
    def __init__(self, store: Store, box: SecretBox) -> None:
        self.store = store
        self.box = box
        self.state: ConfigState | None = None
        self.apps: dict[str, AppEntry] = {}
        self.edges: dict[str, EdgeRecord] = {}
        self.published: dict[str, Published] = {}
        self.watchers: dict[str, asyncio.Queue[pb.ControlMessage]] = {}
        self._current: dict[str, Current] = {}
        self._started_at = time.time()
        # How the hub gets the newest config before a push: the runtime's reload (which calls `follow`),
        # or, without a runtime in this process, `refresh` from the store.
        self.reload: Callable[[], Awaitable[None]] = self.refresh
        self._refresh_lock = asyncio.Lock()

    async def open(self) -> None:
        """Load the registry and the published contents; a content the master key cannot open is
        dropped (it will be published again)."""
        for value in (await self.store.get_values(_EDGE_KEY)).values():
            edge = _read_edge.decode(value)
            self.edges[edge.edge_id] = edge
        for key, value in (await self.store.get_values(_PUBLISHED_KEY)).items():
            try:
                self.published[key.removeprefix(_PUBLISHED_KEY)] = unseal(value, self.box)
            except (SecretError, msgspec.DecodeError):
                log.warning("published snapshot %s cannot be read with this master key; dropped", key)

    # -- following the config ------------------------------------------------------------------------

    def follow(self, state: ConfigState, snapshot: Snapshot | None = None) -> None:
        """A new config version: recompute the checksums of the namespaces edges use, and revoke the
        keys whose app is gone, disabled or changed (their edges ask again)."""
        apps = snapshot.apps if snapshot is not None else resolve_apps(state)
        revoked = [h for h, app in self.apps.items() if apps.get(h) != app]
        self.state, self.apps = state, apps
        for namespace in self.namespaces():
            self.current(namespace)
        if revoked:
            message = pb.ControlMessage(revoke=pb.Revoke(key_hashes=revoked))
            for queue in self.watchers.values():
                queue.put_nowait(message)

    async def refresh(self) -> None:
        """Without a runtime in this process: follow the store's config version."""
        async with self._refresh_lock:
            source = StoreSource(self.store)
            if self.state is None or await source.version() != self.state.version:
                self.follow(await source.load())

    async def watch_store(self, interval_s: float = 0.5) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("the hub could not read the config")
            await asyncio.sleep(interval_s)

    def namespaces(self) -> set[str]:
        return {""} | {e.namespace for e in self.edges.values()} | set(self.published)

    def current(self, namespace: str) -> Current:
        if self.state is None:
            raise RuntimeError("the hub has no configuration yet")
        known = self._current.get(namespace)
        if known is not None and known.version == self.state.version:
            return known
        config = content(self.state, namespace, self.box)
        digest = checksum(config)
        if known is None:
            changed_at = self._started_at  # as far as this process can tell
        elif known.checksum != digest:
            changed_at = time.time()
        else:
            changed_at = known.changed_at
        self._current[namespace] = now = Current(self.state.version, config, digest, changed_at)
        return now

    # -- pushing ------------------------------------------------------------------------------------

    async def push(self, namespace: str) -> dict[str, Any]:
        """Publish the current content of `namespace` ("" = every namespace) and tell its edges."""
        await self.reload()
        targets = self.namespaces() if namespace == "" else {namespace}
        published = {ns: await self.publish(ns) for ns in sorted(targets)}
        told = []
        for edge in self.edges.values():
            queue = self.watchers.get(edge.edge_id)
            if edge.namespace in targets and queue is not None:
                queue.put_nowait(pb.ControlMessage(reload=pb.Reload(checksum=published[edge.namespace])))
                told.append(edge.edge_id)
        log.info("pushed %s to %d connected edge(s)", namespace or "every namespace", len(told))
        return {"namespace": namespace, "checksums": published, "edges": sorted(told)}

    async def publish(self, namespace: str) -> str:
        current = self.current(namespace)
        published = Published(current.checksum, current.version, current.config, time.time())
        await self.store.put_values({_PUBLISHED_KEY + namespace: seal(published, self.box)})
        self.published[namespace] = published
        return current.checksum

    # -- edges --------------------------------------------------------------------------------------

    def status(self, edge: EdgeRecord, now: float) -> str:
        if not edge.checksum:
            return "unknown"
        if now - edge.last_heartbeat > STALE_S:
            return "stale"
        current = self.current(edge.namespace)
        if edge.checksum == current.checksum:
            return "in_sync"
        pending_since = max(edge.checksum_at, current.changed_at)
        return "stale" if now - pending_since > STALE_S else "pending"

    def listing(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {
                "edge_id": edge.edge_id,
                "namespace": edge.namespace,
                "checksum": edge.checksum or None,
                "last_heartbeat": _iso(edge.last_heartbeat),
                "status": self.status(edge, now),
                "connected": edge.edge_id in self.watchers,
                "version": edge.version,
                "counters": edge.counters,
            }
            for edge in sorted(self.edges.values(), key=lambda e: e.edge_id)
        ]

    async def save(self, edge: EdgeRecord) -> None:
        self.edges[edge.edge_id] = edge
        await self.store.put_values({_EDGE_KEY + edge.edge_id: _edge_codec.encode(edge)})

    def lookup(self, edge: EdgeRecord, key_hash: str) -> AppEntry | None:
        app = self.apps.get(key_hash)
        if app is None or not app.active or not in_namespace(edge.namespace, app.namespace):
            return None
        return app


def _resolve(host: str) -> str:
    try:
        return socket.gethostbyname(host) if host not in ("", "0.0.0.0", "::") else "0.0.0.0"
    except OSError:
        return "0.0.0.0"


def _iso(ts: float) -> str | None:
    from gateway.admin.analytics import iso

    return iso(ts) if ts else None


class ControlService(pb_grpc.ControlServicer):
    """The RPCs, each checking the enrolment token first."""

    def __init__(self, hub: Hub, token: str | None) -> None:
        self.hub = hub
        self.token = token.encode() if token else None

    async def _check(self, context: grpc.aio.ServicerContext[Any, Any], edge_id: str) -> EdgeRecord | None:
        if self.token is not None:
            sent = dict(context.invocation_metadata() or ()).get("authorization", "")
            given = sent.encode() if isinstance(sent, str) else sent
            if not given.lower().startswith(b"bearer ") or not hmac.compare_digest(given[7:], self.token):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown edge: wrong enrolment token")
        if not edge_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "edge_id is required")
        return self.hub.edges.get(edge_id)

    async def _known(self, context: grpc.aio.ServicerContext[Any, Any], edge_id: str) -> EdgeRecord:
        edge = await self._check(context, edge_id)
        if edge is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"edge {edge_id!r} has not registered")
        return edge

    async def Register(
        self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RegisterReply:
        known = await self._check(context, request.edge_id)
        now = time.time()
        edge = EdgeRecord(
            edge_id=request.edge_id,
            namespace=request.namespace,
            version=request.version,
            checksum=request.checksum,
            checksum_at=known.checksum_at if known and known.checksum == request.checksum else now,
            registered_at=now,
            last_heartbeat=now,
            counters=known.counters if known else {},
        )
        await self.hub.save(edge)
        if request.namespace not in self.hub.published:  # a namespace's first edge: its first publish
            await self.hub.publish(request.namespace)
        log.info("edge %s registered (namespace %r)", request.edge_id, request.namespace)
        return pb.RegisterReply(published_checksum=self.hub.published[request.namespace].checksum)

    async def FetchSnapshot(
        self, request: pb.SnapshotRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SnapshotReply:
        edge = await self._known(context, request.edge_id)
        if edge.namespace not in self.hub.published:
            await self.hub.publish(edge.namespace)
        published = self.hub.published[edge.namespace]
        return pb.SnapshotReply(
            checksum=published.checksum, version=published.version, config=published.config
        )

    async def Watch(
        self, request: pb.WatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ControlMessage]:
        edge = await self._known(context, request.edge_id)
        queue: asyncio.Queue[pb.ControlMessage] = asyncio.Queue()
        self.hub.watchers[edge.edge_id] = queue  # a reconnect replaces the old stream's queue
        try:
            while True:
                yield await queue.get()
        finally:
            if self.hub.watchers.get(edge.edge_id) is queue:
                del self.hub.watchers[edge.edge_id]

    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HeartbeatReply:
        edge = await self._known(context, request.edge_id)
        now = time.time()
        if request.checksum != edge.checksum:
            edge.checksum, edge.checksum_at = request.checksum, now
        edge.last_heartbeat = now
        edge.counters = dict(request.counters)
        await self.hub.save(edge)
        published = self.hub.published.get(edge.namespace)
        return pb.HeartbeatReply(published_checksum=published.checksum if published else "")

    async def UploadAnalytics(
        self, request: pb.AnalyticsBatch, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UploadReply:
        edge = await self._known(context, request.edge_id)
        if not request.source.startswith(edge.edge_id + "/"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "source must start with '<edge_id>/'")
        try:
            records = _read_records.decode(request.records)
        except msgspec.DecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"records: {exc}")
        for record in records:
            record.edge_id = edge.edge_id
        inserted, last_id = await self.hub.store.insert_uploaded(request.source, records)
        if inserted:
            log.debug("batch %s: %d record(s) from edge %s", request.batch_id, inserted, edge.edge_id)
        return pb.UploadReply(inserted=inserted, last_id=last_id)

    async def LookupCredential(
        self, request: pb.CredentialRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CredentialReply:
        edge = await self._known(context, request.edge_id)
        app = self.hub.lookup(edge, request.key_hash)
        if app is None:
            return pb.CredentialReply(found=False)
        return pb.CredentialReply(found=True, app=_app_codec.encode(app))


class HubServer:
    """The gRPC server of a hub, on `--grpc-port`; TLS when a certificate and key are configured."""

    def __init__(self, hub: Hub, settings: Settings, *, follow_store: bool = False) -> None:
        self.hub = hub
        self.settings = settings
        self.server = grpc.aio.server(options=GRPC_OPTIONS)
        pb_grpc.add_ControlServicer_to_server(  # type: ignore[no-untyped-call]
            ControlService(hub, settings.edge_token), self.server
        )
        self.port = 0
        self.follow_store = follow_store  # no runtime in this process tells the hub of config changes
        self._watcher: asyncio.Task[None] | None = None

    def bind(self) -> int:
        """Bind the port (0 when it is taken), before anything starts."""
        address = f"{self.settings.host}:{self.settings.grpc_port}"
        if self.settings.grpc_tls_cert and self.settings.grpc_tls_key:
            with (
                open(self.settings.grpc_tls_key, "rb") as key,
                open(self.settings.grpc_tls_cert, "rb") as cert,
            ):
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            self.port = self.server.add_secure_port(address, credentials)
        else:
            self.port = self.server.add_insecure_port(address)
        return self.port

    async def start(self) -> None:
        await self.server.start()
        scheme = "grpcs" if self.settings.grpc_tls_cert else "grpc"
        log.info("control service listening on %s://%s:%d", scheme, self.settings.host, self.port)
        if not self.settings.edge_token:
            log.warning("TOLLGATE_EDGE_TOKEN is not set: the hub accepts any edge that connects")
        if scheme == "grpc" and not ipaddress.ip_address(_resolve(self.settings.host)).is_loopback:
            log.warning(
                "the control service has no TLS (--grpc-tls-cert/--grpc-tls-key): snapshots carry upstream "
                "keys to edges unencrypted"
            )
        if self.follow_store:
            self._watcher = asyncio.create_task(self.hub.watch_store(), name="hub-config")

    async def stop(self, grace_s: float = 1.0) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        await self.server.stop(grace_s)
