"""The storage interface. SQLite implements it now; PostgreSQL will implement the same Protocol.

Config entities are opaque JSON documents with a natural name, a namespace and (for apps and users) a key
hash; the store knows nothing of their fields, so the schema of the configuration lives in one place
(`sync/model.py`). Every write transaction bumps the config version that gateways watch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

import msgspec

from store.records import AnalyticsRecord, InteractionQuery, UsageQuery

KIND_NAMES = ("llms", "routes", "apps", "users", "groups", "prices", "filters", "secrets")
KINDS_WITH_KEYS = ("apps", "users")


class Row(msgspec.Struct, frozen=True):
    id: int
    name: str
    namespace: str
    data: bytes
    key_hash: str | None
    created_at: float
    updated_at: float


class Put(msgspec.Struct, frozen=True):
    """Write one entity: `insert` (name must be new), `upsert` by name, or `update` the row `id`."""

    kind: str
    name: str
    namespace: str
    data: bytes
    key_hash: str | None = None
    mode: Literal["insert", "upsert", "update"] = "upsert"
    id: int | None = None
    keep_key: bool = False  # upsert: an existing row keeps its key hash (a generated key lost a race)


class Delete(msgspec.Struct, frozen=True):
    kind: str
    id: int


Op = Put | Delete


class StoreError(Exception):
    """The store cannot do what was asked (a broken database, a failed migration)."""


class Conflict(StoreError):
    """An insert or rename collides with an existing name or key."""


class ConfigRows(msgspec.Struct, frozen=True):
    """Every config row, read in one transaction, with the version they belong to."""

    version: int
    rows: dict[str, list[Row]]


class Store(Protocol):
    async def open(self) -> None:
        """Connect and migrate (exactly once, however many processes start together)."""

    async def close(self) -> None: ...

    async def config_version(self) -> int: ...

    async def load_config(self) -> ConfigRows: ...

    async def get(self, kind: str, id: int) -> Row | None: ...

    async def find(
        self, kind: str, *, name: str | None = None, key_hash: str | None = None
    ) -> Row | None: ...

    async def write(self, ops: Sequence[Op]) -> list[Row | None]:
        """Apply `ops` in one transaction; a Put returns its row, a Delete None. Raises Conflict."""

    async def insert_records(self, records: Sequence[AnalyticsRecord]) -> None: ...

    async def interactions(self, query: InteractionQuery) -> list[AnalyticsRecord]: ...

    async def usage(self, query: UsageQuery) -> list[dict[str, object]]: ...

    async def spend(self, since: float) -> dict[str, float]:
        """USD spent since `since` per app and per LLM, keyed "app:<id>" and "llm:<id>"."""

    async def get_values(self, prefix: str) -> dict[str, bytes]:
        """The kv entries whose key starts with `prefix` (state beside the config: no version bump)."""

    async def put_values(self, values: Mapping[str, bytes | None]) -> None:
        """Set (or, for None, delete) kv entries, in one transaction."""

    async def records_after(self, after_id: int, limit: int) -> list[AnalyticsRecord]:
        """Up to `limit` analytics records with an id above `after_id`, in id order (an edge's upload)."""

    async def prune_records(self, upto_id: int, before: float) -> int:
        """Delete the records up to id `upto_id` that are older than `before`; returns how many."""

    async def insert_uploaded(self, source: str, records: Sequence[AnalyticsRecord]) -> tuple[int, int]:
        """Insert another store's records (ids are theirs) that are above `source`'s watermark, and move
        it, in one transaction: a batch sent twice is inserted once. Returns (inserted, watermark)."""
