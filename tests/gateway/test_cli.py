"""`tollgate serve` as an operator runs it: a process in its own directory, configured by flags, environment
and a YAML file; one line on stderr when it cannot start, warnings for whatever is configured but not
built, the README's flow end to end, and a clean exit on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionMessageParam

from mocks.openai import MockOpenAI
from tests.conftest import StartGateway
from tests.support import ADMIN_TOKEN, APP_KEY, base_config, free_port, wait_ready

pytestmark = pytest.mark.one_store  # the CLI's own --db (SQLite files it names)

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "tollgate.yaml"
EXAMPLE_MOCK = ("127.0.0.1", 9099)  # where examples/tollgate.yaml starts the bundled mock
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]

# INTERFACE.md's table of `tollgate serve` flags.
FLAGS = [
    "--config", "--db", "--host", "--port", "--admin-port", "--workers", "--mode", "--hub", "--redis",
    "--drain-s", "--shutdown-timeout-s", "--db-pool", "--grpc-port", "--namespace", "--edge-id",
    "--heartbeat-s", "--credential-ttl-s",
]  # fmt: skip


def operator_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Tollgate setting of the caller's, plus the admin token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_") and k != "GATEWAY_MODE"}
    return {**env, "TOLLGATE_ADMIN_TOKEN": ADMIN_TOKEN, **extra}


def tollgate(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", *args]


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


class Serve:
    """A `tollgate serve` process run from `cwd`, with stdout and stderr in files there."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str], port: int) -> None:
        self.cwd = cwd
        self.url = f"http://127.0.0.1:{port}"
        self._out: IO[bytes] = (cwd / "stdout.log").open("wb")
        self._err: IO[bytes] = (cwd / "stderr.log").open("wb")
        self.process = subprocess.Popen(
            tollgate("serve", *args), cwd=cwd, env=env, stdout=self._out, stderr=self._err
        )

    def stderr(self) -> str:
        return (self.cwd / "stderr.log").read_text(errors="replace")

    def wait_ready(self, timeout: float = 20) -> Serve:
        wait_ready(self.process, self.url, self.stderr, timeout)
        return self

    def readyz(self) -> httpx.Response:
        return httpx.get(self.url + "/readyz", timeout=5)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()
        self._err.close()
        return self.process.returncode


StartServe = Callable[..., Serve]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[StartServe]:
    """Start `tollgate serve` processes in tmp_path; every one is stopped at the end."""
    started: list[Serve] = []

    def start(*args: str, env: dict[str, str] | None = None, port: int) -> Serve:
        cwd = tmp_path / f"run{len(started)}"
        cwd.mkdir()
        process = Serve(cwd, *args, env=env or operator_env(), port=port)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


# --- it cannot start: one line, and nothing is left listening ----------------------------------------------


def _example_with(old: str, new: str) -> str:
    text = EXAMPLE.read_text()
    assert old in text
    return text.replace(old, new, 1)


