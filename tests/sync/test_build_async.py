"""Building a snapshot without stalling the event loop (sync/snapshot.py build_async), the warning for a
filter an LLM names but the configuration lacks, and app keys an edge looks up beyond its snapshot
(pipeline/auth.py AppKeyAuth with Credentials)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import msgspec
import pytest

from gateway.context import RequestContext
from gateway.errors import InvalidApiKey
from pipeline.auth import AppKeyAuth
from store.base import KIND_NAMES
from sync.entities import KINDS, Stored
from sync.model import App, Entity, Filter, Group, Llm, Secret, User
from sync.secrets import SecretBox
from sync.snapshot import AppEntry, Snapshot, build, build_async
from sync.state import ConfigState

BOX = SecretBox(bytes(range(32)))
Build = Callable[[ConfigState, SecretBox], Awaitable[Snapshot]]


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def stored(id: int, entity: Entity, key_hash: str | None = None) -> Stored:
    """`entity` as the store gives it back (through its JSON)."""
    kind = next(k for k in KINDS.values() if type(entity) is k.struct)
    return Stored(id, kind.key(entity), kind.decoder.decode(msgspec.json.encode(entity)), key_hash)


def state_of(**kinds: list[Stored]) -> ConfigState:
    return ConfigState(1, {kind: tuple(kinds.get(kind, ())) for kind in KIND_NAMES})


def large_state(n_llms: int = 200, n_apps: int = 2000) -> ConfigState:
    """A large configuration: LLMs with filters (one missing), users in groups, apps with keys."""
    filters = [
        stored(1, Filter(name="rx", phase="pre_auth", kind="regex_block", config={"keywords": ["x", "y"]})),
        stored(2, Filter(name="pii", phase="post_auth", kind="pii_redact")),
        stored(3, Filter(name="out", phase="response", kind="response_regex", config={"patterns": ["z+"]})),
    ]
    names = [["rx"], ["pii", "out"], ["missing"], []]
    llms = [
        stored(
            i,
            Llm(
                slug=f"llm-{i}",
                vendor="openai",
                api_key="$SECRET/UPSTREAM" if i % 2 else BOX.seal(f"sk-{i}"),
                filters=names[i % len(names)],
                allowed_models=["gpt-4o.*"],
                active=i % 50 != 0,
            ),
        )
        for i in range(1, n_llms + 1)
    ]
    users = [
        stored(1, User(email="root@example.com", role="super_admin")),
        stored(2, User(email="dev@example.com", groups=["even"])),
    ]
    groups = [stored(1, Group(name="even", llms=[f"llm-{i}" for i in range(2, n_llms + 1, 2)]))]
    owners = ["root@example.com", "dev@example.com", "ghost@example.com"]
    apps = [
        stored(
            i,
            App(name=f"app-{i}", owner=owners[i % 3], llms=[f"llm-{j}" for j in range(i % 7, i % 7 + 3)]),
            key_hash=sha(f"tg-key-{i}"),
        )
        for i in range(1, n_apps + 1)
    ]
    secrets = [stored(1, Secret(name="UPSTREAM", value=BOX.seal("sk-upstream")))]
    return state_of(llms=llms, filters=filters, users=users, groups=groups, apps=apps, secrets=secrets)


# --- build_async -------------------------------------------------------------------------------------------


def test_build_async_gives_what_build_gives() -> None:
    """For 200 LLMs and 2000 apps, build_async's snapshot has build's LLMs, apps, users and warnings."""
    state = large_state()
    expected = build(state, BOX)
    actual = asyncio.run(build_async(state, BOX))
    assert len(expected.llms) == 196 and len(expected.apps) == 2000  # every 50th LLM is disabled
    assert {s: e.id for s, e in actual.llms.items()} == {s: e.id for s, e in expected.llms.items()}
    assert {s: e.chain.order for s, e in actual.llms.items()} == {
        s: e.chain.order for s, e in expected.llms.items()
    }
    assert actual.apps == expected.apps
    assert actual.users == expected.users
    assert actual.unserved == expected.unserved
    assert actual.warnings == expected.warnings and actual.warnings
    assert actual.version == expected.version


async def _ticks_while(work: Callable[[], Awaitable[Snapshot]]) -> int:
    """How many times a concurrent task, incrementing a counter at each `sleep(0)`, ran during `work`."""
    ticks = 0
    done = False

    async def tick() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(tick())
    await asyncio.sleep(0)  # the ticker has started
    before = ticks
    await work()
    during = ticks - before
    done = True
    await task
    return during


def test_build_async_gives_the_loop_back_while_it_builds() -> None:
    """Another task runs while build_async compiles a large configuration, and never while build does."""
    state = large_state()

    async def synchronous() -> Snapshot:
        return build(state, BOX)

    async def main() -> tuple[int, int]:
        return await _ticks_while(synchronous), await _ticks_while(lambda: build_async(state, BOX))

    blocked, shared = asyncio.run(main())
    assert blocked == 0
    assert shared >= 1  # the build takes several 2 ms slices on any machine


def test_build_async_can_give_the_loop_back_after_every_llm_and_slice_of_apps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With every slice over at once, the other task runs after each LLM and each 512 apps (no timing)."""
    monkeypatch.setattr("sync.snapshot.SLICE_S", 0.0)
    state = large_state()
    shared = asyncio.run(_ticks_while(lambda: build_async(state, BOX)))
    assert shared >= 196 + 2000 // 512  # the served LLMs, then the slices of apps


