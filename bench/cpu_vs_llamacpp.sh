#!/bin/sh
# cpu_vs_llamacpp.sh — prompt processing and generation speed of lossy and llama.cpp on the same GGUF files, same
# threads, run after run in alternation; prints one table (issues 4 and 8, bench/RESULTS.md "CPU inference speed").
#
#   LLAMA_BENCH=/path/to/llama.cpp/build/bin/llama-bench bench/cpu_vs_llamacpp.sh
#
# Environment (defaults in brackets):
#   LOSSY        the lossy binary                                     [build/release/lossy]
#   LIB          liblossy.a to build bench/gen_model.c with             [dirname $LOSSY/liblossy.a]
#   LLAMA_BENCH  llama.cpp's llama-bench (CPU build)                    [llama-bench on PATH]
#   DIR          where the random-weight GGUF files are made and kept  [/tmp/lossy-bench-models]
#   MODELS       files to compare, SHAPE.TYPE with SHAPE s15m|s110m|tl and TYPE f32|f16|q8_0|q4_0|q4_k_m
#                [s15m.f32 s110m.f32 s110m.f16 s110m.q8_0 s110m.q4_0 tl.f32 tl.f16 tl.q8_0 tl.q4_0 tl.q4_k_m]
#   THREADS [2]  P [128] prompt tokens  N [128] generated tokens  REPS [3] repeats inside each program run
#   ROUNDS [3]   alternating rounds (lossy then llama.cpp, per file)
#   QUIET [1]    before each run wait (up to QUIET_MAX [300] s) until other processes used < 5% CPU over 2 s
#   RAW          also append every run's JSON here                      [$DIR/runs.jsonl]
#
# The files: bench/gen_model.c writes random weights in the shapes of TinyStories-15M/110M and TinyLlama-1.1B, every
# matrix in one type, with the 32000-token Llama vocabulary copied in so llama.cpp loads them; Q4_K_M is made from
# the F16 file by `lossy quantize`. As llama-bench does, lossy times the P-token prompt in one call and generation from
# an empty context. Each cell: the median over rounds of each run's median, and the best run in brackets, over the
# runs that started on a quiet machine ("quiet runs" column: lossy/llama.cpp; all runs when none did — then the
# figures mostly measure the other load: llama.cpp's OpenMP threads suffer far more from it than lossy's pool).
# "GB/s" is weight bytes read per generated token x tok/s (the same bytes for both programs: the file's matrices
# less the token embedding, of which one row is read); "bw" is the bandwidth lossy measures for those bytes where
# they lie (L3-assisted for files that fit, DRAM through the file's 4 KiB pages otherwise).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
LOSSY=${LOSSY:-$here/build/release/lossy}
LIB=${LIB:-$(dirname "$LOSSY")/liblossy.a}
LLAMA_BENCH=${LLAMA_BENCH:-llama-bench}
DIR=${DIR:-/tmp/lossy-bench-models}
MODELS=${MODELS:-"s15m.f32 s110m.f32 s110m.f16 s110m.q8_0 s110m.q4_0 tl.f32 tl.f16 tl.q8_0 tl.q4_0 tl.q4_k_m"}
THREADS=${THREADS:-2} P=${P:-128} N=${N:-128} REPS=${REPS:-3} ROUNDS=${ROUNDS:-3} QUIET=${QUIET:-1} QUIET_MAX=${QUIET_MAX:-300}
RAW=${RAW:-$DIR/runs.jsonl}
VOCAB=$here/../shared/fixtures/tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf

for tool in jq awk; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }; done
[ -x "$LOSSY" ] || { echo "no lossy binary at $LOSSY (make, or set LOSSY)" >&2; exit 1; }
command -v "$LLAMA_BENCH" >/dev/null || { echo "no llama-bench at '$LLAMA_BENCH' (set LLAMA_BENCH)" >&2; exit 1; }
mkdir -p "$DIR"

# ---- the files ----
gen=$DIR/gen_model
if [ ! -x "$gen" ]; then
    cuda=""
    if ar t "$LIB" | grep -q '\.cu\.o$'; then cuda="-L/usr/local/cuda/lib64 -lcudart_static -ldl -lrt -lstdc++"; fi
    # shellcheck disable=SC2086
    cc -O2 -I"$here/src" "$here/bench/gen_model.c" "$LIB" -lpcre2-8 -ljansson -lutf8proc -lm -lpthread $cuda -o "$gen"
fi
shape_of() { case $1 in s15m) echo stories15m ;; s110m) echo stories110m ;; tl) echo tinyllama ;; *) return 1 ;; esac; }
for m in $MODELS; do
    f=$DIR/$m.gguf
    [ -s "$f" ] && continue
    s=${m%%.*} t=${m#*.}
    case $t in
    q4_k_m | q5_k_m | q4_k | q5_k | q6_k)
        [ -s "$DIR/$s.f16.gguf" ] || "$gen" "$(shape_of "$s")" f16 "$DIR/$s.f16.gguf" "$VOCAB"
        "$LOSSY" quantize "$DIR/$s.f16.gguf" "$f" --type "$t" -t "$THREADS" >/dev/null ;;
    *) "$gen" "$(shape_of "$s")" "$t" "$f" "$VOCAB" ;;
    esac
