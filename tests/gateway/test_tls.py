"""Upstream TLS is verified: a certificate the machine does not trust is refused (502), one it trusts
(here through SSL_CERT_FILE, as an operator with a private CA would) is served."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mocks.openai import MockOpenAI
from mocks.server import ThreadedServer
from tests.conftest import StartGateway
from tests.support import APP_KEY, UPSTREAM_KEY, base_config

HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "over TLS"}]}


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tollgate test upstream")])
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
    cert_path, key_path = directory / "upstream.pem", directory / "upstream.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = _certificate(tmp_path)
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