BAD_CONFIGS = [
    ("wrong vendor", _example_with("vendor: openai", "vendor: open-ai"),
     ["llms 'gpt'", "field 'vendor'", "open-ai"]),
    ("unknown field", _example_with("role: developer", "rol: developer"),
     ["users 'alice@example.com'", "field 'rol'", "unknown field"]),
    ("unknown owner", _example_with("owner: alice@example.com", "owner: bob@example.com"),
     ["apps 'demo-app'", "field 'owner'", "bob@example.com"]),
    ("unset variable in a secret", _example_with("MOCK_KEY: mock-upstream-key", "MOCK_KEY: ${TG_TEST_UNSET}"),
     ["secrets.MOCK_KEY", "TG_TEST_UNSET", "not set"]),
    ("unset variable in an llm", _example_with("api_key: $SECRET/MOCK_KEY", "api_key: ${TG_TEST_UNSET_VAR}"),
     ["llms 'gpt'", "field 'api_key'", "TG_TEST_UNSET_VAR"]),
    ("not yaml", "llms: [\n", ["invalid YAML"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_a_bad_config_is_one_line_naming_file_entry_and_field(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    port, admin_port = free_port(), free_port()
    result = subprocess.run(
        tollgate("serve", "--config", "bad.yaml", "--db", f"sqlite:///{tmp_path}/x.db",
                 "--port", str(port), "--admin-port", str(admin_port)),
        cwd=tmp_path, env=operator_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "bad.yaml" in lines[0]
    for part in expected:
        assert part in lines[0], lines[0]
    assert not listening(port) and not listening(admin_port)


@pytest.mark.parametrize(
    ("secret", "db", "reason"),
    [
        (None, "postgresql://postgres@127.0.0.1:5432/postgres", "needs TOLLGATE_SECRET_KEY"),
        ("k", "postgresql://nobody:pw@127.0.0.1:1/none", "cannot open the PostgreSQL store"),
    ],
)
def test_postgresql_problems_are_refused_in_one_line(
    tmp_path: Path, secret: str | None, db: str, reason: str
) -> None:
    """Without the shared master key, or where no PostgreSQL answers: one line, nothing listening."""
    port, admin_port = free_port(), free_port()
    env = operator_env(**({"TOLLGATE_SECRET_KEY": secret} if secret else {}))
    result = subprocess.run(
        tollgate("serve", "--db", db, "--port", str(port), "--admin-port", str(admin_port)),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0] and "pw" not in lines[0], result.stderr
    assert not listening(port) and not listening(admin_port)


@pytest.mark.parametrize("taken", ["--port", "--admin-port"])
def test_a_port_in_use_is_refused_in_one_line_naming_it(tmp_path: Path, taken: str) -> None:
    ports = {"--port": free_port(), "--admin-port": free_port()}
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports[taken]))
        blocker.listen()
        result = subprocess.run(
            tollgate("serve", "--db", f"sqlite:///{tmp_path}/x.db",
                     "--port", str(ports["--port"]), "--admin-port", str(ports["--admin-port"])),
            cwd=tmp_path, env=operator_env(), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{ports[taken]}" in lines[0]
    assert not any(listening(port) for port in ports.values())


def settle(process: Serve, timeout: float = 20) -> str:
    """Wait until the process is ready, has exited, or has printed a traceback and stays stuck after it."""
    deadline = time.monotonic() + timeout
    stuck_since: float | None = None
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            return "exited"
        with contextlib.suppress(httpx.TransportError):
            if process.readyz().status_code == 200:
                return "ready"
        if "Traceback (most recent call last)" in process.stderr():
            stuck_since = stuck_since or time.monotonic()
            if time.monotonic() - stuck_since > 2:
                return "stuck after a traceback"
        time.sleep(0.05)
    return "neither ready nor exited"


def test_a_broken_database_file_is_one_line_and_an_exit(serve: StartServe, tmp_path: Path) -> None:
    (tmp_path / "broken.db").write_bytes(b"this is not an SQLite database, " * 64)
    port = free_port()
    args = ("--db", f"sqlite:///{tmp_path}/broken.db", "--port", str(port), "--admin-port", str(free_port()))
    gateway = serve(*args, port=port)
    assert settle(gateway) == "exited", gateway.stderr()
    assert gateway.process.returncode != 0
    lines = gateway.stderr().strip().splitlines()
    assert len(lines) == 1 and "broken.db" in lines[0], lines


def test_renaming_an_app_in_the_file_is_served_or_refused_in_one_line(
    serve: StartServe, tmp_path: Path, upstream: MockOpenAI, upstream_url: str
) -> None:
    config = tmp_path / "tollgate.yaml"
    db = f"sqlite:///{tmp_path}/x.db"
    for name in ("app-one", "app-one-renamed"):
        raw = base_config(upstream_url)
        raw["apps"][0]["name"] = name  # same fixed api_key
        config.write_text(yaml.safe_dump(raw))
        port = free_port()
        args = ("--config", str(config), "--db", db, "--port", str(port), "--admin-port", str(free_port()))
        gateway = serve(*args, port=port)
        outcome = settle(gateway)
        assert "Traceback" not in gateway.stderr(), gateway.stderr()
        if outcome == "exited":  # refused: one line naming the file, the entry and the field
            lines = gateway.stderr().strip().splitlines()
            assert gateway.process.returncode != 0 and len(lines) == 1, lines
            assert "'app-one-renamed'" in lines[0] and "api_key" in lines[0], lines
            return
        assert outcome == "ready"
        assert gateway.stop() == 0


# --- the README flow ---------------------------------------------------------------------------------------


def test_the_readme_flow(serve: StartServe, tmp_path: Path) -> None:
    if listening(EXAMPLE_MOCK[1]):
        pytest.skip(f"{EXAMPLE_MOCK[0]}:{EXAMPLE_MOCK[1]}, where the example starts its mock, is taken")
    port, admin_port = free_port(), free_port()
    db = tmp_path / "x.db"
    gateway = serve("--config", str(EXAMPLE), "--port", str(port), "--admin-port", str(admin_port),
                    "--db", f"sqlite:///{db}", port=port)  # fmt: skip
    gateway.wait_ready()
    log = gateway.stderr()
    assert f"gateway listening on http://127.0.0.1:{port}" in log
    assert f"admin listening on http://127.0.0.1:{admin_port}" in log

    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/openai/gpt/v1", api_key="tg-demo-0001", max_retries=0
    )
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert answer.choices[0].message.content and answer.usage is not None
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == answer.choices[0].message.content

    assert gateway.stop(signal.SIGTERM) == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT status_code, stream, app_name, llm_slug, cost FROM analytics ORDER BY id"
        ).fetchall()
    assert [row[:4] for row in rows] == [(200, 0, "demo-app", "gpt"), (200, 1, "demo-app", "gpt")]
    assert all(row[4] > 0 for row in rows)
    assert not listening(port) and not listening(admin_port)


# --- flags and their environment variables -----------------------------------------------------------------


def test_help_lists_every_flag_with_its_environment_variable(tmp_path: Path) -> None:
    result = subprocess.run(tollgate("serve", "--help"), cwd=tmp_path, env=operator_env(),
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # help text wraps anywhere
    for flag in FLAGS:
        assert re.search(rf"(^|\s){flag}\s", text), flag
        assert f"env var: TOLLGATE_{flag[2:].replace('-', '_').upper()}" in text, flag


# A value no flag of that type accepts: refused under the flag's name, so the variable is read.
INVALID = [
    ("PORT", "x"), ("ADMIN_PORT", "x"), ("WORKERS", "0"), ("MODE", "hub"), ("DRAIN_S", "soon"),
    ("SHUTDOWN_TIMEOUT_S", "x"), ("DB_POOL", "x"), ("GRPC_PORT", "x"), ("HEARTBEAT_S", "x"),
    ("CREDENTIAL_TTL_S", "x"),
]  # fmt: skip


def _flag(name: str) -> str:
    return "--" + name.lower().replace("_", "-")


def _serve_args(tmp_path: Path, *, but: str) -> list[str]:
    """Flags that keep a process that does start off the default ports and database (except `but`)."""
    args = ["--db", f"sqlite:///{tmp_path}/x.db"]
    for flag in ("--port", "--admin-port"):
        if flag != but:
            args += [flag, str(free_port())]
    return args


def test_typed_flags_are_read_from_their_environment_variables(tmp_path: Path) -> None:
    pipe = subprocess.PIPE
    processes = {
        name: subprocess.Popen(tollgate("serve", *_serve_args(tmp_path, but=_flag(name))),
                               cwd=tmp_path, stdout=pipe, stderr=pipe, text=True,
                               env=operator_env(**{f"TOLLGATE_{name}": value}))
        for name, value in INVALID
    }  # fmt: skip
    try:
        for name, process in processes.items():
            _, stderr = process.communicate(timeout=30)
            assert process.returncode == 2, (name, stderr)
            assert f"'{_flag(name)}'" in stderr, (name, stderr)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_settings_from_the_environment_only(
    serve: StartServe, tmp_path: Path, upstream: MockOpenAI, upstream_url: str
) -> None:
    port, admin_port = free_port(), free_port()
    config = tmp_path / "tollgate.yaml"
    config.write_text(yaml.safe_dump(base_config(upstream_url)))
    env = operator_env(
        TOLLGATE_CONFIG=str(config), TOLLGATE_DB=f"sqlite:///{tmp_path}/env.db", TOLLGATE_HOST="127.0.0.1",
        TOLLGATE_PORT=str(port), TOLLGATE_ADMIN_PORT=str(admin_port), TOLLGATE_DRAIN_S="120",
        TOLLGATE_HUB="127.0.0.1:1", TOLLGATE_MAX_BODY_MIB="0.001",
    )  # fmt: skip
    gateway = serve(env=env, port=port).wait_ready()
    assert f"gateway listening on http://127.0.0.1:{port}" in gateway.stderr()
    assert httpx.get(f"http://127.0.0.1:{admin_port}/api/v1/llms", timeout=5,
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200  # fmt: skip
    assert (tmp_path / "env.db").exists()
    assert any("--hub" in w for w in gateway.readyz().json()["warnings"])
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 2000}]}
    refused = httpx.post(f"{gateway.url}/openai/gpt/v1/chat/completions", json=big, timeout=5,
                         headers={"authorization": f"Bearer {APP_KEY}"})  # fmt: skip
    assert refused.status_code == 413

    gateway.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while gateway.readyz().status_code != 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.readyz().json()["status"] == "draining"  # and stays so: TOLLGATE_DRAIN_S=120
    chat = gateway_chat(gateway.url)
    assert chat.status_code == 200  # still serving while draining
    assert "draining for 120.0 s" in gateway.stderr()
    assert gateway.process.poll() is None
    assert gateway.stop(signal.SIGINT) == 0  # a second signal (Ctrl+C) ends the drain at once


def gateway_chat(url: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": HELLO}
    return httpx.post(f"{url}/openai/gpt/v1/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {APP_KEY}"})  # fmt: skip


def test_gateway_mode_is_an_alias_of_mode(serve: StartServe, tmp_path: Path) -> None:
    port = free_port()
    args = ("--db", f"sqlite:///{tmp_path}/x.db", "--port", str(port), "--admin-port", str(free_port()))
    args += ("--grpc-port", str(free_port()))
    gateway = serve(*args, env=operator_env(GATEWAY_MODE="control"), port=port).wait_ready()
    assert "control service listening on grpc://" in gateway.stderr()  # a hub


def test_a_bad_gateway_mode_is_refused(tmp_path: Path) -> None:
    env = operator_env(GATEWAY_MODE="hub")
    result = subprocess.run(tollgate("serve", "--db", f"sqlite:///{tmp_path}/x.db"), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode != 0
    assert "GATEWAY_MODE" in result.stderr and "'hub'" in result.stderr


# --- unbuilt settings are never silent ---------------------------------------------------------------------


def test_unbuilt_settings_are_named_at_startup_and_in_readyz(
    start_gateway: StartGateway, upstream: MockOpenAI, upstream_url: str
) -> None:
    config = base_config(upstream_url)
    config["llms"].append({**config["llms"][0], "slug": "off", "active": False})
    config["routes"] = [{"slug": "smart", "targets": [{"llm": "gpt"}, {"llm": "off"}]}]
    gateway = start_gateway(config, "--namespace", "eu")
    warnings = httpx.get(gateway.url + "/readyz").json()["warnings"]
    log = gateway.output()
    named = {
        "a route target not served": "route 'smart': target 'off' is not an LLM this gateway serves",
        "edge flag": "--namespace is used in edge mode only",
    }
    for what, fragment in named.items():
        assert any(fragment in w for w in warnings), (what, warnings)
        assert fragment in log, (what, log)
    for warning in warnings:
        assert warning in log
