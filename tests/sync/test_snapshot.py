"""Snapshots built the real way: a config file, bootstrapped into the store (SQLite, or PostgreSQL with
`pytest --store postgres`), read back and compiled.

What the hot path relies on: grants resolved through the owner's role and groups, apps keyed by the hash
of their key, credentials opened into the bound provider, unserved slugs and a warning for every
configured feature that is not built yet.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import sys
import threading
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from providers.base import Call, Operation
from store.base import Delete, Store
from sync.bootstrap import apply_bootstrap
from sync.model import ConfigFile
from sync.secrets import SecretBox, SecretError
from sync.snapshot import Snapshot, build
from sync.state import ConfigState
from tests.support import store_at

BOX = SecretBox(bytes(range(32)))
UPSTREAM_KEY = "sk-upstream-plaintext-0001"
LITERAL_KEY = "sk-literal-plaintext-0002"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def plain() -> dict[str, Any]:
    """A config that uses only what is built: its snapshot has no warning."""
    return {
        "secrets": {"UPSTREAM": UPSTREAM_KEY},
        "llms": [
            {"slug": "gpt", "vendor": "openai", "api_base": "http://127.0.0.1:1/v1",
             "api_key": "$SECRET/UPSTREAM", "allowed_models": ["gpt-4o.*"], "default_model": "gpt-4o-mini"},
            {"slug": "lit", "vendor": "openai", "api_key": LITERAL_KEY},
        ],
        "prices": [{"vendor": "openai", "model": "gpt-4o-mini", "input_per_1m": 0.15, "output_per_1m": 0.6}],
        "users": [{"email": "dev@example.com", "role": "developer", "groups": ["team"]}],
        "groups": [{"name": "team", "llms": ["gpt"]}],
        "apps": [{"name": "bot", "owner": "dev@example.com", "api_key": "tg-bot-key-0001",
                  "llms": ["gpt", "lit"]}],
    }  # fmt: skip


def config(raw: dict[str, Any]) -> ConfigFile:
    return msgspec.convert(raw, ConfigFile)


async def _open(db: Path) -> Store:
    store = store_at(db)
    await store.open()
    return store


async def snapshot_of(store: Store, notes: tuple[str, ...] = ()) -> Snapshot:
    return build(ConfigState.from_rows(await store.load_config()), BOX, notes)


def bootstrapped(db: Path, raw: dict[str, Any]) -> Snapshot:
    async def main() -> Snapshot:
        store = await _open(db)
        try:
            await apply_bootstrap(store, BOX, config(raw))
            return await snapshot_of(store)
        finally:
            await store.close()

    return asyncio.run(main())


def app_grants(snapshot: Snapshot) -> dict[str, set[str]]:
    return {app.name: set(app.llms) for app in snapshot.apps.values()}


# --- grants ------------------------------------------------------------------------------------------------

ALL = ["a", "b", "c"]


def grants_config() -> dict[str, Any]:
    apps = [
        ("super", "root@example.com", ALL),
        ("admin", "boss@example.com", ALL),
        ("dev", "dev@example.com", ALL),
        ("chat", "chat@example.com", ALL),
        ("no-groups", "lonely@example.com", ALL),
        ("unknown-owner", "ghost@example.com", ALL),
        ("dev-asks-b-only", "dev@example.com", ["b"]),
        ("admin-asks-c-only", "boss@example.com", ["c"]),
        ("asks-nothing", "root@example.com", []),
        ("dev-route", "dev@example.com", ["smart", "a"]),
    ]
    return {
        "llms": [{"slug": s, "vendor": "openai", "api_key": "k"} for s in ALL],
        "routes": [{"slug": "smart", "targets": [{"llm": "a"}]}],
        "users": [
            {"email": "root@example.com", "role": "super_admin"},
            {"email": "boss@example.com", "role": "admin"},
            {"email": "dev@example.com", "role": "developer", "groups": ["g-a", "g-route"]},
            {"email": "chat@example.com", "role": "chat_user", "groups": ["g-a", "g-b"]},
            {"email": "lonely@example.com", "role": "developer"},
        ],
        "groups": [{"name": "g-a", "llms": ["a"]}, {"name": "g-b", "llms": ["b"]},
                   {"name": "g-route", "llms": ["smart"]}],
        "apps": [{"name": n, "owner": o, "api_key": f"tg-key-of-{n}", "llms": llms} for n, o, llms in apps],
    }  # fmt: skip


EXPECTED_GRANTS = {
    "super": {"a", "b", "c"},
    "admin": {"a", "b", "c"},
    "dev": {"a"},
    "chat": {"a", "b"},
    "no-groups": set(),
    "unknown-owner": set(),
    "dev-asks-b-only": set(),
    "admin-asks-c-only": {"c"},
    "asks-nothing": set(),
    "dev-route": {"a", "smart"},
}


@pytest.mark.parametrize("app", list(EXPECTED_GRANTS), ids=list(EXPECTED_GRANTS))
def test_grants_are_the_apps_llms_its_owner_may_use(tmp_path: Path, app: str) -> None:
    snapshot = bootstrapped(tmp_path / "t.db", grants_config())
    assert app_grants(snapshot)[app] == EXPECTED_GRANTS[app]


def test_owner_ids_and_unknown_owner(tmp_path: Path) -> None:
    snapshot = bootstrapped(tmp_path / "t.db", grants_config())
    by_name = {app.name: app for app in snapshot.apps.values()}
    assert (
        by_name["unknown-owner"].owner_id is None
        and by_name["unknown-owner"].owner_email == "ghost@example.com"
    )
    assert by_name["dev"].owner_id is not None and by_name["dev"].owner_id == by_name["dev-route"].owner_id


def test_a_deleted_owner_or_group_takes_the_grants_away(tmp_path: Path) -> None:
    async def main() -> Snapshot:
        store = await _open(tmp_path / "t.db")
        try:
            await apply_bootstrap(store, BOX, config(grants_config()))
            rows = await store.load_config()
            boss = next(r for r in rows.rows["users"] if r.name == "boss@example.com")
            group = next(r for r in rows.rows["groups"] if r.name == "g-b")
            await store.write([Delete("users", boss.id), Delete("groups", group.id)])
            return await snapshot_of(store)
        finally:
            await store.close()

    snapshot = asyncio.run(main())
    grants = app_grants(snapshot)
    assert grants["admin"] == set() and grants["admin-asks-c-only"] == set()
    assert grants["chat"] == {"a"}  # g-b is gone; chat_user keeps what g-a gives
    assert grants["super"] == {"a", "b", "c"} and grants["dev"] == {"a"}


# --- LLMs, routes, keys, credentials -----------------------------------------------------------------------


def test_inactive_llms_and_routes_without_targets_are_unserved(tmp_path: Path) -> None:
    raw = plain()
    raw["llms"].append({"slug": "off", "vendor": "openai", "active": False})
    raw["routes"] = [
        {"slug": "smart", "targets": [{"llm": "gpt"}]},
        {"slug": "dark", "targets": [{"llm": "off"}]},
    ]
    snapshot = bootstrapped(tmp_path / "t.db", raw)
    assert set(snapshot.llms) == {"gpt", "lit"}
    assert set(snapshot.routes) == {"smart"}
    assert snapshot.routes["smart"].targets[0].model == "gpt-4o-mini"  # the LLM's default_model
    assert set(snapshot.unserved) == {"off", "dark"}
    assert "disabled" in snapshot.unserved["off"] and "no target" in snapshot.unserved["dark"]
    assert any("route 'dark': target 'off'" in w for w in snapshot.warnings)


def test_llm_entries_carry_what_the_hot_path_reads(tmp_path: Path) -> None:
    snapshot = bootstrapped(tmp_path / "t.db", plain())
    gpt = snapshot.llms["gpt"]
    assert (gpt.slug, gpt.vendor, gpt.default_model) == ("gpt", "openai", "gpt-4o-mini")
    assert gpt.allowed_models is not None
    assert gpt.allowed_models.fullmatch("gpt-4o-mini") and not gpt.allowed_models.fullmatch("xgpt-4o")
    assert snapshot.llms["lit"].allowed_models is None  # empty = any model
    assert gpt.chain.names() == ["auth", "access", "limits"]
    assert snapshot.prices.rate("openai", "gpt-4o-mini") is not None
    assert snapshot.version >= 1


def test_limits_and_filters_are_compiled_onto_the_entries(tmp_path: Path) -> None:
    raw = copy.deepcopy(plain())
    raw["llms"][0].update(monthly_budget_usd=500, rate_limit={"rpm": 5})
    raw["apps"][0].update(monthly_budget_usd=0.25, rate_limit={"rpm": 600, "tpm": 1000})
    raw["filters"] = [
        {
            "name": "rx",
            "phase": "pre_auth",
            "kind": "regex_block",
            "config": {"keywords": ["x"]},
            "global": True,
        },
        {"name": "pii", "phase": "post_auth", "kind": "pii_redact"},
        {"name": "out", "phase": "response", "kind": "response_regex", "config": {"patterns": ["y"]}},
    ]
    raw["llms"][0]["filters"] = ["out", "pii"]
    snapshot = bootstrapped(tmp_path / "t.db", raw)
    assert snapshot.warnings == ()
    gpt = snapshot.llms["gpt"]
    assert gpt.chain.order == (
        ("pre_auth", "rx"),
        ("auth", "auth"),
        ("auth", "access"),
        ("post_auth", "pii"),
        ("post_auth", "limits"),
        ("response", "out"),
    )
    assert gpt.chain.responds and not snapshot.llms["lit"].chain.responds
    assert gpt.window is not None and (gpt.window.rpm, gpt.window.tpm) == (5, 0)
    assert gpt.budget is not None and gpt.budget.limit == 500 * 10**9
    app = snapshot.apps[sha("tg-bot-key-0001")]
    assert app.window is not None and (app.window.rpm, app.window.tpm) == (600, 1000)
    assert app.budget is not None and app.budget.limit == 250_000_000
    assert app.window.key == f"app:{app.id}" and gpt.window.key == f"llm:{gpt.id}"


def test_apps_are_keyed_by_the_sha256_of_their_key(tmp_path: Path) -> None:
    raw = plain()
    raw["users"][0]["api_key"] = "tg-user-admin-key"
    snapshot = bootstrapped(tmp_path / "t.db", raw)
    assert list(snapshot.apps) == [sha("tg-bot-key-0001")]
    app = snapshot.apps[sha("tg-bot-key-0001")]
    assert (app.name, app.active, app.llms) == ("bot", True, frozenset({"gpt"}))
    user = snapshot.users[sha("tg-user-admin-key")]
    assert (user.email, user.role) == ("dev@example.com", "developer")


@pytest.mark.parametrize(
    ("slug", "plaintext"), [("gpt", UPSTREAM_KEY), ("lit", LITERAL_KEY)], ids=["secret", "literal"]
)
@pytest.mark.one_store  # reads the SQLite files; test_admin.py looks in a PostgreSQL store
def test_credentials_reach_the_provider_in_plaintext_and_not_the_store(
    tmp_path: Path, slug: str, plaintext: str
) -> None:
    db = tmp_path / "t.db"
    snapshot = bootstrapped(db, plain())
    call = Call(op=Operation.CHAT, body=b"{}", model="gpt-4o-mini")
    request = asyncio.run(snapshot.llms[slug].provider.request(call))
    assert request.headers["authorization"] == f"Bearer {plaintext}"
    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("t.db"))
    assert plaintext.encode() not in stored  # sealed at rest (db and WAL)


def test_a_secret_sealed_under_another_master_key_cannot_be_opened(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    bootstrapped(db, plain())

    async def main() -> None:
        store = await _open(db)
        try:
            with pytest.raises(SecretError):
                build(ConfigState.from_rows(await store.load_config()), SecretBox(bytes(32)))
        finally:
            await store.close()

    asyncio.run(main())


def _open_key_files_together(paths: list[Path], racers: int) -> list[str]:
    """`racers` threads per path open (creating) the same key file at once; returns their errors."""
    errors: list[str] = []
    for path in paths:
        keys: list[bytes] = []
        barrier = threading.Barrier(racers)

        def race(path: Path = path, keys: list[bytes] = keys, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                box = SecretBox.from_key_file(path)
            except ValueError as exc:
                errors.append(repr(exc))
            else:
                keys.append(box.seal("probe").encode())

        threads = [threading.Thread(target=race) for _ in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if len({SecretBox.from_key_file(path).open(k.decode()) for k in keys}) != 1:
            errors.append(f"{path.name}: not every racer could open the others' secrets")
    return errors


def test_gateways_starting_together_share_one_master_key(tmp_path: Path) -> None:
    """Without TOLLGATE_SECRET_KEY every process on one db creates or reads `<db>.key`, at the same moment
    when gateways start together. Threads stand in for processes; a short switch interval widens the race."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        errors = _open_key_files_together([tmp_path / f"t{i}.db.key" for i in range(100)], racers=8)
    finally:
        sys.setswitchinterval(interval)
    assert errors == []