# --- warnings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("builder", ["build", "build_async"])
def test_a_filter_not_in_the_configuration_is_named_in_a_warning(builder: str) -> None:
    """An LLM that lists a filter the configuration lacks is still served, with a warning naming both."""
    state = state_of(
        llms=[
            stored(1, Llm(slug="gpt", vendor="openai", api_key=BOX.seal("sk"), filters=["pii", "nope"])),
            stored(2, Llm(slug="lit", vendor="openai", api_key=BOX.seal("sk"))),
        ],
        filters=[stored(1, Filter(name="pii", phase="post_auth", kind="pii_redact"))],
    )
    snapshot = build(state, BOX) if builder == "build" else asyncio.run(build_async(state, BOX))
    assert snapshot.warnings == ("LLM 'gpt': filter 'nope' is not in this gateway's configuration",)
    assert set(snapshot.llms) == {"gpt", "lit"}
    assert ("post_auth", "pii") in snapshot.llms["gpt"].chain.order


# --- AppKeyAuth with Credentials ---------------------------------------------------------------------------

SNAPSHOT_KEY = "tg-in-the-snapshot"
HUB_KEY = "tg-only-at-the-hub"


class FakeCredentials:
    """Credentials that answer from a dict and record every key hash they were asked for."""

    def __init__(self, apps: dict[str, AppEntry]) -> None:
        self.apps = apps
        self.asked: list[str] = []

    async def find(self, key_hash: str) -> AppEntry | None:
        self.asked.append(key_hash)
        return self.apps.get(key_hash)


def entry(id: int, name: str, active: bool = True) -> AppEntry:
    return AppEntry(id, name, active, 1, "root@example.com", frozenset({"gpt"}))


def snapshot_with_app(active: bool = True) -> Snapshot:
    state = state_of(
        llms=[stored(1, Llm(slug="gpt", vendor="openai"))],
        users=[stored(1, User(email="root@example.com", role="super_admin"))],
        apps=[
            stored(
                7, App(name="local", owner="root@example.com", llms=["gpt"], active=active), sha(SNAPSHOT_KEY)
            )
        ],
    )
    return build(state, BOX)


def authenticate(snapshot: Snapshot, key: str, credentials: FakeCredentials | None) -> RequestContext:
    scope = {
        "type": "http",
        "path": "/openai/gpt/v1/chat/completions",
        "headers": [(b"authorization", f"Bearer {key}".encode())],
        "query_string": b"",
    }
    ctx = RequestContext(snapshot, scope)
    asyncio.run(AppKeyAuth(credentials)(ctx))
    return ctx


