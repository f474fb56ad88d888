#!/bin/sh
# train_bench.sh — speed (and optionally quality) of `lossy train`; results are recorded in bench/RESULTS.md (training section).
#
# 1. Our GEMM: the "peak" (1024 x 1024 x 512 and 2048^3) and every product of a training step at the benchmark
#    shapes, 1 and 2 threads (bench/train_gemm_bench.c, built here against the library).
# 2. Throughput of whole training steps (forward + backward + AdamW), median tokens/s over steps 2..N from the CSV
#    log, and GFLOP/s = tokens/s x (6 N_matmul + 12 L C T) with N_matmul the parameters in matrix products:
#      a. TinyStories-like: llama2.c's stories15M shape (6 layers x 288, 6 heads, ffn 768, seq 256), batch 16,
#         vocabulary 4096 (a BPE trained on Tiny Shakespeare) and 32000 (the Llama 2 sentencepiece vocabulary);
#      b. nanoGPT's shakespeare-char shape: 6 layers x 384, 6 heads, ffn 1024 (SwiGLU with the parameters of a 1536
#         GELU MLP), seq 256, batch 16, a byte-level vocabulary (266 ids: bytes, specials, two merges);
#      c. GPT-2-small-sized Llama: 12 layers x 768, 12 heads, ffn 2048, GPT-2's 50257 vocabulary, batch 4 x 64.
#    Data: Tiny Shakespeare from ../shared/fixtures (speed does not depend on the text).
# 3. LLMC=1: karpathy/llm.c's CPU trainer (train_gpt2.c, OpenMP) on GPT-2 124M at its B4 x T64, built from
#    LLMC_SRC (a checkout, never committed here) in the scratch dir, with random weights and random tokens in its
#    file formats (speed only); its printed step times.
# 4. QUALITY=1: the Tiny Shakespeare run of bench/RESULTS.md (MINUTES=10 by default): validation bits per byte.
#
# usage: bench/train_bench.sh      env: LOSSY (default build/release/lossy), LIB (default next to LOSSY:
#        liblossy.a), THREADS="1 2", STEPS=8, SCRATCH=dir, SPEED=0 (skip 1 and 2), LLMC=1 LLMC_SRC=dir,
#        QUALITY=1 MINUTES=10
set -eu

cd "$(dirname "$0")/.."
LOSSY=${LOSSY:-build/release/lossy}
LIB=${LIB:-$(dirname "$LOSSY")/liblossy.a}
THREADS=${THREADS:-"1 2"}
STEPS=${STEPS:-8}
SCRATCH=${SCRATCH:-$(mktemp -d /tmp/lossy-train-bench-XXXXXX)}
FIX=../shared/fixtures
SHAKES=$FIX/corpora/tinyshakespeare.txt
[ -x "$LOSSY" ] || { echo "no lossy binary at $LOSSY (run make first, or set LOSSY=)" >&2; exit 2; }
LOSSY=$(cd "$(dirname "$LOSSY")" && pwd)/$(basename "$LOSSY")
mkdir -p "$SCRATCH"
echo "scratch: $SCRATCH"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load: $(cut -d' ' -f1-3 /proc/loadavg)"

prep() { # name tokenizer: the last 10% of the bytes are the validation split
    [ -f "$SCRATCH/$1/manifest.json" ] || "$LOSSY" data prepare -q --tokenizer "$2" --out "$SCRATCH/$1" --val-fraction 0.1 "$SHAKES"
}

if [ "${SPEED:-1}" = 1 ]; then
# ---- 1. GEMM ----
cc -O3 -march=native -Isrc bench/train_gemm_bench.c "$LIB" -lm -lpthread -o "$SCRATCH/train_gemm_bench"
for t in $THREADS; do "$SCRATCH/train_gemm_bench" "$t" 288 768 4096 4096; done
for t in $THREADS; do "$SCRATCH/train_gemm_bench" "$t" 768 2048 256 50257 | tail -4; done

# ---- 2. training steps ----
[ -f "$SCRATCH/tok4k.gguf" ] || "$LOSSY" tokenizer train -q -n 4096 -o "$SCRATCH/tok4k.gguf" "$SHAKES"
[ -f "$SCRATCH/tokbyte.gguf" ] || "$LOSSY" tokenizer train -q -n 266 -o "$SCRATCH/tokbyte.gguf" "$SHAKES"
prep ds4k "$SCRATCH/tok4k.gguf"
prep dsbyte "$SCRATCH/tokbyte.gguf"
prep ds32k "$FIX/tokenizers/llama2/tokenizer.model"
prep dsgpt2 "$FIX/tokenizers/gpt2"

