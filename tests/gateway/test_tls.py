"""Upstream TLS is verified: a certificate the machine does not trust is refused (502), one it trusts
(here through SSL_CERT_FILE, as an operator with a private CA would) is served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mocks.openai import MockOpenAI
from mocks.server import ThreadedServer
from tests.conftest import StartGateway
from tests.support import APP_KEY, UPSTREAM_KEY, base_config, self_signed

pytestmark = pytest.mark.one_store  # TLS to the upstream: the same on either store

HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "over TLS"}]}


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = self_signed(tmp_path)
    with ThreadedServer(
        MockOpenAI(api_key=UPSTREAM_KEY), ssl_certfile=str(cert), ssl_keyfile=str(key)
    ) as server:
        yield server.url, cert


def _chat(url: str) -> httpx.Response:
    return httpx.post(
        url + "/openai/gpt/v1/chat/completions", json=HELLO, headers={"authorization": f"Bearer {APP_KEY}"}
    )


def test_an_untrusted_upstream_certificate_is_refused(
    start_gateway: StartGateway, tls_upstream: tuple[str, Path]
) -> None:
    url, _ = tls_upstream
    assert url.startswith("https://")
    gateway = start_gateway(base_config(url))
    response = _chat(gateway.url)
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_error"


def test_a_trusted_upstream_certificate_is_served(
    start_gateway: StartGateway, tls_upstream: tuple[str, Path]
) -> None:
    url, cert = tls_upstream
    gateway = start_gateway(base_config(url), env={"SSL_CERT_FILE": str(cert)})
    response = _chat(gateway.url)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Mock answer to: over TLS"