def test_a_key_in_the_snapshot_is_not_looked_up() -> None:
    """A key the snapshot has is found there; the credentials are not asked."""
    credentials = FakeCredentials({})
    ctx = authenticate(snapshot_with_app(), SNAPSHOT_KEY, credentials)
    assert ctx.app is not None and (ctx.app.id, ctx.app.name) == (7, "local")
    assert credentials.asked == []


def test_a_key_not_in_the_snapshot_is_found_through_the_credentials() -> None:
    """A snapshot miss asks credentials.find with the key's hex SHA-256, and takes the app it answers."""
    hub_app = entry(42, "at-the-hub")
    credentials = FakeCredentials({sha(HUB_KEY): hub_app})
    ctx = authenticate(snapshot_with_app(), HUB_KEY, credentials)
    assert ctx.app is hub_app
    assert credentials.asked == [sha(HUB_KEY)]


def test_a_key_found_nowhere_is_invalid() -> None:
    """A key neither the snapshot nor the credentials know is InvalidApiKey (with or without credentials)."""
    credentials = FakeCredentials({sha(HUB_KEY): entry(42, "at-the-hub")})
    with pytest.raises(InvalidApiKey):
        authenticate(snapshot_with_app(), "tg-unknown", credentials)
    assert credentials.asked == [sha("tg-unknown")]
    with pytest.raises(InvalidApiKey):
        authenticate(snapshot_with_app(), HUB_KEY, None)


def test_an_inactive_app_is_invalid() -> None:
    """An inactive app is InvalidApiKey, whether the credentials or the snapshot has it."""
    credentials = FakeCredentials({sha(HUB_KEY): entry(42, "at-the-hub", active=False)})
    with pytest.raises(InvalidApiKey):
        authenticate(snapshot_with_app(), HUB_KEY, credentials)
    assert credentials.asked == [sha(HUB_KEY)]
    other = FakeCredentials({sha(SNAPSHOT_KEY): entry(7, "local")})  # an active copy elsewhere
    with pytest.raises(InvalidApiKey):
        authenticate(snapshot_with_app(active=False), SNAPSHOT_KEY, other)
    assert other.asked == []


def test_a_rebuild_reuses_the_llms_that_did_not_change() -> None:
    """Given the previous snapshot, only changed LLMs are compiled again (a push with one change costs one
    LLM, not all of them); a changed filter, key or field recompiles, and the warnings stay whole."""
    state = large_state(40, 10)
    first = asyncio.run(build_async(state, BOX))
    llms = list(state.of("llms"))
    changed = msgspec.structs.replace(llms[4].entity, default_model="gpt-4o")
    llms[4] = Stored(llms[4].id, llms[4].name, changed)
    second = asyncio.run(build_async(state.replace("llms", tuple(llms)), BOX, previous=first))
    assert second.llms["llm-5"] is not first.llms["llm-5"] and second.llms["llm-5"].default_model == "gpt-4o"
    assert all(second.llms[slug] is entry for slug, entry in first.llms.items() if slug != "llm-5")
    assert second.warnings == first.warnings

    filters = [
        Stored(f.id, f.name, msgspec.structs.replace(f.entity, config={"keywords": ["w"]}))
        if f.name == "rx"
        else f
        for f in state.of("filters")
    ]
    third = asyncio.run(build_async(state.replace("filters", tuple(filters)), BOX, previous=first))
    for slug, entry in first.llms.items():
        uses_rx = "rx" in entry.chain.names()
        assert (third.llms[slug] is entry) is not uses_rx, slug

    secrets = (Stored(1, "UPSTREAM", Secret(name="UPSTREAM", value=BOX.seal("sk-rotated"))),)
    fourth = asyncio.run(build_async(state.replace("secrets", secrets), BOX, previous=first))
    assert fourth.llms["llm-1"] is not first.llms["llm-1"]  # its key is the rotated secret
    assert fourth.llms["llm-2"] is first.llms["llm-2"]  # a sealed literal of its own
