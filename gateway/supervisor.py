"""`--workers N`: N gateway processes accepting on one shared socket, supervised by the parent.

The parent migrates the store and applies the bootstrap once, binds the gateway port, and runs the admin
API and the bundled mock itself. Each worker has its own runtime (HTTP pool, snapshot, analytics writer)
and notices admin changes through the store's config version. A worker that dies is started again.
On SIGTERM the parent passes it on; every worker drains and finishes on its own, then the parent stops.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.context import SpawnProcess

from gateway.app import GatewayApp
from gateway.cooldowns import SharedCooldowns
from gateway.listen import bind, make_server, run_loop, run_servers
from gateway.logs import configure_logging
from gateway.runtime import Runtime
from gateway.server import (
    counters,
    drain,
    make_store,
    notes,
    open_hub,
    open_store,
    response_cache,
    secret_box,
    side_servers,
    start_runtime,
)
from gateway.settings import Settings
from pipeline.counters.host import CounterServer
from store.base import Store
from sync.model import CacheStore, ConfigFile
from sync.secrets import SecretBox

log = logging.getLogger("tollgate")
_spawn = multiprocessing.get_context("spawn")
_RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)


def serve_workers(settings: Settings, cfg: ConfigFile | None) -> None:
    owned_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        owned_dir = tempfile.mkdtemp(prefix="tollgate-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = owned_dir
    sock = bind(settings.host, settings.port)
    try:
        run_loop(_parent(settings, cfg, sock))
    finally:
        sock.close()
        if owned_dir:
            shutil.rmtree(owned_dir, ignore_errors=True)


async def _parent(settings: Settings, cfg: ConfigFile | None, sock: socket.socket) -> None:
    box = secret_box(settings)  # creates the key file before any worker could race for it
    store = await open_store(settings, box, cfg)
    try:
        await _check_secrets(store, box)
    except BaseException:
        await store.close()
        raise
    # The workers' shared rate windows and budgets (and the fallback while Redis is unreachable).
    counter_dir = tempfile.mkdtemp(prefix="tollgate-counters-")
    counter_server = CounterServer(os.path.join(counter_dir, "counters.sock"))
    await counter_server.start()
    pool = WorkerPool(settings, notes(settings, cfg), sock, counter_server.path, cfg.cache if cfg else None)
    pool.start()
    host, port = sock.getsockname()[:2]
    log.info("gateway listening on http://%s:%d (%d workers)", host, port, settings.workers)
    hub = None
    try:
        if settings.mode == "control":
            hub = await open_hub(settings, store, box, None)
            await hub.start()
        await run_servers(side_servers(settings, cfg, store, box, None, hub=hub), on_stop=pool.stop)
    finally:
        if hub is not None:
            await hub.stop()
        await pool.stop()
        await counter_server.close()
        shutil.rmtree(counter_dir, ignore_errors=True)
        await store.close()


class WorkerPool:
    def __init__(
        self,
        settings: Settings,
        notes: list[str],
        sock: socket.socket,
        counters: str,
        cache: CacheStore | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.notes = notes
        self.sock = sock
        self.counters = counters
        self.workers: list[SpawnProcess] = []
        self.stopping = False
        self._supervisor: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.workers = [self._spawn() for _ in range(self.settings.workers)]
        self._supervisor = asyncio.create_task(self._supervise())

    def _spawn(self) -> SpawnProcess:
        process = _spawn.Process(
            target=worker_main,
            args=(self.settings, self.notes, self.sock, self.counters, self.cache),
            daemon=False,
        )
        process.start()
        return process

    async def _supervise(self) -> None:
        crashes: list[float] = []
        while not self.stopping:
            await asyncio.sleep(0.5)
            for i, process in enumerate(self.workers):
                if process.is_alive() or self.stopping:
                    continue
                _mark_dead(process.pid)
                now = time.monotonic()
                crashes = [t for t in crashes if now - t < 60] + [now]
                delay = _RESTART_BACKOFF_S[min(len(crashes) - 1, len(_RESTART_BACKOFF_S) - 1)]
                log.error(
                    "gateway worker %s exited with %s; restarting in %.1f s",
                    process.pid,
                    process.exitcode,
                    delay,
                )
                await asyncio.sleep(delay)
                if not self.stopping:
                    self.workers[i] = self._spawn()

    async def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        for process in self.workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_s + self.settings.shutdown_timeout_s + 10
        while any(p.is_alive() for p in self.workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for process in self.workers:
            if process.is_alive():
                log.error("gateway worker %s did not stop in time; killing it", process.pid)
                process.kill()
            process.join(1)
            _mark_dead(process.pid)


def _mark_dead(pid: int | None) -> None:
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def worker_main(
    settings: Settings, notes: list[str], sock: socket.socket, counters: str, cache: CacheStore | None = None
) -> None:
    """A worker process: its own runtime, serving the parent's socket until SIGTERM."""
    configure_logging(settings.log_level)
    run_loop(_worker(settings, notes, sock, counters, cache))


async def _check_secrets(store: Store, box: SecretBox) -> None:
    """Build one snapshot in the parent, so a wrong master key is one line here, not N crashing workers."""
    probe = Runtime(store, box)
    await start_runtime(probe)
    await probe.stop()


async def _worker(
    settings: Settings, notes: list[str], sock: socket.socket, host_socket: str, cache: CacheStore | None
) -> None:
    box = secret_box(settings)
    store = make_store(settings)
    await store.open()
    runtime = Runtime(
        store,
        box,
        notes=notes,
        max_body_bytes=settings.max_body_bytes,
        counters=counters(settings, host_socket),
        cache=response_cache(settings, cache),
        embedding=cache.embedding if cache is not None else None,
        cooldowns=SharedCooldowns(settings.redis) if settings.redis else None,
    )
    try:
        await start_runtime(runtime)
    except BaseException:
        await store.close()
        raise
    try:
        server = make_server(GatewayApp(runtime), settings)
        await run_servers(
            [(f"gateway worker {os.getpid()}", server, sock)], on_stop=lambda: drain(runtime, settings)
        )
    finally:
        await runtime.stop()
        await store.close()
