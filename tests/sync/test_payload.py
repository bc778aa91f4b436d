"""What a hub ships to an edge (sync/payload.py): one namespace's LLMs, routes, filters and prices as
canonical bytes, their checksum, the ConfigState an edge rebuilds from them, and their sealed stored form.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import msgspec
import pytest

from providers.base import Call, Operation
from store.base import KIND_NAMES
from sync.entities import KINDS, Stored
from sync.model import App, Entity, Filter, Group, Llm, Price, Route, RouteTarget, Secret, User
from sync.payload import Published, checksum, content, seal, to_state, unseal
from sync.secrets import SecretBox, SecretError
from sync.snapshot import build
from sync.state import ConfigState

BOX = SecretBox(bytes(range(32)))
SECRET_KEY = "sk-upstream-plaintext-0001"  # the value of the secret UPSTREAM
LITERAL_KEY = "sk-literal-plaintext-0002"  # an LLM's own key, sealed in the store
NAMESPACES = ("", "eu", "us")


def stored(id: int, entity: Entity, key_hash: str | None = None) -> Stored:
    """`entity` as the store gives it back: through its JSON (so `timeout_s=600` reads back as 600.0)."""
    kind = next(k for k in KINDS.values() if type(entity) is k.struct)
    return Stored(id, kind.key(entity), kind.decoder.decode(msgspec.json.encode(entity)), key_hash)


def state_of(**kinds: list[Stored]) -> ConfigState:
    return ConfigState(1, {kind: tuple(kinds.get(kind, ())) for kind in KIND_NAMES})


def rx_config(reverse: bool = False) -> dict[str, Any]:
    """A filter config; `reverse` gives the same keys and values with every dict's keys backwards."""
    nested = [("b", 1), ("a", 2)]
    items = [("action", "block"), ("keywords", ["x"]), ("patterns", ["y+"]), ("nested", nested)]
    if reverse:
        items, nested = items[::-1], nested[::-1]
    return {key: dict(nested) if key == "nested" else value for key, value in items}


def hub_entities(reverse_keys: bool = False) -> dict[str, list[Stored]]:
    """A hub's configuration in stored form (keys sealed), in id order; `reverse_keys`: dicts backwards."""
    entities: dict[str, list[Stored]] = {
        "secrets": [stored(1, Secret(name="UPSTREAM", value=BOX.seal(SECRET_KEY)))],
        "llms": [
            stored(1, Llm(slug="gpt", vendor="openai", api_key="$SECRET/UPSTREAM", filters=["rx"])),
            stored(2, Llm(slug="lit", vendor="openai", api_key=BOX.seal(LITERAL_KEY))),
            stored(3, Llm(slug="eu-llm", vendor="openai", namespace="eu")),
            stored(4, Llm(slug="us-llm", vendor="openai", namespace="us")),
        ],
        "routes": [
            stored(1, Route(slug="smart", targets=[RouteTarget(llm="gpt")])),
            stored(2, Route(slug="eu-route", targets=[RouteTarget(llm="eu-llm")], namespace="eu")),
            stored(3, Route(slug="us-route", targets=[RouteTarget(llm="us-llm")], namespace="us")),
        ],
        "filters": [
            stored(
                1, Filter(name="rx", phase="pre_auth", kind="regex_block", config=rx_config(reverse_keys))
            ),
            stored(2, Filter(name="eu-pii", phase="post_auth", kind="pii_redact", namespace="eu")),
            stored(3, Filter(name="us-pii", phase="post_auth", kind="pii_redact", namespace="us")),
        ],
        "prices": [
            stored(1, Price(vendor="openai", model="gpt-4o-mini", input_per_1m=0.15, output_per_1m=0.6)),
            stored(2, Price(vendor="anthropic", model="claude-x", input_per_1m=3)),
        ],
        "users": [stored(1, User(email="dev@example.com", groups=["team"]))],
        "groups": [stored(1, Group(name="team", llms=["gpt"]))],
        "apps": [stored(1, App(name="bot", owner="dev@example.com", llms=["gpt"]), key_hash="a" * 64)],
    }
    return entities


