"""The configuration as stored: every entity decoded, with its id, at one config version.

This is the serialisable half of a snapshot (what a hub will ship to edges); `sync/snapshot.py` compiles
it into the structures the hot path reads.
"""

from __future__ import annotations

from typing import Any

import msgspec

from store.base import KIND_NAMES, ConfigRows
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
