"""Shared fixtures: a mock OpenAI upstream on its own loopback port, and real `tollgate serve` processes.

Every test talks to the gateway over real sockets; the gateway is started the way an operator starts it,
with a config file written for the test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mocks.openai import MockOpenAI
from mocks.server import ThreadedServer
from tests.support import (
    UPSTREAM_KEY,
    Gateway,
    base_config,
    create_database,
    drop_database,
    drop_test_stores,
)

StartGateway = Callable[..., Gateway]


@pytest.fixture(scope="session")
def mock_server() -> Iterator[tuple[ThreadedServer, MockOpenAI]]:
    app = MockOpenAI(api_key=UPSTREAM_KEY)
    with ThreadedServer(app) as server:
        yield server, app


@pytest.fixture
def upstream(mock_server: tuple[ThreadedServer, MockOpenAI]) -> Iterator[MockOpenAI]:
    """The mock OpenAI upstream, reset for this test."""
    app = mock_server[1]
    app.reset()
    yield app
    app.reset()


@pytest.fixture
def upstream_url(mock_server: tuple[ThreadedServer, MockOpenAI]) -> str:
    return mock_server[0].url


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[StartGateway]:
    """Start gateways with a config of the test's choosing; all are stopped at the end."""
    started: list[Gateway] = []

    def start(config: dict[str, Any] | None, *args: str, ready: bool = True, **kwargs: Any) -> Gateway:
        directory = tmp_path / f"gw{len(started)}"
        directory.mkdir()
        gateway = Gateway(directory, config, *args, **kwargs)
        started.append(gateway)
        return gateway.wait_ready() if ready else gateway

    yield start
    for gateway in started:
        gateway.stop()
    for database in {gateway.database for gateway in started if gateway.database}:
        drop_database(database)


@pytest.fixture
def gateway(start_gateway: Any, upstream: MockOpenAI, upstream_url: str) -> Gateway:
    """A gateway with the base config, in front of the (reset) mock upstream."""
    gw: Gateway = start_gateway(base_config(upstream_url))
    return gw


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (on 127.0.0.1:5432), dropped afterwards."""
    url = create_database()
    yield url
    drop_database(url)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the store every test gateway uses: SQLite files, or a fresh PostgreSQL database each",
    )


def pytest_configure(config: pytest.Config) -> None:
    os.environ["TOLLGATE_TEST_STORE"] = config.getoption("store")
    config.addinivalue_line(
        "markers",
        "one_store: runs in the SQLite pass only: it names its own store, or what it tests (a vendor's "
        "wire format, the CLI) does not change with the store that records its calls",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With `--store postgres`, the `one_store` tests are deselected."""
    if config.getoption("store") != "postgres":
        return
    fixed = [item for item in items if item.get_closest_marker("one_store")]
    if fixed:
        config.hook.pytest_deselected(items=fixed)
        items[:] = [item for item in items if not item.get_closest_marker("one_store")]


@pytest.fixture(scope="session", autouse=True)
def _test_stores() -> Iterator[None]:
    """The PostgreSQL databases made for `store_at` paths and test gateways are dropped when the run ends."""
    yield
    drop_test_stores()
