#!/usr/bin/env bash
# Build lmcore with the CUDA backend and run the GPU test suite on a machine with an NVIDIA GPU,
# in one command:   scripts/gpu_test.sh [BUILD_DIR]
#
# Environment:
#   LMCORE_FIXTURES  fixtures directory holding models/<name>/ (default ../shared/fixtures)
#   LMCORE_DEBS      optional folder of Debian .deb files (libcjson-dev, libpcre2-dev,
#                    libutf8proc-dev and their runtime libraries) unpacked into a private prefix
#                    when the machine lacks those development packages
#   LMCORE_GPU_TESTS ctest -R pattern (default: the CUDA test and the CPU fixture tests)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
jobs=$(nproc 2>/dev/null || echo 4)

echo "=== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: none"
. scripts/gpu_env.sh
nvcc --version | tail -n 2

echo "=== build ($build, CUDA required, warnings are errors)"
cmake -S . -B "$build" -DLMCORE_CUDA=ON -DLMCORE_WERROR=ON >/dev/null
cmake --build "$build" -j"$jobs"

echo "=== tests"
ctest --test-dir "$build" --output-on-failure -V -R "${LMCORE_GPU_TESTS:-test_cuda|test_fixtures}"

echo "=== experimental: the fixtures with one-token steps recorded as CUDA graphs (LMCORE_CUDA_GRAPHS=1)"
LMCORE_CUDA_GRAPHS=1 ctest --test-dir "$build" --output-on-failure -R test_cuda_fixtures ||
  echo "graph mode FAILED (off by default; not part of the result)"

echo "=== CLI: lmcore logits --device cuda"
fx=${LMCORE_FIXTURES:-../shared/fixtures}
out=$(mktemp /tmp/lmcore-logits.XXXXXX.safetensors)
"$build"/lmcore logits -m "$fx/models/llama" --ids 1,2,3,4 --decode 4 --device cuda -o "$out"
echo "wrote $out ($(stat -c %s "$out") bytes)"
