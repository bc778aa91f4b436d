"""asyncpg against psycopg 3 (async) on what the PostgreSQL store does most (issue 8: "pick by measurement").

    pip install 'psycopg[binary]' && python bench/pg_drivers.py

On a fresh database of the local PostgreSQL (127.0.0.1:5432), one connection each, medians of 3:
- the config poll: `SELECT value FROM meta WHERE key = 'config_version'`, --polls times, µs per call;
- analytics: COPY of batches of 1,000 records (27 columns) for --seconds, records per second;
- a config read: every row of a 1,000-row table, ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from store.migrations import POSTGRES
from store.records import RECORD_FIELDS, AnalyticsRecord
from store.sql import record_params
from tests.support import create_database, drop_database

COLUMNS = [("ts" if f == "timestamp" else f) for f in RECORD_FIELDS]
POLL = "SELECT value FROM meta WHERE key = 'config_version'"


def batch() -> list[tuple[Any, ...]]:
    rows = []
    for i in range(1000):
        record = AnalyticsRecord(
            timestamp=time.time(), request_id=f"r{i}", interaction_type="chat", status_code=200, app_id=1
        )
        values = list(record_params(record))
        values[RECORD_FIELDS.index("stream")] = int(values[RECORD_FIELDS.index("stream")])
        rows.append(tuple(values))
    return rows


async def prepare(url: str) -> None:
    conn = await asyncpg.connect(url)
    for steps in POSTGRES:
        for statement in steps:
            await conn.execute(statement)
    await conn.executemany(
        "INSERT INTO llms (name, namespace, data, created_at, updated_at) VALUES ($1, '', $2, 0, 0)",
        [(f"llm-{i}", b'{"slug": "x", "vendor": "openai"}' * 4) for i in range(1000)],
    )
    await conn.close()


async def with_asyncpg(url: str, polls: int, seconds: float) -> dict[str, float]:
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    for _ in range(polls):
        await conn.fetchval(POLL)
    poll_us = (time.perf_counter() - started) / polls * 1e6
    rows, written = batch(), 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        await conn.copy_records_to_table("analytics", records=rows, columns=COLUMNS)
        written += len(rows)
    rate = written / (time.perf_counter() - started)
    started = time.perf_counter()
    await conn.fetch(
        "SELECT id, name, namespace, data, key_hash, created_at, updated_at FROM llms ORDER BY id"
    )
    read_ms = (time.perf_counter() - started) * 1000
    await conn.close()
    return {"poll_us": poll_us, "copy_records_per_s": rate, "read_1000_rows_ms": read_ms}


async def with_psycopg(url: str, polls: int, seconds: float) -> dict[str, float]:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    started = time.perf_counter()
    for _ in range(polls):
        await (await conn.execute(POLL)).fetchone()
    poll_us = (time.perf_counter() - started) / polls * 1e6
    rows, written = batch(), 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        async with (
            conn.cursor() as cur,
            cur.copy(f"COPY analytics ({', '.join(COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in rows:
                await copy.write_row(row)
        written += len(rows)
    rate = written / (time.perf_counter() - started)
    started = time.perf_counter()
    cur = await conn.execute(
        "SELECT id, name, namespace, data, key_hash, created_at, updated_at FROM llms ORDER BY id"
    )
    await cur.fetchall()
    read_ms = (time.perf_counter() - started) * 1000
    await conn.close()
    return {"poll_us": poll_us, "copy_records_per_s": rate, "read_1000_rows_ms": read_ms}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--polls", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()
    url = create_database()
    try:
        asyncio.run(prepare(url))
        results: dict[str, list[dict[str, float]]] = {"asyncpg": [], "psycopg": []}
        for _ in range(3):
            results["asyncpg"].append(asyncio.run(with_asyncpg(url, args.polls, args.seconds)))
            results["psycopg"].append(asyncio.run(with_psycopg(url, args.polls, args.seconds)))
    finally:
        drop_database(url)
    print("| driver | config poll | COPY | read 1,000 rows |\n|---|---|---|---|")
    for name, runs in results.items():
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {name} | {median['poll_us']:.0f} µs | {median['copy_records_per_s']:,.0f} records/s | "
              f"{median['read_1000_rows_ms']:.1f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
