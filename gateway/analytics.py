"""Analytics off the hot path: requests append records to a buffer, a writer task inserts them in batches.

A failed write keeps the batch and retries with backoff; `close` writes everything that is left, so a
clean shutdown loses nothing. The buffer is bounded (a store down for long would otherwise eat the
memory): past the bound the oldest records are dropped and counted in `tollgate_analytics_dropped_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.metrics import Metrics
from store.base import Store
from store.records import AnalyticsRecord

log = logging.getLogger("tollgate.analytics")


class AnalyticsWriter:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        batch_size: int = 1000,
        interval_s: float = 0.2,
        max_buffered: int = 500_000,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._max_buffered = max_buffered
        self._buffer: list[AnalyticsRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.recorded = 0  # since start (an edge's heartbeat reports these)
        self.refused = 0  # of them, with a status of 400 or more

    def record(self, record: AnalyticsRecord) -> None:
        self.recorded += 1
        if record.status_code >= 400:
            self.refused += 1
        self._buffer.append(record)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="analytics-writer")

    async def close(self) -> None:
        """Stop the writer and write what is left (a few retries if the store is failing)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for attempt in range(5):
            if not self._buffer or await self._flush():
                break
            await asyncio.sleep(0.2 * (attempt + 1))
        if self._buffer:
            log.error("analytics: %d records could not be written at shutdown", len(self._buffer))
            self._metrics.analytics_dropped.inc(len(self._buffer))

    async def _run(self) -> None:
        backoff = self._interval_s
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            if self._closing:
                return
            ok = await self._flush()
            backoff = self._interval_s if ok else min(backoff * 2, 5.0)

    async def _flush(self) -> bool:
        """Write the buffer in batches; False (records kept) when the store fails."""
        while self._buffer:
            batch = self._buffer[: self._batch_size]
            try:
                await self._store.insert_records(batch)
            except Exception:  # the store's failure must never lose the records: keep them, retry later
                log.exception("analytics: writing %d records failed; will retry", len(batch))
                self._trim()
                self._metrics.analytics_queue.set(len(self._buffer))
                return False
            del self._buffer[: len(batch)]
            self._metrics.analytics_written.inc(len(batch))
        self._metrics.analytics_queue.set(0)
        return True

    def _trim(self) -> None:
        excess = len(self._buffer) - self._max_buffered
        if excess > 0:
            del self._buffer[:excess]
            self._metrics.analytics_dropped.inc(excess)
            log.error("analytics: buffer full, dropped the %d oldest records", excess)