def hub_state(**changes: list[Stored]) -> ConfigState:
    return state_of(**{**hub_entities(), **changes})


def decoded(config: bytes) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.json.decode(config)
    return result


def names(config: bytes, kind: str, field: str) -> set[str]:
    return {entity[field] for _, entity in decoded(config)[kind]}


# --- canonical bytes and checksum --------------------------------------------------------------------------


def test_checksum_is_the_lowercase_hex_sha256_of_the_content() -> None:
    """The checksum is hashlib's hex SHA-256 of the content bytes: 64 lowercase hex digits."""
    config = content(hub_state(), "eu", BOX)
    assert checksum(config) == hashlib.sha256(config).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", checksum(config))


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_dict_keys_in_another_order_give_the_same_bytes(namespace: str) -> None:
    """A filter config with its keys (and a nested dict's) given in another order gives the same bytes."""
    forwards = state_of(**hub_entities())
    backwards = state_of(**hub_entities(reverse_keys=True))
    config, reversed_config = (s.of("filters")[0].entity.config for s in (forwards, backwards))
    assert config == reversed_config
    assert list(config) != list(reversed_config) and list(config["nested"]) != list(reversed_config["nested"])
    assert content(forwards, namespace, BOX) == content(backwards, namespace, BOX)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_entities_in_another_order_give_the_same_bytes(namespace: str) -> None:
    """The same entities listed in another order (not id order) give the same bytes."""
    forwards = state_of(**hub_entities())
    backwards = state_of(**{kind: items[::-1] for kind, items in reversed(hub_entities().items())})
    assert list(forwards.of("llms")) != list(backwards.of("llms"))
    assert content(forwards, namespace, BOX) == content(backwards, namespace, BOX)


def test_the_same_configuration_gives_the_same_bytes_with_keys_sealed_again() -> None:
    """Sealing uses a fresh nonce each time; the content holds the opened key, so it does not change."""
    first, second = hub_state(), hub_state()
    assert first.of("llms")[1].entity.api_key != second.of("llms")[1].entity.api_key
    assert content(first, "eu", BOX) == content(second, "eu", BOX)


def _llm_changed(llms: tuple[Stored, ...]) -> list[Stored]:
    gpt = llms[0]
    return [Stored(gpt.id, gpt.name, msgspec.structs.replace(gpt.entity, timeout_s=30)), *llms[1:]]


def test_the_checksum_changes_when_an_llm_changes() -> None:
    """A changed LLM field, or a rotated secret behind its key, gives another checksum."""
    base = hub_state()
    rotated = [stored(1, Secret(name="UPSTREAM", value=BOX.seal("sk-rotated")))]
    for changed in (hub_state(llms=_llm_changed(base.of("llms"))), hub_state(secrets=rotated)):
        for namespace in NAMESPACES:
            assert checksum(content(changed, namespace, BOX)) != checksum(content(base, namespace, BOX))


def test_apps_users_and_groups_are_not_in_the_content() -> None:
    """Adding or changing an app, a user or a group changes no namespace's content."""
    base = hub_state()
    variants = [
        hub_state(
            apps=[*base.of("apps"), stored(2, App(name="eu-bot", owner="x@example.com", namespace="eu"))]
        ),
        hub_state(apps=[stored(1, App(name="bot", owner="dev@example.com", llms=["lit"], active=False))]),
        hub_state(users=[stored(1, User(email="dev@example.com", role="admin"))]),
        hub_state(users=[*base.of("users"), stored(2, User(email="new@example.com"))]),
        hub_state(groups=[stored(1, Group(name="team", llms=["gpt", "lit", "eu-llm"]))]),
        hub_state(groups=[*base.of("groups"), stored(2, Group(name="other"))]),
    ]
    for namespace in NAMESPACES:
        expected = content(base, namespace, BOX)
        assert b"bot" not in expected and b"dev@example.com" not in expected
        for variant in variants:
            assert content(variant, namespace, BOX) == expected


# --- namespaces --------------------------------------------------------------------------------------------


