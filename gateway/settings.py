"""Process settings: every `tollgate serve` flag in one frozen value (the CLI only builds it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

Mode = Literal["standalone", "control", "edge"]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    config: str | None = None
    db: str = "sqlite:///tollgate.db"
    host: str = "127.0.0.1"
    port: int = 9090
    admin_port: int = 8080
    workers: int = 1
    mode: Mode = "standalone"
    hub: str | None = None
    redis: str | None = None
    drain_s: float = 2.0
    shutdown_timeout_s: float = 30.0
    db_pool: int = 5
    grpc_port: int = 50051
    namespace: str = ""
    edge_id: str | None = None
    heartbeat_s: float = 30.0
    credential_ttl_s: float = 300.0
    edge_token: str | None = None  # TOLLGATE_EDGE_TOKEN: the enrolment token hub and edges share
    grpc_tls_cert: str | None = None  # control mode: PEM certificate chain of the gRPC service
    grpc_tls_key: str | None = None  # control mode: its PEM private key
    grpc_tls_ca: str | None = None  # edge mode: PEM roots that the hub's certificate must chain to
    max_body_mib: float = 10.0
    admin_token: str | None = None
    secret_key: str | None = None
    log_level: str = "info"

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mib * 1024 * 1024)

    @property
    def postgres(self) -> bool:
        return self.db.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file of `db` (`sqlite:///relative` or `sqlite:////absolute`)."""
        if not self.db.startswith("sqlite:///"):
            raise ValueError(f"not an SQLite URL: {self.db}")
        return Path(self.db.removeprefix("sqlite:///"))

    def unbuilt(self) -> list[str]:
        """Warnings for flags whose feature this version does not have yet, or that this mode ignores."""
        notes = []
        if self.hub and self.mode != "edge":
            notes.append(f"--hub is used in edge mode only; this gateway runs in {self.mode} mode")
        if self.mode != "edge" and self.namespace:
            notes.append(f"--namespace is used in edge mode only; this gateway runs in {self.mode} mode")
        return notes
