"""`python:` and `plugin:` filters (pipeline/plugins/): verdicts in every phase, real plugin processes that
crash, stall and get restarted, the fail policies, config checks and the generated gRPC code."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from gateway.context import RequestContext
from gateway.errors import ContentBlocked, FilterUnavailable
from pipeline.plugins.filters import (
    PluginTarget,
    RequestPhaseFilter,
    ResponsePhaseFilter,
    config_problems,
    plugin_filter,
    python_filter,
)
from pipeline.plugins.host import PluginHost, PluginUnavailable
from pipeline.plugins.hosts import PluginHosts
from pipeline.plugins.plugin_pb2 import FilterRequest
from providers.base import Call, Operation
from sync.model import Filter
from sync.snapshot import Snapshot

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent / "plugins"
SCOPE = {"type": "http", "path": "/openai/x/v1/chat/completions", "headers": [], "query_string": b""}
REQUEST_PHASES = ["pre_auth", "auth", "post_auth"]
START_S = 15.0  # a plugin process starts in well under a second; CI machines may be slow

T = TypeVar("T")


def context(body: dict[str, Any], stream: bool = False) -> RequestContext:
    ctx = RequestContext(Snapshot.empty(), SCOPE)
    ctx.call = Call(op=Operation.CHAT, body=orjson.dumps(body), model="gpt-4o", stream=stream)
    return ctx


def plugin(script: str) -> str:
    """The kind of a test plugin, run by this interpreter (which has tollgate installed)."""
    return f"plugin:{sys.executable} {PLUGINS / script}"


def spec(phase: str, kind: str, name: str = "guard", **config: Any) -> Filter:
    return Filter(name=name, phase=phase, kind=kind, config=config)  # type: ignore[arg-type]


def run(
    test: Callable[[PluginHosts], Awaitable[T]], hosts: PluginHosts | None = None, loop: str = "asyncio"
) -> T:
    """Run `test` in a fresh event loop (the gateway's is uvloop) with its own plugin hosts, stopped at the
    end."""

    async def main() -> T:
        nonlocal hosts
        hosts = hosts or PluginHosts()
        try:
            return await test(hosts)
        finally:
            await hosts.close()

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(main())  # type: ignore[no-any-return]
    return asyncio.run(main())


LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


async def started(hosts: PluginHosts) -> PluginHost:
    (host,) = hosts
    assert await host.wait_ready(START_S)
    return host


async def until(predicate: Callable[[], bool], timeout_s: float = START_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def respond(filter: object) -> ResponsePhaseFilter:
    assert isinstance(filter, ResponsePhaseFilter)
    return filter


async def request(filter: Any, body: dict[str, Any]) -> RequestContext:
    ctx = context(body)
    await filter(ctx)
    return ctx


# Verdicts in every phase


@pytest.mark.parametrize("phase", REQUEST_PHASES)
def test_plugin_request_phase_verdicts(phase: str) -> None:
    async def test(hosts: PluginHosts) -> None:
        guard = plugin_filter(spec(phase, plugin("chaos.py"), timeout_ms=2000), hosts)
        assert isinstance(guard, RequestPhaseFilter) and guard.name == "guard"
        await started(hosts)

        passed = await request(guard, {"say": "hello"})
        assert passed.body.doc == {"say": "hello"} and not passed.body.dirty

        with pytest.raises(ContentBlocked) as blocked:
            await request(guard, {"say": "block"})
        assert blocked.value.filter == "guard"
        assert str(blocked.value) == f"blocked by filter 'guard': {phase} said no"

        rewritten = await request(guard, {"say": "rewrite", "n": 1})
        assert rewritten.body.doc == {"say": "rewritten", "n": 1, "phase": phase}
        rewritten.commit_body()
        assert rewritten.call is not None
        assert orjson.loads(rewritten.call.body) == {"say": "rewritten", "n": 1, "phase": phase}

    run(test)


@pytest.mark.parametrize("streamed", [False, True], ids=["answer", "stream-event"])
def test_plugin_response_phase_verdicts(streamed: bool) -> None:
    async def test(hosts: PluginHosts) -> None:
        guard = plugin_filter(spec("response", plugin("chaos.py"), timeout_ms=2000), hosts)
        assert isinstance(guard, ResponsePhaseFilter)
        await started(hosts)
        ctx = context({"say": "anything"}, stream=streamed)

        doc = {"say": "hello"}
        assert await guard(ctx, doc, streamed) is doc
        with pytest.raises(ContentBlocked, match="response said no"):
            await guard(ctx, {"say": "block"}, streamed)
        rewritten = await guard(ctx, {"say": "rewrite"}, streamed)
        assert rewritten == {"say": "rewritten", "phase": "response"}

    run(test)


def test_plugin_is_told_the_call() -> None:
    """Config without the gateway's keys, the body, the metadata (llm and app may not be known yet)."""

    async def test(hosts: PluginHosts) -> dict[str, Any]:
        echo = plugin_filter(
            spec("pre_auth", plugin("echo.py"), name="echo", timeout_ms=2000, fail="open", a=1), hosts
        )
        await started(hosts)
        ctx = await request(echo, {"messages": [{"role": "user", "content": "hi"}]})
        told: dict[str, Any] = ctx.body.doc
        assert told["metadata"]["request_id"] == ctx.request_id
        return told

    told = run(test)
    assert told["phase"] == "pre_auth" and told["filter"] == "echo"
    assert told["config"] == {"a": 1}
    assert told["body"] == {"messages": [{"role": "user", "content": "hi"}]}
    metadata = dict(told["metadata"], request_id="")
    assert metadata == {
        "request_id": "",
        "llm": "",
        "vendor": "",
        "model": "gpt-4o",
        "app": "",
        "operation": "chat",
        "path": "",
        "stream": "false",
    }


def test_large_bodies() -> None:
    """Past gRPC's default 4 MiB message limit, both ways."""

    async def test(hosts: PluginHosts) -> None:
        guard = plugin_filter(spec("post_auth", plugin("chaos.py"), timeout_ms=10_000), hosts)
        await started(hosts)
        ctx = await request(guard, {"say": "rewrite", "pad": "x" * 6_000_000})
        assert ctx.body.doc["say"] == "rewritten" and len(ctx.body.doc["pad"]) == 6_000_000

    run(test)


def test_example_keyword_guard() -> None:
    script = ROOT / "examples" / "plugins" / "keyword_guard.py"
    assert os.access(script, os.X_OK)
    kind = f"plugin:{sys.executable} {script}"

    async def test(hosts: PluginHosts) -> None:
        guard = plugin_filter(spec("post_auth", kind, keywords=["Project-X"], timeout_ms=2000), hosts)
        masker = respond(
            plugin_filter(spec("response", kind, name="masker", mask=["internal"], timeout_ms=2000), hosts)
        )
        await started(hosts)  # one process serves both filters
        await request(guard, {"messages": [{"role": "user", "content": "hello"}]})
        with pytest.raises(ContentBlocked, match="restricted keyword"):
            await request(guard, {"messages": [{"role": "user", "content": "tell me about project-x"}]})
        ctx = context({})
        answer = {"choices": [{"message": {"content": "an internal memo"}}]}
        assert await masker(ctx, answer, False) == {"choices": [{"message": {"content": "an ******** memo"}}]}
        event = {"choices": [{"delta": {"content": "fine"}}]}
        assert await masker(ctx, event, True) is event

    run(test)


# A plugin that fails


@LOOPS
def test_crashed_plugin_is_restarted(loop: str) -> None:
    async def test(hosts: PluginHosts) -> None:
        closed = plugin_filter(spec("post_auth", plugin("chaos.py"), name="closed", timeout_ms=100), hosts)
        opened = plugin_filter(
            spec("post_auth", plugin("chaos.py"), name="open", timeout_ms=100, fail="open"), hosts
        )
        host = await started(hosts)
        first_pid = host.pid
        assert isinstance(opened, RequestPhaseFilter) and isinstance(opened.target, PluginTarget)

        for restarts in (1, 2):
            with pytest.raises(FilterUnavailable) as down:
                await request(closed, {"say": "crash"})  # the process exits mid-call
            assert down.value.filter == "closed" and down.value.code == "filter_unavailable"
            await until(lambda: not host.ready)
            # While it is down, fail-closed refuses and fail-open lets requests through, unchanged.
            with pytest.raises(FilterUnavailable):
                await request(closed, {"say": "block"})
            failed_open = opened.target.failed_open
            assert (await request(opened, {"say": "block"})).body.doc == {"say": "block"}
            assert opened.target.failed_open == failed_open + 1

            await until(lambda: host.ready)
            assert host.restarts == restarts and host.returncode is None
            with pytest.raises(ContentBlocked):
                await request(closed, {"say": "block"})  # serving again
        assert host.pid != first_pid
        assert host.failures >= 4

    run(test, loop=loop)


@LOOPS
@pytest.mark.parametrize("fail", ["closed", "open"])
def test_slow_plugin_does_not_stall_others(fail: str, loop: str) -> None:
    """A call slower than its deadline ends at the deadline; meanwhile 50 others are served at once."""

    async def test(hosts: PluginHosts) -> None:
        guard = plugin_filter(
            spec("post_auth", plugin("chaos.py"), timeout_ms=300, fail=fail, sleep_s=30), hosts
        )
        await started(hosts)
        began = time.monotonic()
        slow = asyncio.ensure_future(request(guard, {"say": "slow"}))
        fast = await asyncio.gather(*(request(guard, {"say": "rewrite", "n": n}) for n in range(50)))
        fast_s = time.monotonic() - began
        assert [ctx.body.doc["n"] for ctx in fast] == list(range(50))
        if fail == "closed":
            with pytest.raises(FilterUnavailable, match="no answer within 300 ms"):
                await slow
        else:
            assert (await slow).body.doc == {"say": "slow"}
        slow_s = time.monotonic() - began
        # Loose bounds: the point is "about the deadline, not the plugin's 30 s", not a benchmark.
        assert fast_s < 5 and 0.25 < slow_s < 5

    run(test, loop=loop)


def test_handler_error_and_unknown_plugin() -> None:
    async def test(hosts: PluginHosts) -> None:
        guard = plugin_filter(spec("post_auth", plugin("chaos.py"), timeout_ms=2000), hosts)
        await started(hosts)
        with pytest.raises(FilterUnavailable, match="internal: RuntimeError: the handler broke"):
            await request(guard, {"say": "fail"})
        await request(guard, {"say": "hello"})  # the plugin keeps serving

    run(test)

    async def missing(hosts: PluginHosts) -> None:
        host = hosts.host("/nonexistent/plugin")
        with pytest.raises(PluginUnavailable, match="plugin process down"):
            await host.call("post_auth", FilterRequest(), 0.3)
        assert host.restarts >= 1 and host.failures == 1  # "could not start" is retried with backoff

    run(missing)


# Hosts


def test_hosts_share_stop_and_retire() -> None:
    async def test(hosts: PluginHosts) -> None:
        command = f"{sys.executable} {PLUGINS / 'chaos.py'}"
        host = hosts.host(command)
        assert hosts.host(command) is host and list(hosts) == [host]
        assert await host.wait_ready(START_S)
        hosts.retain([command])
        assert list(hosts) == [host] and host.ready
        hosts.retain([])  # no longer configured: stopped after the grace period (0 here)
        await until(lambda: host.returncode is not None)
        assert host.returncode == 0  # the SDK exits cleanly on SIGTERM
        assert list(hosts) == []
        again = hosts.host(command)
        assert again is not host and await again.wait_ready(START_S)

    run(test, PluginHosts(retire_grace_s=0))


def test_stopping_fails_the_calls_in_flight() -> None:
    async def test(hosts: PluginHosts) -> None:
        guard = plugin_filter(spec("post_auth", plugin("chaos.py"), timeout_ms=10_000, sleep_s=30), hosts)
        host = await started(hosts)
        assert host.name == f"{Path(sys.executable).name} chaos.py"
        slow = asyncio.ensure_future(request(guard, {"say": "slow"}))
        await asyncio.sleep(0.2)
        await hosts.close()
        with pytest.raises(FilterUnavailable):
            await slow
        with pytest.raises(FilterUnavailable, match="plugin stopped"):
            await request(guard, {"say": "hello"})

    run(test)


def test_close_stops_every_plugin() -> None:
    async def test(hosts: PluginHosts) -> list[PluginHost]:
        plugin_filter(spec("post_auth", plugin("chaos.py")), hosts)
        plugin_filter(spec("post_auth", plugin("echo.py")), hosts)
        every = list(hosts)
        for host in every:
            assert await host.wait_ready(START_S)
        return every

    every = run(test)
    assert [host.returncode for host in every] == [0, 0]


def test_plugin_exits_when_the_gateway_dies(tmp_path: Path) -> None:
    """A gateway killed without stopping its plugins leaves no orphans: the SDK watches its parent."""
    socket = f"unix://{tmp_path}/plugin.sock"
    chaos = str(PLUGINS / "chaos.py")
    script = (
        "import os, subprocess, sys, time; os.environ['TOLLGATE_GATEWAY_PID'] = str(os.getpid()); "
        f"print(subprocess.Popen([sys.executable, {chaos!r}]).pid); sys.stdout.flush(); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "TOLLGATE_PLUGIN_ADDRESS": socket},
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, "the plugin outlived its gateway"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has exited (PID 1 may not reap it here)


# python: filters


def test_python_filters() -> None:
    async def test(hosts: PluginHosts) -> None:
        no_secrets = python_filter(spec("pre_auth", "python:tests.plugins.pyfilters:no_secrets"))
        await request(no_secrets, {"say": "hello"})
        with pytest.raises(ContentBlocked, match="blocked by filter 'guard': mentions a secret"):
            await request(no_secrets, {"say": "my secret"})

        tag = python_filter(spec("post_auth", "python:tests.plugins.pyfilters:tag", tag="t1"))
        ctx = await request(tag, {"say": "hello"})
        assert ctx.body.doc == {"say": "hello", "tag": "t1", "stream": "false"} and ctx.body.dirty

        tag_answers = respond(python_filter(spec("response", "python:tests.plugins.pyfilters:tag", tag="t2")))
        streamed = context({}, stream=True)
        assert await tag_answers(streamed, {"id": 1}, True) == {"id": 1, "tag": "t2", "stream": "true"}
        with pytest.raises(ContentBlocked):
            block_answers = respond(
                python_filter(spec("response", "python:tests.plugins.pyfilters:no_secrets"))
            )
            await block_answers(context({}), {"content": "a secret"}, False)

        counter = python_filter(spec("auth", "python:tests.plugins.pyfilters:counter"))
        await request(counter, {})
        from tests.plugins.pyfilters import counter as instance

        assert instance.calls == 1

        wrong = python_filter(spec("post_auth", "python:tests.plugins.pyfilters:wrong"))
        with pytest.raises(TypeError, match="returned dict, not a Verdict or None"):
            await request(wrong, {})

    run(test)


# Configuration


GOOD = plugin("chaos.py")
CONFIG_CASES: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("python", "python:tests.plugins.pyfilters:no_secrets", {}, []),
    ("python-method", "python:tests.plugins.pyfilters:Counter.__call__", {}, []),
    ("python-no-module", "python:tests.plugins.nothing_here:f", {}, ["cannot import module 'tests.plugins."]),
    (
        "python-no-attr",
        "python:tests.plugins.pyfilters:missing",
        {},
        ["module 'tests.plugins.pyfilters' has no"],
    ),
    ("python-not-callable", "python:tests.plugins.pyfilters:NOT_CALLABLE", {}, ["is a int, not a callable"]),
    ("python-form", "python:tests.plugins.pyfilters", {}, ["is not of the form python:pkg.module:callable"]),
    ("plugin", GOOD, {}, []),
    ("plugin-config", GOOD, {"timeout_ms": 50, "fail": "open"}, []),
    ("timeout-str", GOOD, {"timeout_ms": "50"}, ["config.timeout_ms must be a positive number"]),
    ("timeout-zero", GOOD, {"timeout_ms": 0}, ["config.timeout_ms must be a positive number"]),
    ("timeout-bool", GOOD, {"timeout_ms": True}, ["config.timeout_ms must be a positive number"]),
    ("fail", GOOD, {"fail": "maybe"}, ["config.fail must be 'open' or 'closed'"]),
    ("two", GOOD, {"fail": 1, "timeout_ms": -1}, ["config.timeout_ms", "config.fail"]),
    (
        "no-file",
        "plugin:/nonexistent/plugin --flag",
        {},
        ["plugin executable '/nonexistent/plugin' is not a file"],
    ),
    ("not-executable", f"plugin:{PLUGINS / 'pyfilters.py'}", {}, ["is not executable"]),
    ("no-command", "plugin:", {}, ["names no executable"]),
    ("bad-quotes", "plugin:'unbalanced", {}, ["cannot parse the plugin command"]),
    ("not-ours", "pii_redact", {"timeout_ms": "x"}, []),
]


@pytest.mark.parametrize(
    ("kind", "config", "expected"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_config_problems(kind: str, config: dict[str, Any], expected: list[str]) -> None:
    problems = config_problems(spec("post_auth", kind, **config))
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert start in problem


def test_factories_refuse_what_config_problems_reports() -> None:
    with pytest.raises(ValueError, match="cannot import"):
        python_filter(spec("post_auth", "python:tests.plugins.nothing_here:f"))
    with pytest.raises(ValueError, match=r"config\.fail"):
        plugin_filter(spec("post_auth", GOOD, fail="sometimes"), PluginHosts())
