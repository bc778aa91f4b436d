"""Test support: a real `tollgate serve` process on free loopback ports, and the base config."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml

from store.base import Store
from store.postgres import PostgresStore
from store.sqlite import SqliteStore

UPSTREAM_KEY = "sk-upstream-secret-0123456789abcdef"
ADMIN_TOKEN = "admin-token-for-tests"
APP_KEY = "tg-test-app-key-0001"
OTHER_KEY = "tg-test-app-key-0002"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_config(upstream_url: str, **overrides: Any) -> dict[str, Any]:
    """A config with one OpenAI LLM on the mock, two apps (one granted, one not) and prices."""
    config: dict[str, Any] = {
        "secrets": {"UPSTREAM": UPSTREAM_KEY},
        "llms": [
            {
                "slug": "gpt",
                "vendor": "openai",
                "api_base": upstream_url + "/v1",
                "api_key": "$SECRET/UPSTREAM",
                "allowed_models": ["gpt-4o.*", "text-embedding-3-.*"],
                "default_model": "gpt-4o-mini",
                "timeout_s": 30,
            },
            {
                "slug": "other",
                "vendor": "openai",
                "api_base": upstream_url + "/v1",
                "api_key": "$SECRET/UPSTREAM",
            },
        ],
        "prices": [
            {
                "vendor": "openai",
                "model": "gpt-4o-mini",
                "input_per_1m": 0.15,
                "output_per_1m": 0.60,
                "cache_read_per_1m": 0.075,
            },
            {"vendor": "openai", "model": "text-embedding-3-small", "input_per_1m": 0.02},
        ],
        "users": [{"email": "alice@example.com", "role": "developer", "groups": ["team"]}],
        "groups": [{"name": "team", "llms": ["gpt"]}],
        "apps": [
            {"name": "app-one", "owner": "alice@example.com", "api_key": APP_KEY, "llms": ["gpt"]},
            {"name": "app-two", "owner": "alice@example.com", "api_key": OTHER_KEY, "llms": []},
        ],
    }
    config.update(overrides)
    return config


def wait_ready(
    process: subprocess.Popen[bytes], url: str, output: Callable[[], str], timeout: float = 20
) -> None:
    """Until `url`/readyz answers 200; fails with the process's output if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gateway exited with {process.returncode}:\n{output()}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"gateway not ready after {timeout} s:\n{output()}")


