#!/usr/bin/env bash
# Where a decode step's time goes when its kernels overlap (early launch), from the kernels'
# start and end times as they ran (gpu_bench --trace, CUPTI; on the GPU machine):
#   bench/gpu_timeline.sh MODEL_DIR [BUILD_DIR (build-gpu)] [STEPS (16)] [CTX (128)]
# (GPU_BENCH_ARGS: more gpu_bench options, e.g. "--kv-type f16")
# Traces decode steps 2..2+STEPS of gpu_bench (not serialized, unlike gpu_profile.sh) and prints,
# for each kernel of one layer (averaged over the middle layers and the steps) and for the step's
# head and tail: its duration, its start relative to the previous kernel's end (negative: it
# overlapped), and how much it moved the end of the chain (end - previous end): the kernel's
# share of the step's critical path.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 build=${2:-build-gpu} steps=${3:-16} ctx=${4:-128}
csv=$(mktemp /tmp/lmcore-trace.XXXXXX.csv)
"$build"/bench/gpu_bench "$model" --ctx "$ctx" --prefill 128 --decode $((steps + 3)) --profile "$steps" --trace "$csv" \
  ${GPU_BENCH_ARGS:-} >/dev/null
python3 - "$csv" <<'PY'
import csv, sys, subprocess
rows = list(csv.DictReader(open(sys.argv[1])))
mangled = sorted(set(r["name"] for r in rows))
try:
    dem = subprocess.run(["c++filt"], input="\n".join(mangled), capture_output=True, text=True).stdout.split("\n")
except OSError:
    dem = mangled
dem = dict(zip(mangled, dem))
def short(r):
    n = dem.get(r["name"], r["name"]).split("(")[0].replace("void ", "")
    return n[:40] + " [%s]" % r["grid"]
ev = sorted((int(r["start_ns"]), int(r["end_ns"]) - int(r["start_ns"]), short(r)) for r in rows)
# steps end with the pick kernel (greedy: argmax_f32; sampled: samp_pick)
steps, cur = [], []
for e in ev:
    cur.append(e)
    if e[2].startswith(("argmax", "samp_pick")):
        steps.append(cur); cur = []
modal = max(set(len(s) for s in steps), key=lambda m: sum(len(s) == m for s in steps))
steps = [s for s in steps if len(s) == modal]
n = len(steps[0])
print("steps %d, kernels per step %d, step time %.1f us (mean, first kernel start to last end)" %
      (len(steps), n, sum(s[-1][0] + s[-1][1] - s[0][0] for s in steps) / len(steps) / 1e3))
dur = [0.0] * n; gap = [0.0] * n; inc = [0.0] * n
for s in steps:
    end = s[0][0]
    for i, (st, d, name) in enumerate(s):
        dur[i] += d / 1e3 / len(steps)
        gap[i] += (st - end) / 1e3 / len(steps)
        inc[i] += max(0, st + d - end) / 1e3 / len(steps)
        end = max(end, st + d)
names = [e[2] for e in steps[0]]
# the layer period: the shortest p with names[i] == names[i + p] over the middle
per = next(p for p in range(2, n // 4) if all(names[i] == names[i + p] for i in range(n // 4, n // 2)))
first = next(i for i in range(n) if all(names[j] == names[j + per] for j in range(i, i + per)))
nl = (n - first) // per - 1
print("layer period %d kernels, %d layers from kernel %d (means over the middle %d)" % (per, nl + 1, first, nl - 1))
print("%-48s %9s %9s %9s" % ("kernel (one layer, mean)", "dur us", "start-prev", "adds us"))
tot = 0
for j in range(per):
    idx = [first + l * per + j for l in range(1, nl)]
    d = sum(dur[i] for i in idx) / len(idx); g = sum(gap[i] for i in idx) / len(idx); a = sum(inc[i] for i in idx) / len(idx)
    tot += a
    print("%-48s %9.2f %9.2f %9.2f" % (names[first + j], d, g, a))
print("%-48s %9s %9s %9.2f" % ("layer", "", "", tot))
print("outside the layers:")
for i in list(range(first)) + list(range(first + (nl + 1) * per, n)):
    print("%-48s %9.2f %9.2f %9.2f" % (names[i], dur[i], gap[i], inc[i]))
PY
rm -f "$csv"
