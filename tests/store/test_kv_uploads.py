"""The store's state beside the config (kv) and an edge's analytics upload: prefix reads, idempotent
batches with a watermark per source, reads after an id, pruning, and ids that are never reused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from store.base import Store
from store.records import AnalyticsRecord
from tests.support import store_at

T = TypeVar("T")


def with_store(path: Path, body: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store at `path` (SQLite, or PostgreSQL with `--store postgres`), run `body`, close it."""

    async def main() -> T:
        store = store_at(path)
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def record(id: int, ts: float = 1_700_000_000.0) -> AnalyticsRecord:
    """An edge's record `id` (its request id names it, since the hub gives it an id of its own)."""
    return AnalyticsRecord(id=id, timestamp=ts, request_id=f"r{id}", interaction_type="chat", status_code=200)


def batch(first: int, last: int) -> list[AnalyticsRecord]:
    return [record(i) for i in range(first, last + 1)]


async def request_ids(store: Store) -> list[str]:
    return [r.request_id for r in await store.records_after(0, 1000)]


# --- kv ----------------------------------------------------------------------------------------------------


def test_values_are_read_by_exact_case_sensitive_prefix(tmp_path: Path) -> None:
    """get_values("edge:") returns the keys starting with exactly "edge:", not "Edge:x", "edgex" or "edge"."""
    values = {
        "edge:a": b"1",
        "edge:b/c": b"\x00\xff",
        "edge:\u00e9t\u00e9": b"3",
        "edge:\U0001f600": b"4",
        "Edge:x": b"5",
        "EDGE:y": b"6",
        "edgex": b"7",
        "edge": b"8",
        "edge;": b"9",
        "hub:edge:z": b"10",
    }

    async def body(store: Store) -> None:
        await store.put_values(values)
        assert await store.get_values("edge:") == {k: v for k, v in values.items() if k.startswith("edge:")}
        assert await store.get_values("Edge:") == {"Edge:x": b"5"}
        assert await store.get_values("edge:b/") == {"edge:b/c": b"\x00\xff"}
        assert await store.get_values("") == values
        assert await store.get_values("nothing:") == {}

    with_store(tmp_path / "t.db", body)


def test_none_deletes_and_a_value_overwrites(tmp_path: Path) -> None:
    """A None value deletes its key (a missing key is no error); another value replaces the old one."""

    async def body(store: Store) -> None:
        await store.put_values({"edge:a": b"1", "edge:b": b"2", "edge:c": b"3"})
        await store.put_values({"edge:a": None, "edge:b": b"two", "edge:missing": None})
        assert await store.get_values("edge:") == {"edge:b": b"two", "edge:c": b"3"}

    with_store(tmp_path / "t.db", body)


def test_kv_writes_do_not_bump_the_config_version(tmp_path: Path) -> None:
    """kv writes and deletes leave config_version alone (gateways do not rebuild for them)."""

    async def body(store: Store) -> None:
        before = await store.config_version()
        await store.put_values({"edge:a": b"1"})
        await store.put_values({"edge:a": None})
        assert await store.config_version() == before

    with_store(tmp_path / "t.db", body)


def test_values_survive_reopening(tmp_path: Path) -> None:
    """kv entries are on disk: another process opening the store reads them."""
    db = tmp_path / "t.db"
    with_store(db, lambda s: s.put_values({"edge:snapshot": b"sealed"}))
    assert with_store(db, lambda s: s.get_values("edge:")) == {"edge:snapshot": b"sealed"}


# --- uploads -----------------------------------------------------------------------------------------------


def test_a_batch_sent_twice_lands_once(tmp_path: Path) -> None:
    """The same batch inserted twice: (10, 10) then (0, 10), and ten rows."""

    async def body(store: Store) -> None:
        assert await store.insert_uploaded("edge-a", batch(1, 10)) == (10, 10)
        assert await store.insert_uploaded("edge-a", batch(1, 10)) == (0, 10)
        assert await request_ids(store) == [f"r{i}" for i in range(1, 11)]

    with_store(tmp_path / "t.db", body)