class Gateway:
    """A `tollgate serve` process on free loopback ports, with its own config file and database."""

    def __init__(
        self, tmp: Path, config: dict[str, Any] | None, *args: str, env: dict[str, str] | None = None
    ):
        self.tmp = tmp
        self.port = free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.db = tmp / "tollgate.db"
        self.log = tmp / "gateway.log"
        env = dict(env or {})
        self.database = ""  # with `pytest --store postgres`: this gateway's own fresh PostgreSQL database
        db_url = f"sqlite:///{self.db}"
        if on_postgres():
            env.setdefault("TOLLGATE_SECRET_KEY", "the-tests-shared-master-key")  # one for all gateways
            if "--db" not in args:
                self.database = create_database()
                _gateway_databases.append(self.database)  # dropped when the run ends, if not before
                db_url = self.database
        command = [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--db",
            db_url,
            "--port",
            str(self.port),
            "--admin-port",
            str(self.admin_port),
            "--drain-s",
            "0",
            *args,
        ]
        if config is not None:
            path = tmp / "tollgate.yaml"
            path.write_text(yaml.safe_dump(config))
            command += ["--config", str(path)]
        environment = {**os.environ, "TOLLGATE_ADMIN_TOKEN": ADMIN_TOKEN, **env}
        self._out = self.log.open("ab")
        self.process = subprocess.Popen(command, stdout=self._out, stderr=subprocess.STDOUT, env=environment)

    def wait_ready(self, timeout: float = 20) -> Gateway:
        wait_ready(self.process, self.url, self.output, timeout)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def openai(self, key: str = APP_KEY, llm: str = "gpt", **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/openai/{llm}/v1", api_key=key, max_retries=0, **kwargs)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.admin_url + path, headers=headers, timeout=10, **kwargs)

    def records(self, expect: int | None = None, timeout: float = 5, **params: Any) -> list[dict[str, Any]]:
        """Analytics records, newest first; with `expect`, wait until that many are there."""
        deadline = time.monotonic() + timeout
        while True:
            data: list[dict[str, Any]] = self.admin(
                "GET", "/api/v1/analytics/interactions", params={"limit": 10000, **params}
            ).json()["data"]
            if expect is None or len(data) >= expect or time.monotonic() > deadline:
                return data
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()
        return self.process.returncode

    @property
    def db_url(self) -> str:
        """Its --db: the SQLite file, or its PostgreSQL database (start another gateway on the same)."""
        return self.database or f"sqlite:///{self.db}"

    def stored_records(self) -> list[dict[str, Any]]:
        """The analytics records in its store, oldest first, read from the store itself (after a stop)."""
        import asyncio

        import msgspec

        from store.records import InteractionQuery

        async def read() -> list[dict[str, Any]]:
            store: Any
            if self.database:
                from store.postgres import PostgresStore

                store = PostgresStore(self.database)
            else:
                from store.sqlite import SqliteStore

                store = SqliteStore(self.db)
            await store.open()
            try:
                records = await store.interactions(InteractionQuery(limit=100_000))
            finally:
                await store.close()
            return [msgspec.to_builtins(r) for r in sorted(records, key=lambda r: r.id)]

        return asyncio.run(read())

    def stored_bytes(self) -> bytes:
        """Everything its store holds at rest, as bytes (to look for what must never be there in clear)."""
        if not self.database:
            return self.db.read_bytes()
        import asyncio

        import asyncpg

        async def dump() -> bytes:
            conn = await asyncpg.connect(self.database)
            try:
                tables = ("llms", "routes", "apps", "users", "groups", "prices", "filters", "secrets", "kv")
                rows = [r for t in tables for r in await conn.fetch(f"SELECT * FROM {t}")]
                return b"".join(str(tuple(r)).encode() for r in rows)
            finally:
                await conn.close()

        return asyncio.run(dump())


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"  # this machine's PostgreSQL, trust auth


def _pg(statement: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run())
    else:  # called from a test's own event loop (a store opened inside it): on a thread of its own
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run()).result()


def create_database() -> str:
    """A fresh PostgreSQL database; its URL."""
    import uuid

    name = f"tollgate_test_{uuid.uuid4().hex[:12]}"
    _pg(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_database(url: str) -> None:
    _pg(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def on_postgres() -> bool:
    """Whether this run puts the tests' stores on PostgreSQL (`pytest --store postgres`)."""
    return os.environ.get("TOLLGATE_TEST_STORE") == "postgres"


_databases: dict[Path, str] = {}  # a test store's path → its PostgreSQL database (with --store postgres)
_gateway_databases: list[str] = []  # the databases test gateways were started on


def store_at(path: Path) -> Store:
    """The store a test opens at `path`: an SQLite file there, or with `--store postgres` a fresh PostgreSQL
    database of its own (the same database each time `path` is opened again, as a file would be)."""
    if not on_postgres():
        return SqliteStore(path)
    if path not in _databases:
        _databases[path] = create_database()
    return PostgresStore(_databases[path], pool_size=2)


def drop_test_stores() -> None:
    """Drop every database this run made for its stores and gateways."""
    for url in [*_databases.values(), *_gateway_databases]:
        drop_database(url)
    _databases.clear()
    _gateway_databases.clear()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed CA certificate for 127.0.0.1 and its key, as PEM files (upstream and gRPC TLS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tollgate test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "test.pem", directory / "test.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
