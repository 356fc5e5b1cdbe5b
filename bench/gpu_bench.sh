#!/usr/bin/env bash
# The GPU benchmark in one command, on a machine with an NVIDIA GPU and PyTorch:
#   bench/gpu_bench.sh [BUILD_DIR] [gpu_bench.py options...]
# Builds lmcore with CUDA (LMCORE_DEBS as scripts/gpu_test.sh), then runs bench/gpu_bench.py,
# which writes gpu_bench.md and gpu_bench.json to $OUT (or --out).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
shift || true
. scripts/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader || true
cmake -S . -B "$build" -DLMCORE_CUDA=ON -DLMCORE_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target lmcore_cli gpu_bench
PYTHONUNBUFFERED=1 python3 bench/gpu_bench.py --build "$build" --out "${OUT:-.}" "$@"
