"""`tollgate`: the command line. Options only build a `Settings`; `gateway.server.serve` does the rest."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from gateway.logs import configure_logging
from gateway.settings import Mode, Settings

F = TypeVar("F", bound=Callable[..., Any])


def _option(name: str, **kwargs: Any) -> Callable[[F], F]:
    """An option that is also the environment variable TOLLGATE_<NAME>."""
    env = "TOLLGATE_" + name.lstrip("-").replace("-", "_").upper()
    return click.option(name, envvar=env, show_default=True, show_envvar=True, **kwargs)


@click.group()
@click.version_option(package_name="tollgate")
def main() -> None:
    """Tollgate: an AI gateway with one OpenAI-compatible endpoint for every LLM."""


@main.command()
@_option("--config", type=click.Path(dir_okay=False), help="YAML bootstrap, applied (upsert) at every start.")
@_option("--db", default="sqlite:///tollgate.db", help="Store URL: sqlite:///PATH or postgresql://...")
@_option("--host", default="127.0.0.1", help="Bind address of the gateway and admin servers.")
@_option("--port", default=9090, type=int, help="Gateway port (LLM traffic).")
@_option("--admin-port", default=8080, type=int, help="Admin REST API port.")
@_option(
    "--workers", default=1, type=click.IntRange(min=1), help="Gateway worker processes sharing the port."
)
@_option(
    "--mode",
    type=click.Choice(["standalone", "control", "edge"]),
    default=None,
    help="standalone | control | edge.",
)
@_option("--hub", default=None, help="Edge mode: the hub's HOST:PORT.")
@_option("--redis", default=None, help="Redis URL for counters shared across workers and gateways.")
@_option(
    "--drain-s", default=2.0, type=float, help="After SIGTERM: seconds /readyz answers 503 while serving."
)
@_option(
    "--shutdown-timeout-s", default=30.0, type=float, help="After draining: time for in-flight requests."
)
@_option("--db-pool", default=5, type=int, help="PostgreSQL connections per process at most.")
@_option("--grpc-port", default=50051, type=int, help="Control mode: the gRPC port edges connect to.")
@_option("--namespace", default="", help="Edge mode: the namespace this edge loads.")
@_option("--edge-id", default=None, help="Edge mode: this edge's stable name (default hostname:port).")
@_option("--heartbeat-s", default=30.0, type=float, help="Edge mode: seconds between heartbeats.")
@_option(
    "--credential-ttl-s",
    default=300.0,
    type=float,
    help="Edge mode: cache time of keys looked up at the hub.",
)
@_option(
    "--grpc-tls-cert",
    type=click.Path(dir_okay=False, exists=True),
    help="Control mode: PEM certificate (chain) of the gRPC service; with --grpc-tls-key, TLS is on.",
)
@_option("--grpc-tls-key", type=click.Path(dir_okay=False, exists=True), help="Control mode: its PEM key.")
@_option(
    "--grpc-tls-ca",
    type=click.Path(dir_okay=False, exists=True),
    help="Edge mode: PEM roots the hub's certificate must chain to; given, the edge connects with TLS.",
)
@_option("--max-body-mib", default=10.0, type=float, help="Largest request body accepted (413 above).")
@_option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(**options: Any) -> None:
    """Run the gateway (and the admin API)."""
    mode = options.pop("mode") or os.environ.get("GATEWAY_MODE") or "standalone"
    if mode not in ("standalone", "control", "edge"):
        raise click.BadParameter(
            f"{mode!r} is not one of standalone, control, edge", param_hint="GATEWAY_MODE"
        )
    settings = Settings(
        mode=cast(Mode, mode),
        admin_token=os.environ.get("TOLLGATE_ADMIN_TOKEN") or None,
        secret_key=os.environ.get("TOLLGATE_SECRET_KEY") or None,
        edge_token=os.environ.get("TOLLGATE_EDGE_TOKEN") or None,
        **options,
    )
    configure_logging(settings.log_level)
    from gateway.server import serve as run  # imported late: `tollgate --help` stays fast

    sys.exit(run(settings))
