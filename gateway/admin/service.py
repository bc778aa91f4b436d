"""Config CRUD for the admin API: decode, validate the whole would-be configuration, write, reload.

Names are how entities refer to each other (an app's `llms` are slugs, a user's `groups` are names), so a
rename or a delete is carried to every entity that refers to the old name, in the same transaction.
Nothing is refused because it is in use: deleting an LLM removes it from the apps and groups that list
it, deleting a user deletes the apps they own, deleting a secret unsets the LLM keys that point to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson

from gateway.errors import ConflictError, InvalidRequest, NotFound
from store.base import Conflict, Delete, Op, Put, Row, Store
from sync.entities import KINDS, MASK, Kind, Stored, from_stored, generate_key, public, to_stored
from sync.loader import describe_error
from sync.model import App, Entity
from sync.secrets import SecretBox
from sync.state import ConfigState
from sync.validate import SECRET_PREFIX, validate

# Who refers to a kind by name: (referring kind, field, how) with how = "list" (a list of names),
# "owner" (a single name; the referrer goes when the referent does) or "secret" (a `$SECRET/` value).
_REFERENCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "llms": (("apps", "llms", "list"), ("groups", "llms", "list")),
    "routes": (("apps", "llms", "list"), ("groups", "llms", "list")),
    "users": (("apps", "owner", "owner"),),
    "groups": (("users", "groups", "list"),),
    "filters": (("llms", "filters", "list"),),
    "secrets": (("llms", "api_key", "secret"),),
}
_Change = tuple[str, Stored]  # (kind, entity as it will be)


class ConfigService:
    def __init__(self, store: Store, box: SecretBox, on_change: Callable[[], Awaitable[None]]) -> None:
        self.store = store
        self.box = box
        self.on_change = on_change

    async def state(self) -> ConfigState:
        return ConfigState.from_rows(await self.store.load_config())

    async def entities(self, kind: str) -> list[dict[str, Any]]:
        k = KINDS[kind]
        return [public(k, s) for s in (await self.state()).of(kind)]

    async def get(self, kind: str, id: int) -> dict[str, Any]:
        row = await self.store.get(kind, id)
        if row is None:
            raise NotFound(f"no {kind} entity with id {id}")
        return public(KINDS[kind], from_stored(KINDS[kind], row))

    async def create(self, kind: str, body: bytes) -> dict[str, Any]:
        k = KINDS[kind]
        entity = _decode(k, json_object(body))
        generated = None
        if isinstance(entity, App) and not entity.api_key:
            generated = generate_key()
            entity = msgspec.structs.replace(entity, api_key=generated)
        state = await self.state()
        name = k.key(entity)
        if state.find(kind, name):
            raise ConflictError(f"{kind} '{name}' exists already")
        data, key_hash = to_stored(k, entity, self.box, None)
        stored = from_stored(k, _as_row(data, key_hash, name))
        self._check(_apply(state, [(kind, stored)], []))
        rows = await self._write([Put(kind, name, _namespace(entity), data, key_hash, mode="insert")])
        assert rows[0] is not None
        out = public(k, from_stored(k, rows[0]))
        if generated:
            out["api_key"] = generated  # shown once, never again
        return out

    async def patch(self, kind: str, id: int, body: bytes) -> dict[str, Any]:
        k = KINDS[kind]
        changes = json_object(body)
        state = await self.state()
        old = next((s for s in state.of(kind) if s.id == id), None)
        if old is None:
            raise NotFound(f"no {kind} entity with id {id}")
        if changes.get("api_key") == MASK:
            del changes["api_key"]  # a read-back's mask means "unchanged"
        entity = _decode(k, {**msgspec.to_builtins(old.entity), **changes})
        data, key_hash = to_stored(k, entity, self.box, old.key_hash)
        new = from_stored(k, _as_row(data, key_hash, k.key(entity), id))
        updates = [(kind, new), *_renamed(state, kind, old.name, new.name)]
        self._check(_apply(state, updates, []))
        ops: list[Op] = [_put(kind, s, self.box, data if s is new else None) for kind, s in updates]
        rows = await self._write(ops)
        assert rows[0] is not None
        return public(k, from_stored(k, rows[0]))

    async def delete(self, kind: str, id: int) -> None:
        state = await self.state()
        old = next((s for s in state.of(kind) if s.id == id), None)
        if old is None:
            raise NotFound(f"no {kind} entity with id {id}")
        updates, deletes = _deleted(state, kind, old)
        self._check(_apply(state, updates, deletes))
        ops: list[Op] = [Delete(kind, s.id) for kind, s in deletes]
        ops += [_put(kind, s, self.box) for kind, s in updates]
        await self._write(ops)

    async def _write(self, ops: list[Op]) -> list[Any]:
        try:
            rows = await self.store.write(ops)
        except Conflict as exc:
            raise ConflictError(f"the change collides with an existing entity ({exc})") from None
        await self.on_change()
        return rows

    def _check(self, state: ConfigState) -> None:
        problems = validate(state.as_config())
        if problems:
            raise InvalidRequest(str(problems[0]))


def json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the request body must be a JSON object")
    value.pop("id", None)  # a read-back may be sent back whole
    return value


def _decode(kind: Kind, value: dict[str, Any]) -> Entity:
    try:
        entity: Entity = msgspec.convert(value, kind.struct)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(describe_error(str(exc), {}).removesuffix(": ") or str(exc)) from None
    return entity


def _namespace(entity: Entity) -> str:
    return str(getattr(entity, "namespace", ""))


def _as_row(data: bytes, key_hash: str | None, name: str, id: int = 0) -> Row:
    return Row(id, name, "", data, key_hash, 0.0, 0.0)


def _put(kind: str, stored: Stored, box: SecretBox, data: bytes | None = None) -> Put:
    if data is None:
        data, _ = to_stored(KINDS[kind], stored.entity, box, stored.key_hash)
    return Put(
        kind, stored.name, _namespace(stored.entity), data, stored.key_hash, mode="update", id=stored.id
    )


def _apply(state: ConfigState, updates: list[_Change], deletes: list[_Change]) -> ConfigState:
    """`state` with `updates` (new when id 0) and `deletes` applied: the would-be configuration."""
    for kind, stored in updates:
        items = [s for s in state.of(kind) if s.id != stored.id or stored.id == 0]
        state = state.replace(kind, (*items, stored))
    for kind, stored in deletes:
        state = state.replace(kind, tuple(s for s in state.of(kind) if s.id != stored.id))
    return state


def _renamed(state: ConfigState, kind: str, old: str, new: str) -> list[_Change]:
    if old == new:
        return []
    changes = []
    for ref_kind, field, how in _REFERENCES.get(kind, ()):
        for s in state.of(ref_kind):
            value = _rewrite(getattr(s.entity, field), how, old, new)
            if value is not _SAME:
                changes.append((ref_kind, _with(s, field, value)))
    return changes


def _deleted(state: ConfigState, kind: str, gone: Stored) -> tuple[list[_Change], list[_Change]]:
    updates: list[_Change] = []
    deletes: list[_Change] = [(kind, gone)]
    for ref_kind, field, how in _REFERENCES.get(kind, ()):
        for s in state.of(ref_kind):
            value = _rewrite(getattr(s.entity, field), how, gone.name, None)
            if value is _DELETE:
                deletes.append((ref_kind, s))
            elif value is not _SAME:
                updates.append((ref_kind, _with(s, field, value)))
    return updates, deletes


_SAME = object()
_DELETE = object()


def _rewrite(value: Any, how: str, old: str, new: str | None) -> Any:
    """The field's new value when `old` becomes `new` (None: deleted), or _SAME / _DELETE."""
    if how == "list":
        if old not in value:
            return _SAME
        return [new if v == old else v for v in value if new is not None or v != old]
    if how == "owner":
        return _SAME if value != old else (new if new is not None else _DELETE)
    if value != SECRET_PREFIX + old:  # how == "secret"
        return _SAME
    return SECRET_PREFIX + new if new is not None else None


def _with(stored: Stored, field: str, value: Any) -> Stored:
    entity = msgspec.structs.replace(stored.entity, **{field: value})
    return Stored(stored.id, stored.name, entity, stored.key_hash)
