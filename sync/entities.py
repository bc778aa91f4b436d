"""Entity kinds and their stored form: natural keys, sealed secrets, hashed keys and masked read-backs.

Both the YAML bootstrap and the admin API write through `to_stored`, and the snapshot and the admin API
read through `from_stored` / `public`, so a secret is sealed and a key hashed on every path into the store.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import msgspec

from store.base import Row
from sync.model import App, Entity, Filter, Group, Llm, Price, Route, Secret, User
from sync.secrets import SecretBox
from sync.validate import SECRET_PREFIX

MASK = "********"
_encode = msgspec.json.Encoder(order="deterministic").encode


@dataclass(frozen=True, slots=True)
class Kind:
    name: str  # table name and admin URL segment
    struct: type[Entity]
    key_field: str  # the field that names an entity ("" for prices: vendor/model)
    decoder: msgspec.json.Decoder[Any]

    def key(self, entity: Entity) -> str:
        if isinstance(entity, Price):
            return f"{entity.vendor}/{entity.model}"
        return str(getattr(entity, self.key_field))


def _kind(name: str, struct: type[Entity], key_field: str) -> Kind:
    return Kind(name, struct, key_field, msgspec.json.Decoder(struct))


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        _kind("llms", Llm, "slug"),
        _kind("routes", Route, "slug"),
        _kind("apps", App, "name"),
        _kind("users", User, "email"),
        _kind("groups", Group, "name"),
        _kind("prices", Price, ""),
        _kind("filters", Filter, "name"),
        _kind("secrets", Secret, "name"),
    )
}


class Stored(msgspec.Struct, frozen=True):
    """What the store gives back for one entity: its id, the entity in stored form, its key hash."""

    id: int
    name: str
    entity: Any
    key_hash: str | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return "tg-" + secrets.token_urlsafe(24)


def to_stored(kind: Kind, entity: Entity, box: SecretBox, key_hash: str | None) -> tuple[bytes, str | None]:
    """The row data and key hash for `entity`: secrets sealed, a plaintext api key replaced by its hash."""
    if isinstance(entity, Llm) and entity.api_key and not _is_reference(entity.api_key, box):
        entity = msgspec.structs.replace(entity, api_key=box.seal(entity.api_key))
    elif isinstance(entity, App | User):
        if entity.api_key and entity.api_key != MASK:
            key_hash = hash_key(entity.api_key)
        entity = msgspec.structs.replace(entity, api_key=None)
    elif isinstance(entity, Secret) and not box.is_sealed(entity.value):
        entity = msgspec.structs.replace(entity, value=box.seal(entity.value))
    return _encode(entity), key_hash


def from_stored(kind: Kind, row: Row) -> Stored:
    return Stored(row.id, row.name, kind.decoder.decode(row.data), row.key_hash)


def public(kind: Kind, stored: Stored) -> dict[str, Any]:
    """The admin API's view: the config file's field names plus `id`, with every secret masked."""
    fields: dict[str, Any] = msgspec.to_builtins(stored.entity)
    if kind.name == "secrets":
        del fields["value"]
    elif kind.name == "llms" and fields.get("api_key") and not fields["api_key"].startswith(SECRET_PREFIX):
        fields["api_key"] = MASK
    elif kind.name in ("apps", "users"):
        fields["api_key"] = MASK if stored.key_hash else None
    return {"id": stored.id, **fields}


def resolve_api_key(llm: Llm, secrets_by_name: dict[str, str], box: SecretBox) -> str | None:
    """The upstream credential of `llm` in plaintext: a `$SECRET/NAME` reference or a sealed literal."""
    value = llm.api_key
    if not value:
        return None
    if value.startswith(SECRET_PREFIX):
        sealed = secrets_by_name[value.removeprefix(SECRET_PREFIX)]
        return box.open(sealed)
    return box.open(value) if box.is_sealed(value) else value


def _is_reference(value: str, box: SecretBox) -> bool:
    return value.startswith(SECRET_PREFIX) or box.is_sealed(value)
