"""Running `tollgate serve`: open the store, apply the bootstrap, serve, and shut down gracefully.

The servers run as gateway/listen.py runs them: SIGTERM/SIGINT first drains (`/readyz` answers 503 for
`--drain-s` while requests are still served), then stops accepting, lets in-flight requests and streams
finish within `--shutdown-timeout-s`, flushes analytics and exits 0. A second SIGINT forces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from typing import TYPE_CHECKING

from gateway.admin.app import build_admin_app
from gateway.admin.service import ConfigService
from gateway.app import GatewayApp
from gateway.cache import MemoryBackend, RedisBackend, ResponseCache
from gateway.cooldowns import SharedCooldowns
from gateway.listen import MOCK, Server, StartupError, bind, make_server, run_loop, run_servers
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.types import ASGIApp
from pipeline.counters.base import Counters
from pipeline.counters.failover import FailoverCounters
from pipeline.counters.host import HostCounters
from pipeline.counters.local import LocalCounters
from pipeline.counters.redis import RedisCounters
from store.base import Store, StoreError
from store.sqlite import SqliteStore
from sync.bootstrap import BootstrapError, apply_bootstrap
from sync.loader import ConfigError, load_config
from sync.model import CacheStore, ConfigFile
from sync.secrets import SecretBox, SecretError

if TYPE_CHECKING:
    from sync.edge import EdgeAgent
    from sync.hub import HubServer

log = logging.getLogger("tollgate")


def secret_box(settings: Settings) -> SecretBox:
    if settings.secret_key:
        return SecretBox.from_passphrase(settings.secret_key)
    path = settings.sqlite_path
    try:
        return SecretBox.from_key_file(path.with_name(path.name + ".key"))
    except (SecretError, OSError) as exc:
        raise StartupError(f"the secrets key file: {exc}") from None


def check(settings: Settings) -> ConfigFile | None:
    """Everything that can fail before anything starts: the store URL and the config file."""
    if settings.postgres:
        if not settings.secret_key:
            raise StartupError(
                "--db postgresql:// needs TOLLGATE_SECRET_KEY: every gateway on the database seals and "
                "opens its secrets with the same master key"
            )
    elif not settings.db.startswith("sqlite:///"):
        raise StartupError(f"--db {settings.db!r}: expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    elif not settings.sqlite_path.name or settings.sqlite_path.is_dir():
        raise StartupError(f"--db {settings.db!r}: expected sqlite:///PATH to a database file")
    if settings.workers < 1:
        raise StartupError("--workers must be at least 1")
    if settings.mode == "edge":
        if not settings.hub:
            raise StartupError("--mode edge needs --hub HOST:PORT (the hub's gRPC address)")
        if settings.config is not None:
            raise StartupError("--config is for a hub or a standalone gateway: an edge's comes from --hub")
        if settings.workers > 1:
            raise StartupError("--mode edge runs one worker in this version: run several edges instead")
    if bool(settings.grpc_tls_cert) != bool(settings.grpc_tls_key):
        raise StartupError("--grpc-tls-cert and --grpc-tls-key go together")
    if settings.config is None:
        return None
    try:
        return load_config(settings.config)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None


def notes(settings: Settings, cfg: ConfigFile | None) -> list[str]:
    """Process-level warnings: flags and config sections whose feature is not built yet."""
    out = settings.unbuilt()
    if cfg is not None and cfg.cache is not None and cfg.cache.embedding is not None:
        out.append(
            "cache.embedding is not used yet: semantic mode is not built (entries are looked up exactly)"
        )
    return out


def make_store(settings: Settings) -> Store:
    """The store of `--db`: SQLite (the default, one host) or PostgreSQL (shared by several gateways)."""
    if settings.postgres:
        from store.postgres import PostgresStore  # asyncpg only when it is used

        return PostgresStore(settings.db, settings.db_pool)
    return SqliteStore(settings.sqlite_path)


async def open_store(settings: Settings, box: SecretBox, cfg: ConfigFile | None) -> Store:
    """The migrated store with the bootstrap applied; a failure closes it again (its thread would keep
    the process alive) and becomes a one-line StartupError."""
    store = make_store(settings)
    try:
        await store.open()
        if cfg is not None:
            for app, key in await apply_bootstrap(store, box, cfg):
                print(f"app '{app}': generated API key {key} (shown once; keep it)", flush=True)
    except BaseException as exc:
        await store.close()
        if isinstance(exc, StoreError | BootstrapError | SecretError):
            raise StartupError(str(exc)) from None
        raise
    return store


async def start_runtime(runtime: Runtime) -> None:
    try:
        await runtime.start()
    except BaseException as exc:
        await runtime.stop()
        if isinstance(exc, SecretError):
            raise StartupError(
                f"{exc} (is TOLLGATE_SECRET_KEY the one these secrets were sealed with?)"
            ) from None
        raise


async def serve_single(settings: Settings, cfg: ConfigFile | None) -> None:
    """workers = 1: the gateway, the admin API, the bundled mock and, by mode, the hub's control service
    or the edge's sync with its hub share one event loop."""
    box = secret_box(settings)
    store = await open_store(settings, box, cfg)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        agent = await open_edge(settings, store, box) if settings.mode == "edge" else None
        runtime = Runtime(
            store,
            box,
            notes=notes(settings, cfg),
            max_body_bytes=settings.max_body_bytes,
            counters=counters(settings, host_socket=None),
            cache=response_cache(settings, cfg.cache if cfg is not None else None),
            embedding=cfg.cache.embedding if cfg is not None and cfg.cache is not None else None,
            cooldowns=SharedCooldowns(settings.redis) if settings.redis else None,
            edge_id=agent.edge_id if agent is not None else "",
            source=agent,
            credentials=agent,
        )
        hub = await open_hub(settings, store, box, runtime) if settings.mode == "control" else None
        await start_runtime(runtime)
        stack.push_async_callback(runtime.stop)
        if agent is not None:
            agent.on_apply = runtime.reload
            agent.counters = lambda: {
                "requests": runtime.analytics.recorded,
                "errors": runtime.analytics.refused,
                "analytics_pending": runtime.analytics.pending,
            }
            runtime.sync_status = agent.status
            agent.start()
            stack.push_async_callback(agent.close)  # after runtime.stop: one last upload of its flush
        if hub is not None:
            await hub.start()
            stack.push_async_callback(hub.stop)
        servers = [
            ("gateway", make_server(GatewayApp(runtime), settings), bind(settings.host, settings.port))
        ]
        servers += side_servers(settings, cfg, store, box, runtime, hub=hub, agent=agent)
        await run_servers(servers, on_stop=lambda: drain(runtime, settings))


