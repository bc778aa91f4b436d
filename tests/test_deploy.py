"""The deployment examples (deploy/): they parse, they say what the README says, their flags and config are
ones `tollgate serve` accepts; where Docker is available, the compose file validates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync.loader import load_config
from sync.validate import validate

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def serve_flags() -> str:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout


def test_compose_runs_two_gateways_on_postgres_and_redis_behind_a_balancer() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "gateway-a", "gateway-b", "lb"}
    flags = serve_flags()
    for name in ("gateway-a", "gateway-b"):
        gateway = services[name]
        env = gateway["environment"]
        assert env["TOLLGATE_DB"].startswith("postgresql://") and env["TOLLGATE_REDIS"].startswith("redis://")
        assert "TOLLGATE_SECRET_KEY" in env  # the shared master key
        assert all(arg in flags for arg in gateway["command"] if arg.startswith("--"))
        mounted = gateway["volumes"][0].split(":")[0]
        assert (DEPLOY / mounted).resolve().is_file()
        assert {"postgres", "redis"} <= set(gateway["depends_on"])
    balancer = (DEPLOY / "haproxy.cfg").read_text()
    assert "option httpchk GET /readyz" in balancer
    assert "gateway-a:9090 check" in balancer and "gateway-b:9090 check" in balancer
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_kubernetes_has_probes_a_disruption_budget_and_a_pre_stop_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    kinds = {doc["kind"]: doc for doc in documents}
    assert set(kinds) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    args = container["args"]
    drain = float(args[args.index("--drain-s") + 1])
    finish = float(args[args.index("--shutdown-timeout-s") + 1])
    assert pod["terminationGracePeriodSeconds"] > drain + finish  # the drain and the finish fit in the grace
    assert kinds["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    flags = serve_flags()
    assert all(arg in flags for arg in args if arg.startswith("--"))
    assert {e["name"] for e in container["env"]} >= {
        "TOLLGATE_DB",
        "TOLLGATE_SECRET_KEY",
        "TOLLGATE_ADMIN_TOKEN",
    }

    config_file = Path(pytest.importorskip("tempfile").mkdtemp()) / "tollgate.yaml"
    config_file.write_text(kinds["ConfigMap"]["data"]["tollgate.yaml"])
    config = load_config(config_file, {"OPENAI_API_KEY": "sk-test"})
    assert validate(config) == [] and [llm.slug for llm in config.llms] == ["gpt"]


def has_compose() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    return subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not has_compose(), reason="Docker Compose is not installed on this machine")
def test_compose_validates_with_docker() -> None:
    env = {**os.environ, "TOLLGATE_SECRET_KEY": "k", "TOLLGATE_ADMIN_TOKEN": "t"}
    result = subprocess.run(
        [str(shutil.which("docker")), "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
