"""Secrets at rest: AES-256-GCM under a master key from TOLLGATE_SECRET_KEY or a key file beside the db."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_PREFIX = "enc:v1:"
_NONCE_BYTES = 12
_AAD = b"tollgate-secret-v1"


class SecretError(Exception):
    """A sealed value that cannot be opened (wrong master key or corrupted)."""


class SecretBox:
    """Seals and opens strings; the sealed form is printable and self-describing (`enc:v1:...`)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_passphrase(cls, passphrase: str) -> SecretBox:
        # HKDF, not a password hash: the operator's value is expected to be a random token, not a word.
        kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"tollgate", info=b"secrets-v1")
        return cls(kdf.derive(passphrase.encode()))

    @classmethod
    def from_key_file(cls, path: Path) -> SecretBox:
        """Load the key file, creating it (mode 0600) with a fresh random key when it does not exist."""
        try:
            return cls(base64.b64decode(path.read_bytes().strip(), validate=True))
        except FileNotFoundError:
            pass
        key = secrets.token_bytes(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return cls(base64.b64decode(path.read_bytes().strip(), validate=True))
        with os.fdopen(fd, "wb") as out:
            out.write(base64.b64encode(key) + b"\n")
        return cls(key)

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith(_PREFIX)

    def seal(self, plaintext: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), _AAD)
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, value: str) -> str:
        if not self.is_sealed(value):
            raise SecretError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(value.removeprefix(_PREFIX))
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD).decode()
        except (InvalidTag, ValueError) as exc:
            raise SecretError("cannot open a sealed value: wrong TOLLGATE_SECRET_KEY or corrupted") from exc
