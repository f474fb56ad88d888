#!/usr/bin/env bash
# gpu-check.sh B — the one device script for an NVIDIA GPU machine: CUDA inference correctness and speed, then the
# GPU training checks (scripts/gpu-train-check.sh, when present), then a short summary table as the last lines.
#
#   bash scripts/gpu-check.sh build/gpu      (B defaults to build/gpu; built with `make B=... ` if lossy is missing)
#
# Steps: lossy --version and nvidia-smi -L; the gpu_ inference tests (tests/unit/test_gpu_infer.c: GPU vs CPU logits
# on the HF fixtures in F32/F16/BF16/Q8_0/Q4_0, greedy stories260K, batched = single); a TinyLlama-1.1B-shaped random
# model (bench/gen_model.c) in F16, BF16, Q8_0 and Q4_0 (generated in parallel, ~1 min); `lossy bench --device cuda -p 512 -n 128` on
# each; the per-kernel profile (LOSSY_CUDA_PROFILE=1: time, bytes and GB/s per kind of kernel, per token) for F16 and
# Q4_0; F16 generation without CUDA graphs and without programmatic dependent launch (what each saves).
# Logs go to ${OUT:-/tmp/gpu-out}. Designed to finish in about 2-3 minutes on an H200 with 16 cores.
# Exit status: non-zero when a test failed or was skipped, or a benchmark failed.
set -u
cd "$(dirname "$0")/.."
B=${1:-build/gpu}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.gpu/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
# A bare GPU machine has CUDA but not lossy's Debian libraries: scripts/gpu-pack.sh stages their headers, libraries
# and the shared fixtures into .gpu/ on the development machine, and the device call carries that folder.
if [ -d .gpu/include ]; then
    export C_INCLUDE_PATH=$PWD/.gpu/include${C_INCLUDE_PATH:+:$C_INCLUDE_PATH}
    export LIBRARY_PATH=$PWD/.gpu/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
fi
if [ -z "${LOSSY_FIXTURES:-}" ]; then
    if [ -d ../shared/fixtures ]; then LOSSY_FIXTURES=$PWD/../shared/fixtures; else LOSSY_FIXTURES=$PWD/.gpu/fixtures; fi
fi
export LOSSY_FIXTURES
export LOSSY_BIN=$PWD/$B/lossy
rc=0
t_start=$(date +%s)
since() { echo "$(( $(date +%s) - t_start ))s"; }

if [ ! -x "$B/lossy" ] || [ ! -x "$B/gen_model" ]; then
    echo "== building $B"
    if ! make B="$B" -j16 >"$OUT/build.log" 2>&1; then
        tail -n 40 "$OUT/build.log"
        echo "gpu-check: build failed"
        exit 1
    fi
fi
echo "== lossy --version"
"$B/lossy" --version
echo "== nvidia-smi -L"
nvidia-smi -L || true

echo "== generating models in the background ($(since))"
M=/tmp/lossy-gpu-models
mkdir -p "$M"
# every dtype generated directly (all matrices in that dtype, as the llama.cpp baseline files), four in parallel
pids=()
for t in f16 bf16 q8_0 q4_0; do
    if [ ! -s "$M/tinyllama.$t.gguf" ]; then
        "$B/gen_model" tinyllama "$t" "$M/tinyllama.$t.gguf" >"$OUT/gen-$t.log" 2>&1 &
        pids+=($!)
    fi
done
echo "== gpu_ inference tests ($(since))"
LOSSY_TEST_VERBOSE=1 timeout ${GPU_TEST_TIMEOUT:-150} "$B/lossy_tests" test_gpu_infer device_flag >"$OUT/tests.log" 2>&1
trc=$?
cat "$OUT/tests.log"
tests_line=$(tail -n 1 "$OUT/tests.log")
skip_line=$(grep -E '^[0-9]+ skipped$' "$OUT/tests.log" || true)
[ $trc -eq 0 ] || rc=1
[ -z "$skip_line" ] || rc=1 # on a GPU machine nothing may be skipped

echo "== waiting for the models ($(since))"
for p in "${pids[@]}"; do wait "$p" || rc=1; done
ls -la "$M"

