#!/usr/bin/env bash
# Regenerate the Python modules of plugin.proto: plugin_pb2.py, plugin_pb2.pyi and plugin_pb2_grpc.py.
# Usage: pipeline/plugins/generate.sh [OUTPUT_ROOT]   (default: the repository; tests pass a temp dir)
# The output depends on the grpcio-tools version (its protoc stamps the protobuf version it targets);
# tests/test_plugins.py checks the committed files match a fresh run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root}"
python="${PYTHON:-python}"

cd "$root"
mkdir -p "$out/pipeline/plugins"
"$python" -m grpc_tools.protoc -I. \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    pipeline/plugins/plugin.proto

# Package-relative import of the messages, so the modules work wherever the package is imported from.
grpc_module="$out/pipeline/plugins/plugin_pb2_grpc.py"
sed -i 's/^from pipeline\.plugins import plugin_pb2 as /from . import plugin_pb2 as /' "$grpc_module"

# Generated code: not ours to lint, format or type-check (plugin_pb2.pyi gives the messages their types).
header='# ruff: noqa\n# fmt: off\n# mypy: ignore-errors\n'
for generated in plugin_pb2.py plugin_pb2.pyi plugin_pb2_grpc.py; do
    sed -i "1s/^/$header/" "$out/pipeline/plugins/$generated"
done