done

# ---- the runs ----
busy() { # percent of CPU time used over 2 s
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat); sleep 2
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
    echo "$a $b" | awk '{db=$3-$1; di=$4-$2; printf "%.1f", (db+di>0) ? 100*db/(db+di) : 0}'
}
wait_quiet() {
    [ "$QUIET" = 1 ] || { echo -1; return; }
    t=0
    while :; do
        u=$(busy)
        if awk "BEGIN{exit !($u < 5)}" || [ $t -ge "$QUIET_MAX" ]; then echo "$u"; return; fi
        t=$((t + 2))
    done
}
res=$DIR/results.$$.txt
: >"$res"
for r in $(seq 1 "$ROUNDS"); do
    for m in $MODELS; do
        f=$DIR/$m.gguf
        u=$(wait_quiet)
        j=$("$LOSSY" bench "$f" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" --json) || { echo "lossy failed on $f" >&2; continue; }
        echo "$j" | jq -c --arg m "$m" --arg u "$u" --argjson r "$r" '{prog:"lossy", model:$m, round:$r, busy_before:($u|tonumber), pp:.pp_tok_s, tg:.tg_tok_s, weight_bytes, bw:.bandwidth_gb_s}' >>"$RAW"
        echo "$j" | jq -r --arg m "$m" --arg u "$u" '"lossy \($m) \(.pp_tok_s) \(.tg_tok_s) \(.weight_bytes) \(.bandwidth_gb_s) \($u)"' >>"$res"
        u=$(wait_quiet)
        j=$("$LLAMA_BENCH" -m "$f" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" -o json 2>/dev/null) || { echo "llama-bench failed on $f" >&2; continue; }
        pp=$(echo "$j" | jq '[.[] | select(.n_prompt > 0)][0].avg_ts') tg=$(echo "$j" | jq '[.[] | select(.n_gen > 0)][0].avg_ts')
        echo "{\"prog\":\"llama.cpp\",\"model\":\"$m\",\"round\":$r,\"busy_before\":$u,\"pp\":$pp,\"tg\":$tg}" >>"$RAW"
        echo "llama $m $pp $tg 0 0 $u" >>"$res"
        echo "round $r $m done" >&2
    done
done

# ---- the table ----
echo "lossy: $LOSSY ($("$LOSSY" --version 2>/dev/null | head -1)); llama.cpp: $LLAMA_BENCH; $THREADS threads, pp$P / tg$N, $ROUNDS rounds x $REPS repeats"
echo "| file | lossy pp$P | llama.cpp pp$P | pp | lossy tg$N | llama.cpp tg$N | tg | lossy GB/s | llama.cpp GB/s | bw GB/s | lossy / bw | llama.cpp / bw | quiet runs |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for m in $MODELS; do
    awk -v m="$m" '
    function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    function best(a, n,   i, b) { b = 0; for (i = 1; i <= n; i++) if (a[i] > b) b = a[i]; return b }
    # quiet: busy < 5% before the run (-1: not checked, QUIET=0)
    $2 == m && $1 == "lossy" { q = $7 < 5; if (!q) { ap[++na] = $3; at[na] = $4 } else { lp[++nl] = $3; lt[nl] = $4 }; wb = $5; if ($6 > bw) bw = $6 }
    $2 == m && $1 == "llama" { q = $7 < 5; if (!q) { bp[++nb] = $3; bt[nb] = $4 } else { cp[++nc] = $3; ct[nc] = $4 } }
    END {
        ql = nl; qc = nc
        if (!nl) for (i = 1; i <= na; i++) { lp[++nl] = ap[i]; lt[nl] = at[i] }
        if (!nc) for (i = 1; i <= nb; i++) { cp[++nc] = bp[i]; ct[nc] = bt[i] }
        if (!nl || !nc) { printf "| %s | (missing runs) |\n", m; exit }
        Lp = med(lp, nl); Lt = med(lt, nl); Cp = med(cp, nc); Ct = med(ct, nc)
        printf "| %s | %.0f (%.0f) | %.0f (%.0f) | %.2fx | %.1f (%.1f) | %.1f (%.1f) | %.2fx | %.1f | %.1f | %.1f | %.0f%% | %.0f%% | %d/%d of %d |\n",
            m, Lp, best(lp, nl), Cp, best(cp, nc), Lp / Cp, Lt, best(lt, nl), Ct, best(ct, nc), Lt / Ct,
            Lt * wb / 1e9, Ct * wb / 1e9, bw, 100 * Lt * wb / 1e9 / bw, 100 * Ct * wb / 1e9 / bw, ql, qc, na + ql
    }' "$res"
done
rm -f "$res"