def test_an_edge_gets_the_global_and_its_own_namespace_and_every_price() -> None:
    """For "eu": the global and "eu" LLMs, routes and filters, no "us" ones; prices are all included."""
    config = content(hub_state(), "eu", BOX)
    assert names(config, "llms", "slug") == {"gpt", "lit", "eu-llm"}
    assert names(config, "routes", "slug") == {"smart", "eu-route"}
    assert names(config, "filters", "name") == {"rx", "eu-pii"}
    assert names(config, "prices", "model") == {"gpt-4o-mini", "claude-x"}
    assert b"us-" not in config


def test_the_global_namespace_gets_only_global_entities() -> None:
    """The content for "" has no namespaced LLM, route or filter, but every price."""
    config = content(hub_state(), "", BOX)
    assert names(config, "llms", "slug") == {"gpt", "lit"}
    assert names(config, "routes", "slug") == {"smart"}
    assert names(config, "filters", "name") == {"rx"}
    assert names(config, "prices", "model") == {"gpt-4o-mini", "claude-x"}


# --- upstream keys, to_state, the stored form --------------------------------------------------------------


def test_upstream_keys_travel_opened() -> None:
    """A `$SECRET/NAME` key and a sealed literal key are both in the content in plaintext."""
    keys = {
        entity["slug"]: entity["api_key"] for _, entity in decoded(content(hub_state(), "eu", BOX))["llms"]
    }
    assert keys == {"gpt": SECRET_KEY, "lit": LITERAL_KEY, "eu-llm": None}


def test_to_state_rebuilds_the_hubs_llms_with_the_hubs_ids_and_no_apps() -> None:
    """An edge's snapshot from the content: the LLMs by slug with the hub's ids, usable keys, no apps."""
    hub = hub_state()
    state = to_state(content(hub, "eu", BOX), version=7)
    assert state.version == 7
    assert all(state.of(kind) == () for kind in ("apps", "users", "groups", "secrets"))
    snapshot = build(state, SecretBox(bytes(32)))  # an edge's own master key: nothing to open
    hub_ids = {s.entity.slug: s.id for s in hub.of("llms")}
    assert {slug: entry.id for slug, entry in snapshot.llms.items()} == {
        slug: hub_ids[slug] for slug in ("gpt", "lit", "eu-llm")
    }
    assert snapshot.apps == {} and snapshot.users == {} and snapshot.version == 7
    assert set(snapshot.unserved) == {"smart", "eu-route"}
    assert snapshot.prices.rate("openai", "gpt-4o-mini") is not None
    call = Call(op=Operation.CHAT, body=b"{}", model="gpt-4o-mini")
    for slug, key in (("gpt", SECRET_KEY), ("lit", LITERAL_KEY)):
        request = asyncio.run(snapshot.llms[slug].provider.request(call))
        assert request.headers["authorization"] == f"Bearer {key}"


def test_to_state_and_content_round_trip() -> None:
    """The content of the state an edge rebuilt is the content it was given."""
    config = content(hub_state(), "eu", BOX)
    assert content(to_state(config, 1), "eu", BOX) == config


def test_the_stored_form_is_sealed_and_round_trips() -> None:
    """seal/unseal round-trip a Published; the sealed bytes hold no plaintext key; another box fails."""
    config = content(hub_state(), "eu", BOX)
    assert SECRET_KEY.encode() in config and LITERAL_KEY.encode() in config
    published = Published(checksum=checksum(config), version=3, config=config, at=1_700_000_000.5)
    sealed = seal(published, BOX)
    assert unseal(sealed, BOX) == published
    assert SECRET_KEY.encode() not in sealed and LITERAL_KEY.encode() not in sealed
    with pytest.raises(SecretError):
        unseal(sealed, SecretBox(bytes(32)))


@pytest.mark.parametrize("where", ["top level", "inside an LLM"])
def test_to_state_rejects_an_unknown_field(where: str) -> None:
    """Content with a field this version does not know is a ValidationError, not silently dropped."""
    raw = decoded(content(hub_state(), "eu", BOX))
    if where == "top level":
        raw["apps"] = []
    else:
        raw["llms"][0][1]["shiny_new_field"] = True
    with pytest.raises(msgspec.ValidationError):
        to_state(msgspec.json.encode(raw), 1)
