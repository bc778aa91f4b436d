"""What a hub ships to an edge: one namespace's configuration, canonical bytes, and their checksum.

The content is everything on an edge's hot path but app credentials (pulled on miss): the LLMs, routes
and filters of the global namespace "" and of the edge's own, and every price. Upstream keys travel
opened (an edge has its own master key and seals them again at rest), so the content is sealed whenever it
is stored. The bytes are msgspec JSON with sorted keys and entities in id order: the same configuration
gives the same bytes, and the checksum is the lowercase hex SHA-256 of them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from sync.entities import Stored, resolve_api_key
from sync.model import Filter, Llm, Price, Route
from sync.secrets import SecretBox
from sync.state import ConfigState

SHIPPED_KINDS = ("llms", "routes", "filters", "prices")


class Content(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One namespace's configuration: each entity with its id at the hub (analytics use the hub's ids)."""

    llms: list[tuple[int, Llm]] = []
    routes: list[tuple[int, Route]] = []
    filters: list[tuple[int, Filter]] = []
    prices: list[tuple[int, Price]] = []


class Published(msgspec.Struct, frozen=True):
    """A namespace's content at a moment: what the hub serves to FetchSnapshot, or what an edge loaded."""

    checksum: str
    version: int  # the hub's config version it was built from
    config: bytes  # Content as canonical JSON
    at: float  # when it was published (hub) or applied (edge)


_encode = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.Decoder(Content).decode


def in_namespace(namespace: str, entity_namespace: str) -> bool:
    return entity_namespace in ("", namespace)


def content(state: ConfigState, namespace: str, box: SecretBox) -> bytes:
    """The canonical bytes of `namespace`'s configuration in `state`."""
    secrets = state.secret_values()
    llms = []
    for stored in _by_id(state, "llms"):
        llm: Llm = stored.entity
        if in_namespace(namespace, llm.namespace):
            llms.append((stored.id, msgspec.structs.replace(llm, api_key=resolve_api_key(llm, secrets, box))))
    return _encode(
        Content(
            llms=llms,
            routes=_entities(state, "routes", namespace),
            filters=_entities(state, "filters", namespace),
            prices=[(s.id, s.entity) for s in _by_id(state, "prices")],
        )
    )


def _entities(state: ConfigState, kind: str, namespace: str) -> list[tuple[int, Any]]:
    return [(s.id, s.entity) for s in _by_id(state, kind) if in_namespace(namespace, s.entity.namespace)]


def _by_id(state: ConfigState, kind: str) -> list[Stored]:
    return sorted(state.of(kind), key=lambda s: s.id)


def checksum(config: bytes) -> str:
    return hashlib.sha256(config).hexdigest()


def to_state(config: bytes, version: int) -> ConfigState:
    """The ConfigState an edge builds its snapshot from (no apps, users, groups or secrets: the keys are
    in the LLMs, opened). Raises msgspec.ValidationError on content this version cannot read."""
    decoded = _decode(config)
    entities: dict[str, tuple[Stored, ...]] = {
        "llms": tuple(Stored(id, llm.slug, llm) for id, llm in decoded.llms),
        "routes": tuple(Stored(id, route.slug, route) for id, route in decoded.routes),
        "filters": tuple(Stored(id, spec.name, spec) for id, spec in decoded.filters),
        "prices": tuple(Stored(id, f"{p.vendor}/{p.model}", p) for id, p in decoded.prices),
        "apps": (),
        "users": (),
        "groups": (),
        "secrets": (),
    }
    return ConfigState(version, entities)


_published = msgspec.msgpack.Encoder()
_read_published = msgspec.msgpack.Decoder(Published)


def seal(published: Published, box: SecretBox) -> bytes:
    """`published` as stored: the whole record sealed (it holds opened upstream keys)."""
    return box.seal_bytes(_published.encode(published))


def unseal(stored: bytes, box: SecretBox) -> Published:
    return _read_published.decode(box.open_bytes(stored))