# --- warnings ----------------------------------------------------------------------------------------------


def _change(path: str, value: Any) -> Any:
    """A change to the plain config: set `value` at `path` (`llms.0.cache`) or append it to a list."""

    def apply(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        if last == "+":
            node.append(value)
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


# (id, changes to the plain config, one fragment per expected warning: each names one warning, no other)
WARNINGS = [
    ("external filter", [_change("filters", [{"name": "ext", "phase": "pre_auth", "kind": "python:p.m:f"}]),
                         _change("llms.1.filters", ["ext"])], ["filter 'ext'"]),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "expected"), [w[1:] for w in WARNINGS], ids=[w[0] for w in WARNINGS])
def test_every_unbuilt_feature_is_named_in_the_warnings(
    tmp_path: Path, changes: list[Any], expected: list[str]
) -> None:
    raw = copy.deepcopy(plain())
    for change in changes:
        change(raw)
    warnings = bootstrapped(tmp_path / "t.db", raw).warnings
    assert len(warnings) == len(expected), warnings
    for fragment in expected:
        assert sum(fragment in w for w in warnings) == 1, (fragment, warnings)


def test_a_plain_config_has_no_warning(tmp_path: Path) -> None:
    assert bootstrapped(tmp_path / "t.db", plain()).warnings == ()


