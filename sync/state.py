"""The configuration as stored: every entity decoded, with its id, at one config version.

This is the serialisable half of a snapshot (sync/payload.py ships a namespace's part to edges);
`sync/snapshot.py` compiles it into the structures the hot path reads.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from store.base import KIND_NAMES, ConfigRows, Store
from sync.entities import KINDS, Stored, from_stored
from sync.model import ConfigFile, Secret


class ConfigState(msgspec.Struct, frozen=True):
    version: int
    entities: dict[str, tuple[Stored, ...]]

    @classmethod
    def from_rows(cls, rows: ConfigRows) -> ConfigState:
        entities = {
            kind: tuple(from_stored(KINDS[kind], row) for row in rows.rows.get(kind, ()))
            for kind in KIND_NAMES
        }
        return cls(rows.version, entities)

    def of(self, kind: str) -> tuple[Stored, ...]:
        return self.entities[kind]

    def find(self, kind: str, name: str) -> Stored | None:
        return next((s for s in self.entities[kind] if s.name == name), None)

    def replace(self, kind: str, items: tuple[Stored, ...]) -> ConfigState:
        return ConfigState(self.version, {**self.entities, kind: items})

    def as_config(self) -> ConfigFile:
        """The equivalent configuration file (secret values stay sealed), for whole-config validation."""
        lists: dict[str, Any] = {
            kind: [s.entity for s in self.entities[kind]] for kind in KIND_NAMES if kind != "secrets"
        }
        secrets: dict[str, str] = {s.name: s.entity.value for s in self.entities["secrets"]}
        return ConfigFile(secrets=secrets, **lists)

    def secret_values(self) -> dict[str, str]:
        """Secret name → sealed value."""
        out: dict[str, str] = {}
        for stored in self.entities["secrets"]:
            secret: Secret = stored.entity
            out[secret.name] = secret.value
        return out


class ConfigSource(Protocol):
    """Where a runtime's configuration comes from: its store, or (an edge) what its hub pushed."""

    async def version(self) -> int:
        """Cheap: polled twice a second; a change makes the runtime `load` and rebuild."""

    async def load(self) -> ConfigState: ...


class StoreSource:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def version(self) -> int:
        return await self.store.config_version()

    async def load(self) -> ConfigState:
        return ConfigState.from_rows(await self.store.load_config())
