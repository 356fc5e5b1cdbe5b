#!/usr/bin/env bash
# Memory and decode speed of one synthetic checkpoint of Llama-3.2-1B's shape in bf16, MLX 8-bit
# and MLX 4-bit (group 64): file size, resident memory after load and after decoding, decode
# tokens/s (median of RUNS runs of TOKENS tokens), and the weight bytes streamed per second.
#   bench/quant_bench.sh [BUILD_DIR (build)]      env: TOKENS=32 RUNS=3 THREADS=0 LAYERS=16
# The checkpoints go to bench/models/ (git-ignored; about 4.6 GB) and are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
TOKENS=${TOKENS:-32} RUNS=${RUNS:-3} THREADS=${THREADS:-0} LAYERS=${LAYERS:-16}
M=bench/models
cmake --build "$B" -j2 --target lmcore_cli bench_gen_synth bench_decode >/dev/null
mkdir -p "$M"
if [ ! -f "$M/llama1b_bf16/config.json" ]; then
  t0=$(date +%s.%N); "$B/bench/bench_gen_synth" "$M/llama1b_bf16" "$LAYERS"
  echo "generated $M/llama1b_bf16 in $(echo "$(date +%s.%N) - $t0" | bc) s"
fi
for b in 8 4; do
  if [ ! -f "$M/llama1b_q$b/config.json" ]; then
    t0=$(date +%s.%N)
    "$B/lmcore" convert -m "$M/llama1b_bf16" -o "$M/llama1b_q$b" -q --bits $b --group-size 64
    echo "converted to $b-bit in $(echo "$(date +%s.%N) - $t0" | bc) s"
  fi
done
printf '\nLlama-3.2-1B shape, random weights, %s decode tokens x %s runs, threads %s (0 = physical cores)\n' \
  "$TOKENS" "$RUNS" "$THREADS"
printf '| format | file MB | RSS after load MB | RSS after decode MB | RSS/file | decode tok/s (median, min-max) | weight GB/s |\n'
printf '|---|---|---|---|---|---|---|\n'
for f in bf16 q8 q4; do
  read -r fb rl rd med mn mx < <("$B/bench/bench_decode" "$M/llama1b_$f" "$TOKENS" "$RUNS" "$THREADS")
  # bytes read per token: every weight once (the tied head reads the whole embedding)
  awk -v f="$f" -v fb="$fb" -v rl="$rl" -v rd="$rd" -v med="$med" -v mn="$mn" -v mx="$mx" 'BEGIN {
    printf "| %s | %.0f | %.0f | %.0f | %.2f | %.2f (%.2f-%.2f) | %.2f |\n", f, fb/1e6, rl/1e6, rd/1e6, rd/fb, med, mn, mx, fb*med/1e9 }'
done
echo "(weight GB/s = file bytes x tok/s; this machine reads ~27 GB/s with 2 threads, BENCH-NOTES.md)"