def test_cache_off_and_exact_are_no_warning(tmp_path: Path) -> None:
    raw = plain()
    raw["llms"][0]["cache"] = {"mode": "exact"}
    raw["apps"][0]["cache"] = {"mode": "off"}
    assert bootstrapped(tmp_path / "t.db", raw).warnings == ()


def test_a_route_over_an_llm_with_limits_is_no_warning(tmp_path: Path) -> None:
    """The target's own limits hold through the route (gateway/routing.py), so nothing is left unenforced."""
    raw = plain()
    raw["llms"][0]["rate_limit"] = {"rpm": 5}
    raw["llms"][0]["monthly_budget_usd"] = 10
    raw["routes"] = [{"slug": "smart", "targets": [{"llm": "gpt"}]}]
    assert bootstrapped(tmp_path / "t.db", raw).warnings == ()


def test_everything_unbuilt_at_once_is_each_named_once(tmp_path: Path) -> None:
    raw = copy.deepcopy(plain())
    for changes, _ in [w[1:] for w in WARNINGS]:
        for change in changes:
            change(raw)
    raw["filters"] = [
        {"name": "pii", "phase": "post_auth", "kind": "pii_redact"},
        {"name": "rx", "phase": "pre_auth", "kind": "regex_block", "global": True},
        {"name": "ext", "phase": "pre_auth", "kind": "python:pkg.mod:fn"},
    ]
    raw["llms"][1]["filters"] = ["ext", "pii"]  # pii on two LLMs, rx global: still one warning each
    warnings = bootstrapped(tmp_path / "t.db", raw).warnings
    assert len(warnings) == len(set(warnings))
    assert sum("'ext'" in w for w in warnings) == 1, warnings  # not importable: named once
    assert not any("'pii'" in w or "'rx'" in w for w in warnings)  # built-in kinds are enforced