async def open_edge(settings: Settings, store: Store, box: SecretBox) -> EdgeAgent:
    from sync.edge import EdgeAgent  # grpcio only in the modes that use it

    agent = EdgeAgent(settings, store, box)
    await agent.open()
    return agent


async def open_hub(settings: Settings, store: Store, box: SecretBox, runtime: Runtime | None) -> HubServer:
    """The hub's control service, its port bound; it follows `runtime`'s config, or the store's."""
    from sync.hub import Hub, HubServer

    hub = Hub(store, box)
    await hub.open()
    if runtime is not None:
        runtime.on_reload.append(hub.follow)
        hub.reload = runtime.reload
    else:
        await hub.refresh()
    server = HubServer(hub, settings, follow_store=runtime is None)
    try:
        port = server.bind()
    except (RuntimeError, OSError) as exc:
        raise StartupError(f"cannot listen on {settings.host}:{settings.grpc_port} (gRPC): {exc}") from None
    if not port:
        raise StartupError(f"cannot listen on {settings.host}:{settings.grpc_port} (gRPC): port taken")
    return server


def counters(settings: Settings, host_socket: str | None) -> Counters:
    """Where this process keeps rate windows and budgets: Redis when `--redis` is given (falling back to
    this host's counters while it is unreachable), else this host's: the process's own with one worker,
    the supervisor's (over `host_socket`) with several."""
    local: Counters = LocalCounters()
    if host_socket:  # and, should the supervisor's socket fail, this worker's own as the last resort
        local = FailoverCounters(HostCounters(host_socket), local)
    if settings.redis:
        return FailoverCounters(RedisCounters(settings.redis), local)
    return local


def response_cache(settings: Settings, store: CacheStore | None) -> ResponseCache:
    """The response cache's store: in this process (an LRU of `max_entries`), or Redis (`--redis`)."""
    store = store or CacheStore()
    if store.backend == "redis":
        if not settings.redis:
            raise StartupError("cache: backend redis needs --redis URL")
        return ResponseCache(RedisBackend(settings.redis))
    return ResponseCache(MemoryBackend(store.max_entries))


async def drain(runtime: Runtime, settings: Settings) -> None:
    """Keep serving while /readyz answers 503, so load balancers stop sending first."""
    runtime.draining = True
    log.info("draining for %.1f s (readyz answers 503), then finishing in-flight requests", settings.drain_s)
    await asyncio.sleep(settings.drain_s)


def side_servers(
    settings: Settings,
    cfg: ConfigFile | None,
    store: Store,
    box: SecretBox,
    runtime: Runtime | None,
    *,
    hub: HubServer | None = None,
    agent: EdgeAgent | None = None,
) -> list[tuple[str, Server, socket.socket]]:
    """The admin API (an edge's: its sync status only) and, when the config asks for it, the bundled
    mock upstream."""
    admin: ASGIApp
    if agent is not None:
        from gateway.admin.edge import build_edge_admin_app

        admin = build_edge_admin_app(agent, store, settings.admin_token)
    else:
        if not settings.admin_token:
            log.warning("TOLLGATE_ADMIN_TOKEN is not set: the admin API accepts only admin users' API keys")
        reload = hub.hub.reload if hub is not None else runtime.reload if runtime is not None else _nothing
        service = ConfigService(store, box, reload)
        admin = build_admin_app(service, store, settings.admin_token, hub.hub if hub is not None else None)
    out = [("admin", make_server(admin, settings, timeout_s=5), bind(settings.host, settings.admin_port))]
    if cfg is not None and cfg.mock_upstream is not None:
        from mocks.openai import MockOpenAI  # only when asked for: not a dependency of the gateway

        mock = cfg.mock_upstream
        server = make_server(MockOpenAI(api_key=mock.api_key), settings)
        out.append((MOCK, server, bind(mock.host, mock.port)))
    return out


async def _nothing() -> None:
    return None


def serve(settings: Settings) -> int:
    """`tollgate serve`: returns the process's exit code."""
    try:
        cfg = check(settings)
        if settings.workers > 1:
            from gateway.supervisor import serve_workers

            serve_workers(settings, cfg)
        else:
            run_loop(serve_single(settings, cfg))
    except StartupError as exc:
        print(f"tollgate: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