declare -A PP PPF TG TGF
for t in f16 bf16 q8_0 q4_0; do
    echo "== lossy bench --device cuda -p 512 -n 128: $t ($(since))"
    f="$M/tinyllama.$t.gguf"
    if [ ! -s "$f" ]; then
        echo "missing $f"
        rc=1
        continue
    fi
    timeout ${GPU_BENCH_TIMEOUT:-60} "$B/lossy" bench "$f" --device cuda -p 512 -n 128 >"$OUT/bench-$t.log" 2>&1 || rc=1
    cat "$OUT/bench-$t.log"
    PP[$t]=$(awk '/^prompt processing:/ {print $3}' "$OUT/bench-$t.log")
    TG[$t]=$(awk '/^generation:/ {print $2}' "$OUT/bench-$t.log")
    TGF[$t]=$(sed -n 's/^generation reads .* = \([0-9]*\)% of .*/\1%/p' "$OUT/bench-$t.log")
    PPF[$t]=$(sed -n 's/^prompt processing computes .* = \([0-9]*\)% of .*/\1%/p' "$OUT/bench-$t.log")
done
# where the time goes: one event pair per launch (graphs and PDL off, so the totals exceed the real step time)
for t in f16 q4_0; do
    echo "== LOSSY_CUDA_PROFILE=1 lossy bench --device cuda -p 512 -n 128 -r 1: $t ($(since))"
    LOSSY_CUDA_PROFILE=1 timeout ${GPU_BENCH_TIMEOUT:-60} "$B/lossy" bench "$M/tinyllama.$t.gguf" --device cuda -p 512 -n 128 -r 1 \
        >"$OUT/profile-$t.log" 2>&1 || rc=1
    cat "$OUT/profile-$t.log"
done
# what the CUDA graph and programmatic dependent launch each save
LOSSY_CUDA_GRAPHS=0 timeout ${GPU_BENCH_TIMEOUT:-60} "$B/lossy" bench "$M/tinyllama.f16.gguf" --device cuda -p 16 -n 128 -r 1 >"$OUT/bench-f16-nograph.log" 2>&1
nograph=$(awk '/^generation:/ {print $2}' "$OUT/bench-f16-nograph.log")
LOSSY_CUDA_PDL=0 timeout ${GPU_BENCH_TIMEOUT:-60} "$B/lossy" bench "$M/tinyllama.f16.gguf" --device cuda -p 16 -n 128 -r 1 >"$OUT/bench-f16-nopdl.log" 2>&1
nopdl=$(awk '/^generation:/ {print $2}' "$OUT/bench-f16-nopdl.log")

train_summary=""
if [ -f scripts/gpu-train-check.sh ]; then
    echo "== scripts/gpu-train-check.sh ($(since))"
    bash scripts/gpu-train-check.sh "$B" 2>&1 | tee "$OUT/train.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
    train_summary=$(tail -n 4 "$OUT/train.log")
fi

echo
echo "== summary ($(since), logs in $OUT)"
[ -z "$train_summary" ] || echo "$train_summary"
echo "inference tests: $tests_line${skip_line:+, $skip_line}"
printf '%-6s %12s %9s %12s %9s %10s\n' dtype "pp512 tok/s" "of GEMM" "tg128 tok/s" "of bound" "llama.cpp"
declare -A LC=([f16]=422 [bf16]=- [q8_0]=387 [q4_0]=455)
for t in f16 bf16 q8_0 q4_0; do
    printf '%-6s %12s %9s %12s %9s %10s\n' "$t" "${PP[$t]:-FAIL}" "${PPF[$t]:--}" "${TG[$t]:-FAIL}" "${TGF[$t]:--}" "${LC[$t]}"
done
echo "f16 tg without CUDA graphs: ${nograph:-FAIL} tok/s, without PDL: ${nopdl:-FAIL} tok/s"
echo "targets: f16/bf16 tg >= 70% of bound, q8_0 > 387, q4_0 > 455 tok/s, pp >= 50% of the bf16 GEMM rate"
echo "gpu-check: $([ $rc -eq 0 ] && echo OK || echo FAILED)"
exit $rc