def test_process_notes_are_shown_beside_the_config_warnings(tmp_path: Path) -> None:
    async def main() -> Snapshot:
        store = await _open(tmp_path / "t.db")
        try:
            await apply_bootstrap(store, BOX, config(plain()))
            return await snapshot_of(store, ("--redis is not used yet", "--redis is not used yet"))
        finally:
            await store.close()

    assert asyncio.run(main()).warnings == ("--redis is not used yet",)


# --- bootstrap ---------------------------------------------------------------------------------------------


def _ids(rows: dict[str, list[Any]]) -> dict[tuple[str, str], int]:
    return {(kind, row.name): row.id for kind, kind_rows in rows.items() for row in kind_rows}


def test_bootstrap_twice_keeps_ids_and_generates_a_key_once(tmp_path: Path) -> None:
    raw = copy.deepcopy(grants_config())
    raw["apps"].append({"name": "keyless", "owner": "dev@example.com", "llms": ["a"]})
    raw["secrets"] = {"S": "v"}
    raw["prices"] = [{"vendor": "openai", "model": "m", "input_per_1m": 1}]
    raw["filters"] = [{"name": "f", "phase": "pre_auth", "kind": "regex_block"}]

    async def main() -> tuple[list[Any], ...]:
        store = await _open(tmp_path / "t.db")
        try:
            first = await apply_bootstrap(store, BOX, config(raw))
            rows1 = (await store.load_config()).rows
            second = await apply_bootstrap(store, BOX, config(raw))
            rows2 = (await store.load_config()).rows
            snapshot = await snapshot_of(store)
            return first, second, [rows1, rows2], [snapshot]
        finally:
            await store.close()

    first, second, (rows1, rows2), (snapshot,) = asyncio.run(main())
    assert [name for name, _ in first] == ["keyless"] and second == []
    key = first[0][1]
    assert key.startswith("tg-") and len(key) > 20
    entities = 3 + 1 + 5 + 3 + 11 + 1 + 1 + 1  # llms, routes, users, groups, apps, secrets, prices, filters
    assert _ids(rows1) == _ids(rows2) and len(_ids(rows1)) == entities
    assert snapshot.apps[sha(key)].name == "keyless"


