"""The committed generated gRPC modules are what tools/generate_protos.sh makes from the .proto files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATED = [
    f"{proto.removesuffix('.proto')}{suffix}"
    for proto in ("pipeline/plugins/plugin.proto", "sync/control.proto")
    for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    script = ROOT / "tools" / "generate_protos.sh"
    subprocess.run([str(script), str(out)], check=True, env={**os.environ, "PYTHON": sys.executable})
    return out


@pytest.mark.parametrize("name", GENERATED)
def test_generated_code_matches_the_proto(fresh: Path, name: str) -> None:
    assert (fresh / name).read_text() == (ROOT / name).read_text(), (
        f"{name} is stale: run tools/generate_protos.sh"
    )
