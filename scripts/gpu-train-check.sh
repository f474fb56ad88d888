#!/usr/bin/env bash
# gpu-train-check.sh B — the GPU training checks, for a machine with an NVIDIA GPU (called by scripts/gpu-check.sh).
#
# B is a build folder made with nvcc present (make B=... ); LD_LIBRARY_PATH / LOSSY_CUBLAS_DIR may point at the CUDA
# libraries (cuBLAS is loaded at run time). Runs the gpu_train tests (GPU vs CPU gradients and loss curves, resume
# exactness, checkpoints across devices), the gpu_flash tests (flash attention vs a double reference, and the whole
# model's gradients with LOSSY_ATTN=flash) and the throughput benchmark (12 x 768, vocab 50304, B=16, T=1024) once per
# attention route (gemm, flash), then one short profiled run of the default (flash) route (LOSSY_CUDA_PROFILE=1: GPU
# time per kind of operation per step), and prints a short summary as its last lines. Under 2 minutes on an H200.
# Exit status: non-zero when a test failed or was skipped, or the benchmark failed.
set -u
B=${1:?usage: gpu-train-check.sh BUILD_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
export LOSSY_BIN=${LOSSY_BIN:-$B/lossy}
export LOSSY_FIXTURES=${LOSSY_FIXTURES:-$here/../shared/fixtures}
rc=0

echo "== gpu_train + gpu_flash tests"
tests_out=$(LOSSY_TEST_VERBOSE=1 timeout 150 "$B/lossy_tests" gpu_train gpu_flash 2>&1)
trc=$?
echo "$tests_out"
tests_line=$(echo "$tests_out" | tail -n 1)
skip_line=$(echo "$tests_out" | grep -E '^[0-9]+ skipped$' || true)
[ $trc -eq 0 ] || rc=1
[ -z "$skip_line" ] || rc=1 # on a GPU machine nothing may be skipped

echo "== gpu_train_bench, both attention routes"
bench_out=$(timeout 120 "$B/gpu_train_bench" --steps 25 --warmup 5 --attn both 2>&1)
brc=$?
echo "$bench_out"
bench_gemm=$(echo "$bench_out" | grep '^gpu_train_bench: attention gemm' | tail -n 1)
bench_flash=$(echo "$bench_out" | grep '^gpu_train_bench: attention flash' | tail -n 1)
[ $brc -eq 0 ] || rc=1

echo "== gpu_train_bench, flash, profiled (LOSSY_CUDA_PROFILE=1; tokens/s here include the event overhead)"
prof_out=$(LOSSY_CUDA_PROFILE=1 timeout 60 "$B/gpu_train_bench" --steps 8 --warmup 3 --attn flash 2>&1)
prc=$?
echo "$prof_out"
[ $prc -eq 0 ] || rc=1

echo "== gpu-train-check summary"
echo "tests: ${tests_line:-no result (exit $trc)}${skip_line:+ ($skip_line)}"
echo "bench gemm:  ${bench_gemm:-failed (exit $brc)}"
echo "bench flash: ${bench_flash:-failed (exit $brc)}"
echo "profile (flash, ms per step, slowest kinds):"
echo "$prof_out" | sed -n '/^gpu_train_bench: profile/,$p' | sed -n '2,9p'
[ $prc -eq 0 ] || echo "profiled bench failed (exit $prc)"
echo "[target on H200: >= 450000 tokens/s, >= 40% MFU; llm.c 357K]"
exit $rc