def test_a_changed_fixed_key_replaces_the_old_one_and_a_removed_one_is_kept(tmp_path: Path) -> None:
    raw = plain()

    async def main() -> list[Snapshot]:
        store = await _open(tmp_path / "t.db")
        try:
            out = []
            for key in ("tg-bot-key-0001", "tg-bot-key-0002", None):
                raw["apps"][0]["api_key"] = key
                assert await apply_bootstrap(store, BOX, config(raw)) == []
                out.append(await snapshot_of(store))
            return out
        finally:
            await store.close()

    first, changed, removed = asyncio.run(main())
    assert list(first.apps) == [sha("tg-bot-key-0001")]
    assert list(changed.apps) == [sha("tg-bot-key-0002")]
    assert list(removed.apps) == [sha("tg-bot-key-0002")]  # no key in the file: the stored one stays
    assert first.apps[sha("tg-bot-key-0001")].id == removed.apps[sha("tg-bot-key-0002")].id


class GatedStore:
    """A real store that holds its first write until every racer has read the config: forces the race."""

    def __init__(self, store: Store, gate: asyncio.Barrier) -> None:
        self.store = store
        self.gate = gate
        self.waited = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def write(self, ops: Any) -> Any:
        if not self.waited:
            self.waited = True
            await self.gate.wait()
        return await self.store.write(ops)


@pytest.mark.parametrize("gated", [True, False], ids=["forced race", "free race"])
def test_a_generated_key_race_returns_the_key_only_to_its_winner(tmp_path: Path, gated: bool) -> None:
    raw = plain()
    raw["apps"].append({"name": "keyless", "owner": "dev@example.com", "llms": ["gpt"]})
    raw["apps"].append({"name": "keyless-2", "owner": "dev@example.com", "llms": ["gpt"]})
    db = tmp_path / "t.db"

    async def main() -> tuple[list[list[tuple[str, str]]], Snapshot]:
        gate = asyncio.Barrier(2)
        stores = [cast(Store, GatedStore(store_at(db), gate)) if gated else store_at(db) for _ in range(2)]
        for store in stores:
            await store.open()
        try:
            results = await asyncio.gather(*(apply_bootstrap(s, BOX, config(raw)) for s in stores))
            return list(results), await snapshot_of(stores[0])
        finally:
            for store in stores:
                await store.close()

    results, snapshot = asyncio.run(main())
    returned = [pair for result in results for pair in result]
    assert sorted(name for name, _ in returned) == ["keyless", "keyless-2"]  # each key handed out once
    if gated:  # both generated keys; the first write won both apps, the other caller learns nothing
        assert sorted(len(r) for r in results) == [0, 2]
    by_name = {app.name: key for key, app in snapshot.apps.items()}
    for name, key in returned:
        assert by_name[name] == sha(key)


def test_a_vendor_whose_adapter_is_not_built_is_named_and_answers_501(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every vendor of INTERFACE.md has an adapter now; the path stays for the next one to be added."""
    from gateway.errors import VendorNotSupported
    from providers import registry

    monkeypatch.setitem(registry.ADAPTERS, "anthropic", "providers.not_built_yet:Adapter")
    registry.adapter.cache_clear()
    try:
        raw = copy.deepcopy(plain())
        _change("llms.+", {"slug": "claude", "vendor": "anthropic", "api_key": "k"})(raw)
        snapshot = bootstrapped(tmp_path / "t.db", raw)
        assert [w for w in snapshot.warnings if "claude" in w] == [
            "LLM 'claude': vendor anthropic has no adapter yet; its calls answer 501"
        ]
        with pytest.raises(VendorNotSupported) as refused:
            asyncio.run(snapshot.llms["claude"].provider.request(Call(op=Operation.CHAT, body=b"{}")))
        assert refused.value.status == 501
        assert snapshot.llms["gpt"].provider.vendor == "openai"  # the rest is served
    finally:
        registry.adapter.cache_clear()
