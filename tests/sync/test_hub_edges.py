"""Hub and edges (issue 6): a real hub and real edges, separate processes on loopback ports.

Pushes reach only their namespace, statuses move unknown → in_sync → pending → in_sync, edges keep
serving (and restart) without the hub and upload what they recorded exactly once when it is back, keys
are pulled on miss and revoked, and the hub refuses edges without the enrolment token. A raw gRPC client
speaking control.proto stands in for an edge where the test must drive the protocol step by step.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import msgspec
import pytest

from store.records import AnalyticsRecord
from sync import control_pb2 as pb
from sync import control_pb2_grpc as pb_grpc
from tests.conftest import StartGateway
from tests.support import ADMIN_TOKEN, APP_KEY, Gateway, base_config, free_port, self_signed

TOKEN = "enrol-0123456789"
EDGE_KEY = "tg-edge-app-key-0001"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def hub_config(upstream_url: str) -> dict[str, Any]:
    config = base_config(upstream_url)
    llm = {"vendor": "openai", "api_base": upstream_url + "/v1", "api_key": "$SECRET/UPSTREAM"}
    config["llms"] += [
        {"slug": "eu-llm", "namespace": "eu", **llm},
        {"slug": "us-llm", "namespace": "us", **llm},
    ]
    config["users"].append({"email": "root@example.com", "role": "admin"})
    config["apps"].append(
        {
            "name": "edge-app",
            "owner": "root@example.com",
            "api_key": EDGE_KEY,
            "llms": ["gpt", "eu-llm", "us-llm"],
        }
    )
    return config


class Hub:
    def __init__(self, gateway: Gateway, grpc_port: int) -> None:
        self.gateway = gateway
        self.grpc_port = grpc_port
        self.address = f"127.0.0.1:{grpc_port}"

    def edges(self) -> dict[str, dict[str, Any]]:
        data = self.gateway.admin("GET", "/api/v1/edges").json()["data"]
        return {edge["edge_id"]: edge for edge in data}

    def push(self, namespace: str | None = None) -> dict[str, Any]:
        body = {} if namespace is None else {"namespace": namespace}
        response = self.gateway.admin("POST", "/api/v1/edges/push", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def edge_records(self, edge_id: str) -> list[dict[str, Any]]:
        return [r for r in self.gateway.records() if r["edge_id"] == edge_id]


@pytest.fixture
def start_hub(start_gateway: StartGateway, upstream_url: str) -> Callable[..., Hub]:
    def start(*args: str, token: str = TOKEN, grpc_port: int | None = None) -> Hub:
        port = grpc_port or free_port()
        env = {"TOLLGATE_EDGE_TOKEN": token} if token else {}
        gateway = start_gateway(
            hub_config(upstream_url), "--mode", "control", "--grpc-port", str(port), *args, env=env
        )
        return Hub(gateway, port)

    return start


def edge_args(hub: Hub, edge_id: str, namespace: str = "", *extra: str) -> tuple[str, ...]:
    return (
        "--mode", "edge", "--hub", hub.address, "--edge-id", edge_id, "--namespace", namespace,
        "--heartbeat-s", "0.3", *extra,
    )  # fmt: skip


@pytest.fixture
def start_edge(start_gateway: StartGateway) -> Callable[..., Gateway]:
    def start(
        hub: Hub, edge_id: str, namespace: str = "", *extra: str, token: str = TOKEN, **kw: Any
    ) -> Gateway:
        env = {"TOLLGATE_EDGE_TOKEN": token} if token else {}
        return start_gateway(None, *edge_args(hub, edge_id, namespace, *extra), env=env, **kw)

    return start


def sync_of(edge: Gateway) -> dict[str, Any]:
    result: dict[str, Any] = edge.admin("GET", "/api/v1/sync").json()
    return result


def wait_until(check: Callable[[], Any], timeout: float = 10, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def chat(gateway: Gateway, llm: str = "gpt", key: str = EDGE_KEY) -> int:
    response = httpx.post(
        f"{gateway.url}/openai/{llm}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )
    return response.status_code


def status(hub: Hub, edge_id: str) -> str | None:
    edge = hub.edges().get(edge_id)
    return edge["status"] if edge else None


class Probe:
    """An edge driven by hand over control.proto (a real gRPC client; the hub cannot tell the difference)."""

    def __init__(self, hub: Hub, edge_id: str, namespace: str = "", token: str | None = TOKEN, **tls: Any):
        if tls:
            channel = grpc.secure_channel(hub.address, grpc.ssl_channel_credentials(**tls))
        else:
            channel = grpc.insecure_channel(hub.address)
        self.channel = channel
        self.stub = pb_grpc.ControlStub(channel)  # type: ignore[no-untyped-call]
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.edge_id = edge_id
        self.namespace = namespace

    def register(self, checksum: str = "") -> pb.RegisterReply:
        request = pb.RegisterRequest(
            edge_id=self.edge_id, namespace=self.namespace, version="probe", checksum=checksum
        )
        reply: pb.RegisterReply = self.stub.Register(request, metadata=self.metadata, timeout=5)
        return reply

    def heartbeat(self, checksum: str) -> pb.HeartbeatReply:
        request = pb.HeartbeatRequest(edge_id=self.edge_id, checksum=checksum, counters={"requests": 1})
        reply: pb.HeartbeatReply = self.stub.Heartbeat(request, metadata=self.metadata, timeout=5)
        return reply

    def upload(self, records: list[AnalyticsRecord], source: str | None = None) -> pb.UploadReply:
        batch = pb.AnalyticsBatch(
            edge_id=self.edge_id,
            source=source or f"{self.edge_id}/db1",
            batch_id="test",
            records=msgspec.msgpack.encode(records),
        )
        reply: pb.UploadReply = self.stub.UploadAnalytics(batch, metadata=self.metadata, timeout=5)
        return reply


@pytest.fixture
def probes() -> Iterator[list[Probe]]:
    made: list[Probe] = []
    yield made
    for probe in made:
        probe.channel.close()


def test_push_reaches_only_its_namespace_and_statuses_move(
    start_hub: Callable[..., Hub], start_edge: Callable[..., Gateway], probes: list[Probe], upstream_url: str
) -> None:
    """unknown → in_sync → pending → in_sync; an LLM added at the hub answers on its namespace's edge only
    after a push to that namespace, and a push to another namespace changes nothing there."""
    hub = start_hub()
    probe = Probe(hub, "probe", "eu")
    probes.append(probe)
    published = probe.register().published_checksum
    assert status(hub, "probe") == "unknown"  # registered, no checksum reported yet
    probe.heartbeat(published)
    assert status(hub, "probe") == "in_sync"

    eu = start_edge(hub, "edge-eu", "eu")
    us = start_edge(hub, "edge-us", "us")
    wait_until(lambda: status(hub, "edge-eu") == status(hub, "edge-us") == "in_sync", what="edges in sync")
    assert sync_of(eu)["checksum"] == published  # the same namespace, the same content
    assert sync_of(us)["checksum"] != published
    assert (chat(eu, "eu-llm"), chat(eu, "us-llm"), chat(us, "us-llm"), chat(us, "eu-llm")) == (
        200,
        404,
        200,
        404,
    )
    assert chat(eu, "gpt") == chat(us, "gpt") == 200  # global
    wait_until(lambda: hub.edges()["edge-eu"]["counters"].get("requests") == 3, what="counters in heartbeats")

    # An LLM added at the hub, in namespace eu, granted to the app: nothing moves until a push.
    llm = {
        "slug": "fresh",
        "vendor": "openai",
        "api_base": upstream_url + "/v1",
        "api_key": "$SECRET/UPSTREAM",
    }
    assert hub.gateway.admin("POST", "/api/v1/llms", json={**llm, "namespace": "eu"}).status_code == 201
    app = next(a for a in hub.gateway.admin("GET", "/api/v1/apps").json()["data"] if a["name"] == "edge-app")
    patched = hub.gateway.admin("PATCH", f"/api/v1/apps/{app['id']}", json={"llms": [*app["llms"], "fresh"]})
    assert patched.status_code == 200, patched.text
    wait_until(lambda: status(hub, "edge-eu") == "pending", what="edge-eu pending")
    assert status(hub, "edge-us") == "in_sync"  # its namespace's content did not change
    assert status(hub, "probe") == "pending"
    eu_before, us_before = sync_of(eu), sync_of(us)
    time.sleep(1)  # a few heartbeats: still not applied
    assert chat(eu, "fresh") == 404
    assert sync_of(eu)["checksum"] == eu_before["checksum"]

    told = hub.push("us")
    assert told["edges"] == ["edge-us"]
    time.sleep(1)
    assert chat(eu, "fresh") == 404
    assert sync_of(eu) | {"last_sync": None} == eu_before | {"last_sync": None}
    assert sync_of(us)["checksum"] == us_before["checksum"]  # the same content: nothing to apply

    told = hub.push("eu")
    assert told["edges"] == ["edge-eu"]  # the edges of eu that are connected (the probe does not watch)
    wait_until(lambda: chat(eu, "fresh") == 200, what="fresh answering on edge-eu")
    wait_until(lambda: status(hub, "edge-eu") == "in_sync", what="edge-eu in sync again")
    assert chat(us, "fresh") == 404
    probe.heartbeat(told["checksums"]["eu"])
    assert status(hub, "probe") == "in_sync"

    # A change to a global LLM concerns every namespace; {} pushes to every edge.
    gpt = next(x for x in hub.gateway.admin("GET", "/api/v1/llms").json()["data"] if x["slug"] == "gpt")
    hub.gateway.admin("PATCH", f"/api/v1/llms/{gpt['id']}", json={"timeout_s": 31})
    wait_until(lambda: status(hub, "edge-eu") == status(hub, "edge-us") == "pending", what="both pending")
    hub.push()
    wait_until(lambda: status(hub, "edge-eu") == status(hub, "edge-us") == "in_sync", what="both in sync")


def test_edges_serve_without_the_hub_and_upload_each_record_once(
    start_hub: Callable[..., Hub], start_edge: Callable[..., Gateway], tmp_path: Path
) -> None:
    """Hub killed: the edge serves (known keys past their TTL included); restarted with the hub still down,
    it serves from its cache; the hub back, every record arrives exactly once."""
    hub = start_hub()
    extra = ("--credential-ttl-s", "1")
    edge = start_edge(hub, "edge-1", "", *extra)
    sent = [chat(edge) for _ in range(5)]
    wait_until(lambda: len(hub.edge_records("edge-1")) == 5, what="first records at the hub")

    hub.gateway.process.kill()
    hub.gateway.process.wait()
    time.sleep(1.2)  # the key's TTL has passed: it keeps working while the hub is unreachable
    sent += [chat(edge) for _ in range(5)]
    assert chat(edge, key="tg-never-seen") == 401  # an unknown key cannot be checked: refused
    wait_until(lambda: not sync_of(edge)["hub_connected"], what="the edge noticing")
    ready = httpx.get(edge.url + "/readyz")
    assert ready.status_code == 200
    assert any("unreachable" in w for w in ready.json()["warnings"])

    assert edge.stop() == 0
    args = ("--db", edge.db_url, *edge_args(hub, "edge-1", "", *extra))  # its store: its cache
    restarted = Gateway(edge.tmp, None, *args, env={"TOLLGATE_EDGE_TOKEN": TOKEN})
    try:
        restarted.wait_ready()  # from its cache: the hub is still down
        sent += [chat(restarted) for _ in range(5)]
        assert sent == [200] * 15
        assert sync_of(restarted)["hub_connected"] is False

        hub_args = ("--db", hub.gateway.db_url, "--mode", "control", "--grpc-port", str(hub.grpc_port))
        back = Gateway(hub.gateway.tmp, hub_config_of(hub), *hub_args, env={"TOLLGATE_EDGE_TOKEN": TOKEN})
        try:
            back.wait_ready()
            hub.gateway = back
            wait_until(lambda: len(hub.edge_records("edge-1")) >= 16, timeout=20, what="the buffered records")
            time.sleep(1.5)  # several more upload rounds: nothing arrives twice
            records = hub.edge_records("edge-1")
            assert len(records) == 16  # the 15 answers and the refused unknown key
            assert len({r["request_id"] for r in records}) == 16
            assert sorted(r["status_code"] for r in records) == [200] * 15 + [401]
        finally:
            back.stop()
    finally:
        restarted.stop()


def hub_config_of(hub: Hub) -> dict[str, Any]:
    import yaml

    config: dict[str, Any] = yaml.safe_load((hub.gateway.tmp / "tollgate.yaml").read_text())
    return config


def test_keys_are_pulled_on_miss_and_revoked(
    start_hub: Callable[..., Hub], start_edge: Callable[..., Gateway]
) -> None:
    """An app created at the hub works at once on an edge that never saw it; deleted or disabled, it stops
    working within the TTL (a hub with --workers 2: its control service runs in the supervisor)."""
    hub = start_hub("--workers", "2")
    edge = start_edge(hub, "edge-keys", "", "--credential-ttl-s", "3")
    created = []
    for name in ("late-app", "late-app-2"):
        response = hub.gateway.admin(
            "POST", "/api/v1/apps", json={"name": name, "owner": "root@example.com", "llms": ["gpt"]}
        )
        assert response.status_code == 201, response.text
        created.append(response.json())
    assert [chat(edge, key=app["api_key"]) for app in created] == [200, 200]  # no push needed
    assert chat(edge, key="tg-unknown-key") == 401
    assert chat(edge, key=APP_KEY, llm="other") == 403  # grants resolved at the hub: not granted

    hub.gateway.admin("DELETE", f"/api/v1/apps/{created[0]['id']}")
    hub.gateway.admin("PATCH", f"/api/v1/apps/{created[1]['id']}", json={"active": False})
    started = time.monotonic()
    wait_until(lambda: chat(edge, key=created[0]["api_key"]) == 401, timeout=3, what="deleted app refused")
    wait_until(lambda: chat(edge, key=created[1]["api_key"]) == 401, timeout=3, what="disabled app refused")
    assert time.monotonic() - started < 3


def test_tls_and_the_enrolment_token(
    start_hub: Callable[..., Hub], start_edge: Callable[..., Gateway], probes: list[Probe], tmp_path: Path
) -> None:
    """With certificates the channel is TLS; a hub with a token refuses edges without it, and refuses
    every call but Register from an edge it does not know."""
    cert, key = self_signed(tmp_path)
    hub = start_hub("--grpc-tls-cert", str(cert), "--grpc-tls-key", str(key))
    assert "control service listening on grpcs://" in hub.gateway.output()
    edge = start_edge(hub, "edge-tls", "", "--grpc-tls-ca", str(cert))
    assert chat(edge) == 200

    intruder = start_edge(hub, "intruder", "", "--grpc-tls-ca", str(cert), token="wrong-token", ready=False)
    time.sleep(2)
    assert httpx.get(intruder.url + "/readyz").status_code == 503  # nothing to serve
    assert "UNAUTHENTICATED" in intruder.output()
    assert "intruder" not in hub.edges()

    roots = cert.read_bytes()
    for token in (None, "wrong-token"):
        probe = Probe(hub, "probe", token=token, root_certificates=roots)
        probes.append(probe)
        with pytest.raises(grpc.RpcError) as refused:
            probe.register()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stranger = Probe(hub, "stranger", root_certificates=roots)
    probes.append(stranger)
    with pytest.raises(grpc.RpcError) as unknown:
        stranger.heartbeat("")
    assert unknown.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_an_upload_sent_twice_lands_once(start_hub: Callable[..., Hub], probes: list[Probe]) -> None:
    """The hub keeps a watermark per source: a resent or overlapping batch inserts only what is new, and
    the records carry the edge's id whatever the edge wrote in them."""
    hub = start_hub(token="")
    probe = Probe(hub, "uploader", token=None)
    probes.append(probe)
    probe.register()

    def records(ids: range) -> list[AnalyticsRecord]:
        return [
            AnalyticsRecord(
                id=i, timestamp=time.time(), request_id=f"r{i}", interaction_type="chat", status_code=200
            )
            for i in ids
        ]

    assert (probe.upload(records(range(1, 4))).inserted, probe.upload(records(range(1, 4))).inserted) == (
        3,
        0,
    )
    reply = probe.upload(records(range(2, 6)))
    assert (reply.inserted, reply.last_id) == (2, 5)
    assert probe.upload(records(range(1, 3)), source="uploader/other-db").inserted == 2  # another database
    stored = hub.edge_records("uploader")
    assert sorted(r["request_id"] for r in stored) == ["r1", "r1", "r2", "r2", "r3", "r4", "r5"]
    with pytest.raises(grpc.RpcError) as foreign:
        probe.upload(records(range(6, 7)), source="someone-else/db")
    assert foreign.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--mode", "edge"), "--mode edge needs --hub"),
        (("--mode", "edge", "--hub", "127.0.0.1:1", "--workers", "2"), "--mode edge runs one worker"),
        (
            ("--mode", "control", "--grpc-tls-cert", __file__),
            "--grpc-tls-cert and --grpc-tls-key go together",
        ),
    ],
)
def test_edge_flags_are_checked_at_startup(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    """A mode's missing or conflicting flags are a one-line startup error."""
    command = [sys.executable, "-m", "gateway", "serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert message in result.stderr


def test_an_edge_refuses_a_config_file(tmp_path: Path) -> None:
    """An edge takes its configuration from its hub, never from --config."""
    config = tmp_path / "c.yaml"
    config.write_text("llms: []\n")
    command = [sys.executable, "-m", "gateway", "serve", "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    command += ["--mode", "edge", "--hub", "127.0.0.1:1", "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert (result.returncode, "an edge's comes from --hub" in result.stderr) == (1, True)


def test_an_edge_admin_port_configures_nothing(
    start_hub: Callable[..., Hub], start_edge: Callable[..., Gateway]
) -> None:
    """The edge's admin port answers /api/v1/sync and refuses config writes, naming the hub."""
    hub = start_hub()
    edge = start_edge(hub, "edge-admin")
    info = sync_of(edge)
    assert info["edge_id"] == "edge-admin" and info["hub_connected"] is True
    assert set(info) >= {"edge_id", "namespace", "checksum", "last_sync", "hub_connected"}
    refused = edge.admin("POST", "/api/v1/llms", json={"slug": "x", "vendor": "openai"})
    assert refused.status_code == 403
    assert hub.address in refused.json()["error"]["message"]
    assert edge.admin("GET", "/api/v1/sync", headers={"authorization": "Bearer nope"}).status_code == 401
    assert edge.stop(signal.SIGTERM) == 0
    assert ADMIN_TOKEN not in edge.output() and TOKEN not in edge.output()
