#!/usr/bin/env bash
# Where a decode step's GPU time goes, per kernel, with Nsight Compute (on the GPU machine):
#   bench/gpu_profile.sh MODEL_DIR [BUILD_DIR (build-gpu)] [STEPS (2)] [DETAIL_KERNEL_REGEX]
# PREFILL=N in the environment profiles one prefill of N tokens instead ("per step": per prefill).
# Runs gpu_bench with --profile STEPS (decode steps 2.. of a 128-token context inside
# cudaProfilerStart/Stop), collects each kernel's duration and DRAM bytes read
# (ncu --clock-control none --cache-control none: clocks and caches are left alone, as in a
# real step, where the activations of the previous kernel are still in L2), and prints per kernel
# name and grid size: launches,
# total and mean time, achieved read bandwidth, and the sum per step. With DETAIL_KERNEL_REGEX,
# also prints ncu's speed-of-light, memory, occupancy and warp-stall sections for one launch
# of the first kernel matching it.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 build=${2:-build-gpu} steps=${3:-2} detail=${4:-}
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
csv=$(mktemp /tmp/lmcore-ncu.XXXXXX.csv)
if [ -n "${PREFILL:-}" ]; then
  what=(--prefill "$PREFILL" --profile-prefill 1 --decode 4) steps=1
else
  what=(--prefill 128 --decode $((steps + 3)) --profile "$steps")
fi
"$ncu" --clock-control none --cache-control none --profile-from-start off --csv --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size \
  "$build"/bench/gpu_bench "$model" --ctx 128 "${what[@]}" >"$csv" 2>/dev/null
python3 - "$csv" "$steps" <<'PY'
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
rows = rows[next(i for i, r in enumerate(rows) if r and r[0] == "ID"):]
hdr = rows[0]
ki, mi, vi, ui = hdr.index("Kernel Name"), hdr.index("Metric Name"), hdr.index("Metric Value"), hdr.index("Metric Unit")
ii = hdr.index("ID")
launch = collections.defaultdict(dict)
for r in rows[1:]:
    v = float(r[vi].replace(",", ""))
    unit = r[ui]
    if r[mi] == "launch__grid_size":
        pass
    elif r[mi] == "gpu__time_duration.sum":
        v *= {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1, "us": 1, "msecond": 1e3, "ms": 1e3}[unit]
    else:
        v *= {"byte": 1, "B": 1, "Kbyte": 1e3, "KB": 1e3, "Mbyte": 1e6, "MB": 1e6, "Gbyte": 1e9, "GB": 1e9}[unit]
    launch[r[ii]]["name"] = r[ki].split("(")[0].split("<")[0] + ("<" + r[ki].split("<")[1].split(">")[0] + ">" if "<" in r[ki] else "")
    launch[r[ii]][r[mi]] = v
agg = collections.defaultdict(lambda: [0, 0.0, 0.0])
for l in launch.values():
    a = agg["%s [%d]" % (l["name"], l.get("launch__grid_size", 0))]
    a[0] += 1
    a[1] += l.get("gpu__time_duration.sum", 0)
    a[2] += l.get("dram__bytes_read.sum", 0)
steps = int(sys.argv[2])
tot = sum(a[1] for a in agg.values())
print("%-48s %8s %10s %9s %8s %6s" % ("kernel", "launches", "us/step", "us/launch", "GB/s", "share"))
for n, (c, t, b) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print("%-48s %8d %10.1f %9.2f %8.0f %5.1f%%" % (n[:48], c, t / steps, t / c, b / (t * 1e-6) / 1e9 if t else 0, 100 * t / tot))
print("GPU time per step: %.3f ms over %d launches" % (tot / steps / 1e3, len(launch) // steps))
PY
rm -f "$csv"
if [ -n "$detail" ]; then
  "$ncu" --clock-control none --profile-from-start off --kernel-name "regex:$detail" --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats \
    --section LaunchStats "$build"/bench/gpu_bench "$model" --prefill 128 --ctx 128 --decode 4 --profile 1 2>/dev/null |
    grep -v "^==PROF==" | sed -n '/Section\|----\|  [A-Z]/p' | head -n 150
fi
