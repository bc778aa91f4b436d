#!/usr/bin/env bash
# Regenerate the Python modules of the repository's .proto files: <name>_pb2.py, <name>_pb2.pyi and
# <name>_pb2_grpc.py beside each proto.
# Usage: tools/generate_protos.sh [OUTPUT_ROOT]   (default: the repository; tests pass a temp dir)
# The output depends on the grpcio-tools version (its protoc stamps the protobuf version it targets);
# tests/test_protos.py checks the committed files match a fresh run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root}"
python="${PYTHON:-python}"
protos=(pipeline/plugins/plugin.proto sync/control.proto)

cd "$root"
for proto in "${protos[@]}"; do
    dir="$(dirname "$proto")"
    name="$(basename "$proto" .proto)"
    package="${dir//\//.}"
    mkdir -p "$out/$dir"
    "$python" -m grpc_tools.protoc -I. \
        --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "$proto"

    # Package-relative import of the messages, so the modules work wherever the package is imported from.
    sed -i "s/^from ${package//./\\.} import ${name}_pb2 as /from . import ${name}_pb2 as /" \
        "$out/$dir/${name}_pb2_grpc.py"

    # Generated code: not ours to lint, format or type-check (the .pyi gives the messages their types).
    header='# ruff: noqa\n# fmt: off\n# mypy: ignore-errors\n'
    for generated in "${name}_pb2.py" "${name}_pb2.pyi" "${name}_pb2_grpc.py"; do
        sed -i "1s/^/$header/" "$out/$dir/$generated"
    done
done
