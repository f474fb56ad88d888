#!/bin/bash
# serve_load.sh — load benchmark of `lossy serve` on loopback: a single stream (1 client, --parallel 1) as the
# baseline, then CLIENTS concurrent streaming clients against --parallel PARALLEL, each phase SECONDS long, REPEAT
# times in alternation (single, load, single, load, ...: on a shared machine the two see the same background load).
# Prints one JSON line per phase (requests, errors, 503s, tokens/s, p50/p99 time to first token), the server's CPU
# time per generated token (utime + stime from /proc: on a shared machine, less noisy than tokens/s), its resident
# memory sampled every second, and a short summary block: the best run of each phase (the one least disturbed by
# other work), their ratio, TTFT, RSS, errors and crashes; the exit status is non-zero on any crash or error. Usage: bench/serve_load.sh [MODEL] [SECONDS=60] [CLIENTS=64] [PARALLEL=8] [MAX_TOKENS=128] [REPEAT=1]
# The binary: $LOSSY_BIN, else build/release/lossy. Needs node (>= 18). Traffic stays on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:-$root/models/stories260K.gguf}"
seconds="${2:-60}"; clients="${3:-64}"; parallel="${4:-8}"; max_tokens="${5:-128}"; repeat="${6:-1}"
bin="${LOSSY_BIN:-$root/build/release/lossy}"
[ -x "$bin" ] || { echo "serve_load.sh: $bin not found (make, or set LOSSY_BIN)" >&2; exit 1; }
work="$(mktemp -d)"; pid=""; sampler=""
cleanup() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
crashed=0

start() { # PARALLEL
    "$bin" serve "$model" --port 0 --parallel "$1" --queue 256 --max-connections 1024 --no-web 2>"$work/log" &
    pid=$!
    for _ in $(seq 300); do
        port="$(grep -o 'http://127.0.0.1:[0-9]*' "$work/log" | head -1 | sed 's/.*://')" || true
        [ -n "$port" ] && return 0
        sleep 0.1
    done
    cat "$work/log" >&2; exit 1
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; } # utime + stime of the whole process
stop() {
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "server died" >&2; crashed=$((crashed + 1))
    else
        kill "$pid"
        wait "$pid" || { rc=$?; [ "$rc" -ne 143 ] && { echo "server exit status $rc" >&2; cat "$work/log" >&2; crashed=$((crashed + 1)); }; }
    fi
    pid=""
}
field() { sed -n "s/.*\"$2\":\\([^,}]*\\).*/\\1/p" <<<"$1" | tr -d '"'; }

phase() { # NAME CLIENTS PARALLEL -> prints the JSON line, sets $line, $cpu_ms_tok, $rss_*
    start "$3"
    local rss_log="$work/rss.$1"
    (while sleep 1; do rss >>"$rss_log" 2>/dev/null || break; done) &
    sampler=$!
    local c0; c0="$(cpu_ticks)"; rss_start="$(rss)"
    line="$(node "$root/bench/serve_load.mjs" "http://127.0.0.1:$port" "$2" "$seconds" "$max_tokens" || true)"
    local c1; c1="$(cpu_ticks 2>/dev/null || echo "$c0")"
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; sampler=""
    rss_end="$(rss 2>/dev/null || echo 0)"
    rss_max="$(sort -n "$rss_log" 2>/dev/null | tail -1)"; rss_max="${rss_max:-$rss_end}"
    # memory after the first fifth of the phase (threads and arenas warmed up) vs the end: growth means a leak
    rss_warm="$(awk -v n="$(( seconds / 5 + 1 ))" 'NR == n {print; exit}' "$rss_log" 2>/dev/null)"; rss_warm="${rss_warm:-$rss_start}"
    local health; health="$(curl -s "http://127.0.0.1:$port/health" || echo '{}')"
    stop
    local tok; tok="$(field "$line" tokens)"; tok="${tok:-0}"
    cpu_ms_tok="$(awk -v t="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v n="$tok" 'BEGIN {printf "%.3f", n ? t * 1000 / hz / n : 0}')"
    echo "$line"
    echo "  server: CPU $cpu_ms_tok ms per token; RSS $rss_start kB at start, $rss_warm kB after $((seconds / 5)) s, max $rss_max kB, $rss_end kB at the end; health $health"
}

echo "model: $model; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
best_s=0; best_l=0; s_line=""; l_line=""; total_err=0; ratios=""
better() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a > b)}'; }
for r in $(seq "$repeat"); do
    echo "single stream (1 client, --parallel 1, ${seconds}s), run $r:"
    phase single 1 1
    s_tps="$(field "$line" tokens_per_s)"; s_err="$(field "$line" errors)"
    if better "${s_tps:-0}" "$best_s"; then
        best_s="$s_tps"
        s_line="${s_tps} tok/s (TTFT p50 $(field "$line" ttft_p50_ms) ms, p99 $(field "$line" ttft_p99_ms) ms), server CPU ${cpu_ms_tok} ms/token"
    fi
    echo "load ($clients clients, --parallel $parallel, ${seconds}s), run $r:"
    phase load "$clients" "$parallel"
    l_tps="$(field "$line" tokens_per_s)"; l_err="$(field "$line" errors)"
    total_err=$((total_err + ${s_err:-1} + ${l_err:-1}))
    ratio="$(awk -v a="${l_tps:-0}" -v b="${s_tps:-0}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')"
    ratios="$ratios $ratio"
    echo "  ratio of this pair (aggregate / single): $ratio"
    if better "${l_tps:-0}" "$best_l"; then
        best_l="$l_tps"
        l_line="$(printf '%s\n' \
            "${l_tps} tok/s aggregate, $(field "$line" requests) requests; TTFT p50 $(field "$line" ttft_p50_ms) ms, p99 $(field "$line" ttft_p99_ms) ms; server CPU ${cpu_ms_tok} ms/token" \
            "  errors (load):     ${l_err}; 503 queue-full: $(field "$line" queue_full)" \
            "  server RSS (load): ${rss_start} kB at start, ${rss_warm} kB after $((seconds / 5)) s, max ${rss_max} kB, ${rss_end} kB at the end")"
    fi
done
echo "=== serve_load summary (best of $repeat run(s) per phase; $(nproc) cores; load average now $(cut -d' ' -f1-3 /proc/loadavg)) ==="
echo "  single stream:     $s_line"
echo "  $clients clients, --parallel $parallel: $l_line"
echo "  ratio:             $(awk -v a="$best_l" -v b="$best_s" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')x (best aggregate / best single; per pair:$ratios)"
echo "  crashes:           $crashed; errors in all runs: $total_err"
[ "$crashed" -eq 0 ] && [ "$total_err" -eq 0 ]
