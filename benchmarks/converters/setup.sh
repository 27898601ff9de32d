#!/usr/bin/env bash
# Build the converters' environment for benchmarks/converter_comparison.py.
#
#   bash benchmarks/converters/setup.sh [VENV]     # default: .venv-converters in the repository root
#   PYTHON=/path/to/python3.12 bash benchmarks/converters/setup.sh
#
# A separate environment: litert-torch, nobuco (with TensorFlow) and onnx2tf pin versions that clash
# with the project's .venv, and with each other (onnx2tf pins ai-edge-litert==2.1.2, litert-torch
# needs 2.3.x: onnx2tf goes in with --no-deps, its run-time dependencies come from requirements.txt).
# Needs Python >= 3.12 (onnx2tf 2.x). torch comes as PyPI's default (CUDA) wheel: there is no CPU-only
# torch wheel for Linux on PyPI; the GPU is never used.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${1:-$root/.venv-converters}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "setup.sh: needs Python >= 3.12 (onnx2tf 2.x); set PYTHON=/path/to/python3.12" >&2
  exit 2
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade "pip>=24"
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
"$venv/bin/python" -m pip install --quiet --no-deps onnx2tf==2.6.9
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("torch", "torchvision", "litert-torch", "ai-edge-litert", "nobuco", "tensorflow-cpu", "onnx2tf",
             "onnx", "onnxruntime"):
    print(f"{name}=={md.version(name)}")
PY
echo "setup.sh: $venv ready"
