#!/usr/bin/env bash
# Build and run the C test suite: scripts/test.sh [--sanitize]
# (--sanitize: ASan+UBSan in build-asan, built with clang when it is installed)
# Needs the Debian packages listed in README.md, node/npm (the tokenizer tests read npm packages),
# and ../shared/fixtures beside the checkout (or LMCORE_FIXTURES).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
flags=(-DLMCORE_WERROR=ON)
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  flags+=(-DLMCORE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
  # with clang when there is one: a second compiler's warnings (errors here too) and sanitizers
  if command -v clang >/dev/null; then
    flags+=(-DCMAKE_C_COMPILER=clang)
  fi
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
if [ -f tests/node_deps/package.json ] && [ ! -d tests/node_deps/node_modules ]; then
  (cd tests/node_deps && npm ci --no-audit --no-fund --loglevel=error)
fi
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)"