def test_an_overlapping_batch_inserts_only_what_is_new(tmp_path: Path) -> None:
    """Ids 1-10 then 5-15: the second batch inserts 11-15 and moves the watermark to 15."""

    async def body(store: Store) -> None:
        assert await store.insert_uploaded("edge-a", batch(1, 10)) == (10, 10)
        assert await store.insert_uploaded("edge-a", batch(5, 15)) == (5, 15)
        assert await request_ids(store) == [f"r{i}" for i in range(1, 16)]

    with_store(tmp_path / "t.db", body)


def test_an_empty_or_old_batch_keeps_the_watermark(tmp_path: Path) -> None:
    """An empty batch answers (0, watermark): 0 for a new source; an older batch does not move it back."""

    async def body(store: Store) -> None:
        assert await store.insert_uploaded("edge-a", []) == (0, 0)
        assert await store.insert_uploaded("edge-a", batch(1, 10)) == (10, 10)
        assert await store.insert_uploaded("edge-a", batch(3, 7)) == (0, 10)
        assert await store.insert_uploaded("edge-a", []) == (0, 10)
        assert len(await request_ids(store)) == 10

    with_store(tmp_path / "t.db", body)


def test_sources_have_independent_watermarks(tmp_path: Path) -> None:
    """Two edges with the same ids: each one's rows land once, each watermark moves alone."""

    async def body(store: Store) -> None:
        assert await store.insert_uploaded("edge-a", batch(1, 10)) == (10, 10)
        assert await store.insert_uploaded("edge-b", batch(1, 5)) == (5, 5)
        assert await store.insert_uploaded("edge-a", batch(1, 10)) == (0, 10)
        assert await store.insert_uploaded("edge-b", batch(4, 8)) == (3, 8)
        ids = await request_ids(store)
        assert len(ids) == 18
        assert sorted(ids) == sorted([f"r{i}" for i in range(1, 11)] + [f"r{i}" for i in range(1, 9)])

    with_store(tmp_path / "t.db", body)


def test_the_watermark_survives_reopening(tmp_path: Path) -> None:
    """After a restart the hub still knows what it took from each source."""
    db = tmp_path / "t.db"
    assert with_store(db, lambda s: s.insert_uploaded("edge-a", batch(1, 10))) == (10, 10)
    assert with_store(db, lambda s: s.insert_uploaded("edge-a", batch(1, 12))) == (2, 12)


def test_records_after_returns_ascending_ids(tmp_path: Path) -> None:
    """records_after(after_id, limit): at most `limit` records above `after_id`, ids ascending, whatever
    their timestamps."""

    async def body(store: Store) -> None:
        await store.insert_records([record(0, ts=1_700_000_000.0 - i) for i in range(10)])  # newest first
        ids = [r.id for r in await store.records_after(0, 100)]
        assert len(ids) == 10 and ids == sorted(ids) and len(set(ids)) == 10
        assert [r.id for r in await store.records_after(ids[2], 4)] == ids[3:7]
        assert [r.id for r in await store.records_after(ids[7], 100)] == ids[8:]
        assert await store.records_after(ids[-1], 100) == []

    with_store(tmp_path / "t.db", body)


def test_prune_deletes_only_old_rows_up_to_the_id(tmp_path: Path) -> None:
    """prune_records(upto_id, before) deletes rows with id <= upto_id and ts < before, no other."""

    async def body(store: Store) -> None:
        # odd rows are old (ts 100), even rows new (ts 200)
        await store.insert_records([record(0, ts=100.0 if i % 2 else 200.0) for i in range(1, 11)])
        rows = await store.records_after(0, 100)
        old = {r.id for r in rows if r.timestamp == 100.0}
        upto = rows[5].id
        assert await store.prune_records(upto, before=150.0) == len({i for i in old if i <= upto}) == 3
        left = {r.id for r in await store.records_after(0, 100)}
        assert left == {r.id for r in rows} - {i for i in old if i <= upto}

    with_store(tmp_path / "t.db", body)


def test_ids_are_never_reused_after_pruning(tmp_path: Path) -> None:
    """After pruning every row, the next insert gets a higher id than any before (AUTOINCREMENT)."""

    async def body(store: Store) -> None:
        await store.insert_records(batch(1, 5))
        highest = (await store.records_after(0, 100))[-1].id
        assert await store.prune_records(highest, before=float("inf")) == 5
        assert await store.records_after(0, 100) == []
        await store.insert_records([record(1)])
        (again,) = await store.records_after(0, 100)
        assert again.id > highest

    with_store(tmp_path / "t.db", body)
