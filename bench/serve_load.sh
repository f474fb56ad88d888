#!/bin/bash
# serve_load.sh — load benchmark of `lossy serve` on loopback: a single stream (1 client, --parallel 1) as the
# baseline, then CLIENTS concurrent streaming clients against --parallel PARALLEL, each phase SECONDS long.
# Prints one JSON line per phase (requests, errors, 503s, tokens/s, p50/p99 time to first token) and the server's
# memory before and after. Usage: bench/serve_load.sh [MODEL] [SECONDS=60] [CLIENTS=64] [PARALLEL=8] [MAX_TOKENS=128]
# The binary: $LOSSY_BIN, else build/release/lossy. Needs node (>= 18). Traffic stays on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:-$root/models/stories260K.gguf}"
seconds="${2:-60}"; clients="${3:-64}"; parallel="${4:-8}"; max_tokens="${5:-128}"
bin="${LOSSY_BIN:-$root/build/release/lossy}"
[ -x "$bin" ] || { echo "serve_load.sh: $bin not found (make, or set LOSSY_BIN)" >&2; exit 1; }
log="$(mktemp)"; pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -f "$log"; }
trap cleanup EXIT

start() { # PARALLEL
    "$bin" serve "$model" --port 0 --parallel "$1" --queue 256 --max-connections 1024 --no-web 2>"$log" &
    pid=$!
    for _ in $(seq 300); do
        port="$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 | sed 's/.*://')" || true
        [ -n "$port" ] && return 0
        sleep 0.1
    done
    cat "$log" >&2; exit 1
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
stop() { kill "$pid"; wait "$pid" || { echo "server exit status $?" >&2; cat "$log" >&2; }; pid=""; }

echo "model: $model; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
start 1
echo "single stream (1 client, --parallel 1, ${seconds}s):"
node "$root/bench/serve_load.mjs" "http://127.0.0.1:$port" 1 "$seconds" "$max_tokens"
stop
start "$parallel"
before="$(rss)"
echo "load ($clients clients, --parallel $parallel, ${seconds}s):"
node "$root/bench/serve_load.mjs" "http://127.0.0.1:$port" "$clients" "$seconds" "$max_tokens" || echo "(errors above)"
after="$(rss)"
curl -s "http://127.0.0.1:$port/health"; echo
echo "server RSS: ${before} kB after start, ${after} kB after the load"
stop
