"""Secrets at rest: AES-256-GCM under a master key from TOLLGATE_SECRET_KEY or a key file beside the db."""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import tempfile
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
        """Load the key file, creating it (mode 0600) with a fresh random key when it does not exist.

        The key is written to a private temporary file and linked into place, so a process starting at
        the same moment sees either no file or a whole one, and every process ends up with the same key.
        """
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(base64.b64encode(secrets.token_bytes(32)) + b"\n")
                with contextlib.suppress(FileExistsError):  # another process won: use theirs
                    os.link(temporary, path)
            finally:
                os.unlink(temporary)
        try:
            return cls(base64.b64decode(path.read_bytes().strip(), validate=True))
        except (ValueError, binascii.Error) as exc:
            raise SecretError(f"the key file {path} is not a base64 32-byte key ({exc})") from None

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith(_PREFIX)

    def seal(self, plaintext: str) -> str:
        return _PREFIX + base64.urlsafe_b64encode(self.seal_bytes(plaintext.encode())).decode()

    def open(self, value: str) -> str:
        if not self.is_sealed(value):
            raise SecretError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(value.removeprefix(_PREFIX))
        except ValueError as exc:
            raise SecretError("cannot open a sealed value: it is corrupted") from exc
        return self.open_bytes(raw).decode()

    def seal_bytes(self, plaintext: bytes) -> bytes:
        """Binary form, for large values stored as blobs: nonce + ciphertext + tag."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, _AAD)

    def open_bytes(self, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _AAD)
        except (InvalidTag, ValueError) as exc:
            raise SecretError("cannot open a sealed value: wrong TOLLGATE_SECRET_KEY or corrupted") from exc
