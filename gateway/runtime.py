"""Per-process state, built by the lifespan and passed along: no module-level mutable state anywhere.

The runtime owns the one pooled HTTP client, the current snapshot (a reference swapped whole), the
analytics writer and the metrics, and rebuilds the snapshot when its config source's version moves (the
store's; on an edge, what the hub pushed).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from gateway.analytics import AnalyticsWriter
from gateway.cache import MemoryBackend, ResponseCache
from gateway.cooldowns import SharedCooldowns
from gateway.metrics import Metrics
from pipeline.auth import Credentials
from pipeline.counters.base import NANO_USD, Counters, CountersUnavailable
from pipeline.counters.failover import FailoverCounters
from pipeline.counters.local import LocalCounters
from pipeline.plugins.hosts import PluginHosts
from pipeline.registry import Services
from store.base import Store
from sync.model import EmbeddingRef
from sync.secrets import SecretBox
from sync.snapshot import Snapshot, build_async, uses_semantic
from sync.state import ConfigSource, ConfigState, StoreSource

log = logging.getLogger("tollgate")

WATCH_INTERVAL_S = 0.5
UPSTREAM_IDLE_S = 4.0  # pooled upstream connections idle longer than this are not reused
PLUGIN_START_S = 10.0  # how long startup waits for the plugins to answer (then they start late)


class Runtime:
    def __init__(
        self,
        store: Store,
        box: SecretBox,
        *,
        notes: Sequence[str] = (),
        max_body_bytes: int = 10 * 1024 * 1024,
        edge_id: str = "",
        counters: Counters | None = None,
        source: ConfigSource | None = None,
        credentials: Credentials | None = None,
        cache: ResponseCache | None = None,
        embedding: EmbeddingRef | None = None,
        cooldowns: SharedCooldowns | None = None,
    ) -> None:
        self.store = store
        self.box = box
        self.notes = tuple(notes)
        self.max_body_bytes = max_body_bytes
        self.edge_id = edge_id
        self.metrics = Metrics()
        self.analytics = AnalyticsWriter(store, self.metrics)
        self.counters = counters or LocalCounters()
        self.cache = cache or ResponseCache(MemoryBackend())
        self.cache.metrics = self.metrics
        self.cooldowns = cooldowns  # route targets' cool-downs shared through Redis
        self.embedding = embedding  # the semantic cache's model: an LLM here, else the bundled local one
        self._semantic: tuple[Any, Any] | None = None  # (embedder, index), made on first use
        self.semantic_problem: str | None = None  # why semantic mode cannot work here (readyz)
        self.store_problem: str | None = None  # the last config poll failed (readyz, /metrics)
        self.plugins = PluginHosts()
        self.services = Services(counters=self.counters, plugins=self.plugins, credentials=credentials)
        self._store_source = StoreSource(store)
        self.source = source or self._store_source
        self._notified: set[asyncio.Task[None]] = set()
        self.state: ConfigState | None = None  # what the snapshot was built from
        # Called after each swap (a hub's edge service follows the config this way).
        self.on_reload: list[Callable[[ConfigState, Snapshot], None]] = []
        self.sync_status: Callable[[], dict[str, Any]] | None = None  # an edge's, for /readyz
        if isinstance(self.counters, FailoverCounters):
            self.counters.on_change = self._counters_changed
            leases = getattr(self.counters.primary, "leases", None)
            if leases is not None:  # Redis's: how many requests it admitted without a round trip
                self.metrics.leased = lambda: leases.local
        self.snapshot = Snapshot.empty()
        self.draining = False
        self.inflight = 0
        self._http: aiohttp.ClientSession | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self._tick = 0

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("the runtime is not started")
        return self._http

    @property
    def ready(self) -> bool:
        return self.snapshot.version >= 0 and not self.draining

    async def start(self) -> None:
        if await self.source.version() >= 0:  # an edge that has nothing yet waits for its hub
            await self.reload()
        await self.seed_budgets()
        # ready only once the plugins answer: a fail-closed filter would refuse the first requests
        await asyncio.gather(*(plugin.wait_ready(PLUGIN_START_S) for plugin in self.plugins))
        # One keep-alive pool per process. No total limit: streams hold connections for minutes. An idle
        # connection is dropped before the upstream would drop it (uvicorn and Node close after 5 s): a
        # request sent on a connection the server is closing fails, and a POST is not retried.
        connector = aiohttp.TCPConnector(
            limit=0, ttl_dns_cache=300, enable_cleanup_closed=True, keepalive_timeout=UPSTREAM_IDLE_S
        )
        self._http = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        self.analytics.start()
        await self._listen()
        self._watcher = asyncio.create_task(self._housekeeping(), name="housekeeping")

    async def stop(self, grace_s: float = 2.0) -> None:
        """After the servers stopped: let cancelled requests record themselves, flush, close."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for _ in range(int(grace_s / 0.05)):
            if self.inflight == 0:
                break
            await asyncio.sleep(0.05)
        await self.analytics.close()
        await self.counters.close()
        await self.cache.close()
        if self.cooldowns is not None:
            await self.cooldowns.close()
        await self.plugins.close()
        self.metrics.flush()
        if self._http is not None:
            await self._http.close()

    async def seed_budgets(self) -> None:
        """Budget spend of this month so far, from the analytics (kept by restarts; Redis keeps what other
        gateways booked, and only keys it has no state for take these figures)."""
        now = time.time()
        start = time.gmtime(now)
        month_start = calendar.timegm((start.tm_year, start.tm_mon, 1, 0, 0, 0))
        spent = await self.store.spend(month_start)
        month = time.strftime("%Y-%m", start)
        try:
            await self.counters.seed(month, {key: round(usd * NANO_USD) for key, usd in spent.items()})
        except CountersUnavailable as exc:
            log.warning("budget spend could not be seeded into the counters: %s", exc)

    @property
    def counters_degraded(self) -> bool:
        return (
            isinstance(self.counters, FailoverCounters)
            and self.counters.primary.name == "redis"
            and (self.counters.degraded)
        )

    def _counters_changed(self, degraded: bool) -> None:
        self.metrics.counters_degraded.set(1 if degraded else 0)
        if degraded:
            self.metrics.counters_failovers.inc()

    async def reload(self) -> None:
        """Rebuild the snapshot from the store and swap it in; requests in flight keep the old one."""
        async with self._reload_lock:
            # A reload that waited for the lock finds the work done more often than not: loading a
            # large config (100k apps) costs a second, checking the version one row.
            if await self.source.version() == self.snapshot.version:
                return
            state = await self.source.load()
            if state.version == self.snapshot.version:
                return
            previous = set(self.snapshot.warnings)
            snapshot = await build_async(state, self.box, self.notes, self.services, self.snapshot)
            self.plugins.retain(snapshot.plugin_commands)
            self.snapshot = snapshot
            self.state = state
            # A snapshot is tens of thousands of long-lived objects: left to the collector, the next
            # builds trigger full collections that stop the loop for tens of ms (bench/sync.py). Frozen,
            # they are out of its way; a replaced snapshot has no cycles, so it is still freed (by
            # reference counting) when the last request holding it ends.
            gc.collect(1)
            gc.freeze()
        self.metrics.snapshot_version.set(snapshot.version)
        for listener in self.on_reload:
            listener(state, snapshot)
        self._check_semantic(snapshot)
        for warning in snapshot.warnings:
            if warning not in previous:
                log.warning("%s", warning)

    async def _listen(self) -> None:
        """Be told of config changes by the store (PostgreSQL's NOTIFY) instead of waiting for the poll."""
        listen = getattr(self.store, "listen", None)
        if listen is None or self.source is not self._store_source or getattr(self.store, "listening", False):
            return
        try:
            await listen(self._config_changed)
        except Exception as exc:  # the poll still finds every change, within half a second
            log.warning("config notifications unavailable (%s); polling the store", exc)

    def _config_changed(self) -> None:
        task = asyncio.ensure_future(self._reload_notified())
        self._notified.add(task)
        task.add_done_callback(self._notified.discard)

    async def _reload_notified(self) -> None:
        try:
            await self.reload()
        except Exception:  # the poll tries again; the last snapshot is served meanwhile
            log.exception("config reload failed; still serving version %d", self.snapshot.version)

    async def _route_health(self) -> None:
        """Cool-downs that other gateways started (through Redis), and the health gauge of each target."""
        routes = list(self.snapshot.routes.values())
        pairs = [(route, target) for route in routes for target in route.targets]
        if self.cooldowns is not None and pairs:
            remaining = await self.cooldowns.cooling([(r.slug, t.llm) for r, t in pairs])
            now = time.monotonic()
            for (route, target), seconds in zip(pairs, remaining, strict=True):
                health = self.services.routing.state(route.slug).of(target)
                if seconds > 0:
                    health.cooled_until = max(health.cooled_until, now + seconds)
        now = time.monotonic()
        for route, target in pairs:
            healthy = 1 if self.services.routing.state(route.slug).of(target).cooled_until <= now else 0
            self.metrics.route_target_healthy.labels(route.slug, target.llm).set(healthy)

    def semantic(self) -> tuple[Any, Any] | None:
        """The semantic cache's embedder and vector index (gateway/semantic.py, numpy: imported only
        when a call first needs them); None when no embedding model is available."""
        if self._semantic is None and self.semantic_problem is None:
            from gateway import semantic

            embedder: Any
            if self.embedding is not None:
                embedder = semantic.LlmEmbedder(self.embedding, self.http, lambda: self.snapshot)
            elif semantic.LocalEmbedder.available():
                embedder = semantic.LocalEmbedder()
            else:
                return None
            redis = getattr(self.cache.backend, "redis", None)  # the Redis backend: vectors beside answers
            index = semantic.RedisVectorIndex(redis) if redis is not None else semantic.VectorIndex()
            self._semantic = (embedder, index)
            self.cache.index = index
        return self._semantic

    def _check_semantic(self, snapshot: Snapshot) -> None:
        import importlib.util

        users = uses_semantic(snapshot)
        if not users or self.embedding is not None or importlib.util.find_spec("wordllama") is not None:
            self.semantic_problem = None
            return
        problem = (
            f"cache mode semantic ({', '.join(users[:5])}): no embedding model; set cache.embedding or pip "
            "install 'tollgate[semantic]' (a bundled local model); until then entries are looked up exactly"
        )
        if problem != self.semantic_problem:
            log.warning("%s", problem)
        self.semantic_problem = problem

    async def _housekeeping(self) -> None:
        """Twice a second: move request metrics into prometheus-client, and reload a changed config."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            self.metrics.flush()
            for plugin in self.plugins:
                self.metrics.plugin_restarts.labels(plugin.name).set(plugin.restarts)
                self.metrics.plugin_failures.labels(plugin.name).set(plugin.failures)
            await self._route_health()
            if self._tick % 10 == 0:  # a lost LISTEN connection comes back within 5 s
                await self._listen()
            self._tick += 1
            try:
                if await self.source.version() != self.snapshot.version:
                    await self.reload()
                self.store_problem = None
            except Exception as exc:  # a failing store must not stop the watcher: serve the last snapshot
                if self.store_problem is None:
                    log.exception("config reload failed; still serving version %d", self.snapshot.version)
                self.store_problem = (
                    f"the store does not answer ({type(exc).__name__}): serving the last snapshot"
                )
            self.metrics.store_up.set(0 if self.store_problem else 1)
            if self.snapshot.version >= 0:
                self.metrics.snapshot_age.set(time.time() - self.snapshot.built_at)