# median tok/s of steps 2..N and the GFLOP/s the trainer printed for them
run_steps() { # label data threads model/batch flags...
    label=$1 data=$2 t=$3
    shift 3
    out="$SCRATCH/run-$label-$t"
    "$LOSSY" train --data "$SCRATCH/$data" --out "$out.gguf" --steps "$STEPS" --eval-tokens 0 --ckpt-every 0 \
        --threads "$t" "$@" 2> "$out.log"
    peak=$(sed -n 's/.*peak \([0-9.]*\) GFLOP.*/\1/p' "$out.log" | head -1)
    gflop=$(sed -n 's/.*; \([0-9.]*\) GFLOP per step.*/\1/p' "$out.log" | head -1)
    tail -n +3 "$out.csv" | cut -d, -f7 | sort -n | awk -v l="$label" -v t="$t" -v g="$gflop" -v pk="$peak" -v bt="$BT" '
        { v[NR] = $1 } END { m = v[int((NR + 1) / 2)]; f = m / bt * g;
          printf "%-28s threads %s: %8.1f tok/s  %6.1f GFLOP/s  (%.0f%% of our GEMM peak %s)\n", l, t, m, f, 100 * f / pk, pk }'
}
for t in $THREADS; do
    BT=4096 run_steps "stories15m-v4096-B16xT256" ds4k "$t" --preset stories15m --batch 16
    BT=4096 run_steps "stories15m-v32000-B16xT256" ds32k "$t" --preset stories15m --batch 16
    BT=4096 run_steps "6x384-v266-B16xT256" dsbyte "$t" --layers 6 --dim 384 --heads 6 --ffn-dim 1024 --batch 16
    BT=256 run_steps "12x768-v50257-B4xT64" dsgpt2 "$t" --layers 12 --dim 768 --heads 12 --ffn-dim 2048 \
        --seq-len 1024 --seq 64 --batch 4
done
fi

# ---- 3. llm.c ----
if [ "${LLMC:-0}" = 1 ]; then
    LLMC_SRC=${LLMC_SRC:?set LLMC_SRC to a karpathy/llm.c checkout}
    d="$SCRATCH/llmc"
    mkdir -p "$d"
    cp "$LLMC_SRC/train_gpt2.c" "$d/" && cp -r "$LLMC_SRC/llmc" "$d/"
    # 8 steps, no sampling (sampling runs 64 forward passes): the loop bounds only, the step code is theirs
    sed -e 's/for (int step = 0; step <= 40; step++)/for (int step = 0; step <= 8; step++)/' \
        -e 's/if (step > 0 \&\& step % 20 == 0)/if (0)/' "$d/train_gpt2.c" > "$d/train_gpt2_bench.c"
    gcc -Ofast -Wno-unused-result -march=native -fopenmp -DOMP -I"$d" "$d/train_gpt2_bench.c" -lm -o "$d/train_gpt2"
    cat > "$d/mkfiles.c" <<'EOF'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
// llm.c's GPT-2 124M checkpoint format with random weights, and token files with random ids (speed only)
int main(void) {
    int h[256] = {20240326, 3, 1024, 50257, 12, 12, 768, 50304};
    size_t C = 768, L = 12, V = 50304, T = 1024;
    size_t n = V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C;
    FILE *f = fopen("gpt2_124M.bin", "wb");
    fwrite(h, 4, 256, f);
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float x = ((float)(s >> 40) / 16777216.0f - 0.5f) * 0.04f;
        fwrite(&x, 4, 1, f);
    }
    fclose(f);
    mkdir("dev", 0755), mkdir("dev/data", 0755), mkdir("dev/data/tinyshakespeare", 0755);
    const char *names[2] = {"dev/data/tinyshakespeare/tiny_shakespeare_train.bin", "dev/data/tinyshakespeare/tiny_shakespeare_val.bin"};
    for (int j = 0; j < 2; j++) {
        int hd[256] = {20240520, 1, j ? 32768 : 300000};
        FILE *g = fopen(names[j], "wb");
        fwrite(hd, 4, 256, g);
        for (int i = 0; i < hd[2]; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            uint16_t t = (uint16_t)(s % 50257);
            fwrite(&t, 2, 1, g);
        }
        fclose(g);
    }
    return 0;
}
EOF
    gcc -O2 "$d/mkfiles.c" -o "$d/mkfiles"
    (cd "$d" && [ -f gpt2_124M.bin ] || ./mkfiles)
    for t in $THREADS; do
        (cd "$d" && OMP_NUM_THREADS=$t ./train_gpt2) | sed -n 's/^step [0-9]*:.*took \([0-9.]*\) ms.*/\1/p' | tail -n +2 |
            sort -n | awk -v t="$t" '{ ms[NR] = $1 } END { m = ms[int((NR + 1) / 2)];
              printf "llm.c train_gpt2 124M B4xT64 threads %s: %.1f ms/step median, %.1f tok/s, %.1f GFLOP/s\n",
                     t, m, 256000 / m, 256000 / m * (6 * 124475904 + 12 * 12 * 768 * 64) / 1e9 }'
    done
fi

# ---- 4. quality ----
if [ "${QUALITY:-0}" = 1 ]; then
    MINUTES=${MINUTES:-10}
    # the vocabulary is learned from the training 90% only (the validation split is the last 10% of the bytes)
    head -c 1003854 "$SHAKES" > "$SCRATCH/shakespeare-train90.txt"
    [ -f "$SCRATCH/tok2k.gguf" ] || "$LOSSY" tokenizer train -q -n 2048 -o "$SCRATCH/tok2k.gguf" "$SCRATCH/shakespeare-train90.txt"
    prep ds2k "$SCRATCH/tok2k.gguf"
    "$LOSSY" train --data "$SCRATCH/ds2k" --out "$SCRATCH/shakespeare.gguf" --minutes "$MINUTES" --threads 2 \
        --layers 6 --dim 256 --heads 8 --seq-len 256 --batch 16 --lr 2e-3 --min-lr 1e-4 --warmup 50 \
        --eval-every 100 --sample-every 200 --sample-tokens 64 2>&1 | tee "$SCRATCH/shakespeare.log" | grep -E '^(model|data|done)|val '
    echo "curve: $SCRATCH/shakespeare.svg (log $SCRATCH/shakespeare.csv)"
fi
