#!/bin/bash
# default-model.sh LOSSY_BIN [OUT] — the recipe behind `make default-model`: rebuild lossy's shipped assistant
# (default OUT: models/lossy-assistant.gguf) from scratch with lossy alone, then evaluate it and print the figures and
# the wall time of every stage.
#
#   1. corpus      scripts/default-corpus.sh: State of the Union addresses, Moby-Dick, WordNet glosses (24 MB)
#   2. tokenizer   lossy tokenizer train: 4096-token byte-level BPE on the training part of the corpus, with the
#                  reserved chat control tokens (<|system|> <|user|> <|assistant|> <|end|> <|tool_call|> ...)
#   3. prepare     lossy data prepare: token shards, the last 5% of the corpus held out for validation
#   4. pretrain    lossy train: 6 layers x 256, 8 heads, context 256 (5.9M parameters)
#   5. sft data    lossy data sft-synth: WordNet definitions, state capitals, arithmetic, spelling, identity
#   6. finetune    lossy sft: assistant tokens only, packed rows
#   7. evaluate    the base model's validation bits per byte (the whole held-out split, from lossy train), and
#                  lossy eval sft on both held-out splits (exact match and end-of-turn per question type)
#
# Work files go to WORK (default build/default-model-work; ignored by git). Sizes and steps are variables below so an
# experiment can override them from the environment; the defaults are the recipe of the shipped model. Everything is
# seeded: the same lossy and the same sources give the same model up to floating-point summation order (thread count).
set -euo pipefail
bin=$1
out=${2:-models/lossy-assistant.gguf}
work=${WORK:-build/default-model-work}
threads=${THREADS:-$(nproc)}
vocab=${VOCAB:-4096}
layers=${LAYERS:-6}
dim=${DIM:-256}
heads=${HEADS:-8}
ctx=${CTX:-256}
pretrain_steps=${PRETRAIN_STEPS:-800}     # x 16 x 256 tokens = 3.3M tokens, about half the corpus
pretrain_lr=${PRETRAIN_LR:-2e-3}
sft_per_type=${SFT_PER_TYPE:-1000}
sft_epochs=${SFT_EPOCHS:-3}
sft_lr=${SFT_LR:-1e-3}

[ -x "$bin" ] || { echo "default-model.sh: $bin is not an executable lossy (make build)" >&2; exit 2; }
mkdir -p "$work"
t0=$(date +%s)
last=$t0
times=""
stage() { # stage NAME: record the time since the previous stage
    now=$(date +%s)
    times="$times$(printf '  %-10s %5d s' "$1" $((now - last)))
"
    last=$now
}

echo "== 1/7 corpus"
scripts/data-deps.sh
scripts/default-corpus.sh "$work/corpus.txt"
stage corpus

echo "== 2/7 tokenizer"
size=$(wc -c < "$work/corpus.txt")
head -c $((size * 95 / 100)) "$work/corpus.txt" > "$work/tokenizer-train.txt" # never the validation tail
"$bin" tokenizer train -n "$vocab" -t "$threads" --name lossy-assistant-bpe -o "$work/tokenizer.gguf" "$work/tokenizer-train.txt"
rm -f "$work/tokenizer-train.txt"
stage tokenizer

echo "== 3/7 prepare"
rm -rf "$work/data"
"$bin" data prepare --tokenizer "$work/tokenizer.gguf" -o "$work/data" --doc-sep '<|endoftext|>' --val-fraction 0.05 \
    -t "$threads" "$work/corpus.txt"
stage prepare

echo "== 4/7 pretrain"
rm -f "$work/base.gguf" "$work/base.ckpt.gguf"
# --eval-every 0 with a large --eval-tokens: one evaluation at the end, over the whole validation split
"$bin" train -d "$work/data" -o "$work/base.gguf" --layers "$layers" --dim "$dim" --heads "$heads" --seq-len "$ctx" \
    -b 16 -n "$pretrain_steps" --lr "$pretrain_lr" --min-lr 1e-4 --warmup 50 --eval-every 0 --eval-tokens 100000000 \
    --ckpt-every 200 -t "$threads" --seed 1337 --name lossy-assistant-base 2>&1 | tee "$work/pretrain.log" |
    awk 'NR % 25 == 1 || !/^step / { print; fflush() }'
stage pretrain

echo "== 5/7 sft data"
rm -rf "$work/sft"
"$bin" data sft-synth -o "$work/sft" --seed 1 --per-type "$sft_per_type"
stage sft-data

echo "== 6/7 finetune"
rm -f "$work/assistant.gguf" "$work/assistant.ckpt.gguf"
"$bin" sft --base "$work/base.gguf" --data "$work/sft/train.jsonl" -o "$work/assistant.gguf" --pack --seq "$ctx" \
    --epochs "$sft_epochs" -b 16 --lr "$sft_lr" --min-lr 1e-5 --eval-every 0 --ckpt-every 0 -t "$threads" --seed 1337 \
    --name lossy-assistant 2>&1 | tee "$work/sft.log" | awk 'NR % 25 == 1 || !/^step / { print; fflush() }'
stage finetune

echo "== 7/7 evaluate"
for split in test test_phrasing; do
    echo "-- lossy eval sft on $split.jsonl"
    "$bin" eval sft -t "$threads" "$work/assistant.gguf" "$work/sft/$split.jsonl" | tee "$work/eval-$split.txt"
done
stage evaluate

mkdir -p "$(dirname "$out")"
cp "$work/assistant.gguf" "$out.tmp"
mv "$out.tmp" "$out"
total=$(( $(date +%s) - t0 ))
echo
echo "== default model: $out ($(wc -c < "$out") bytes)"
grep -E '^(final evaluation|done)' "$work/pretrain.log" | sed 's/^/  base model: /'
printf 'stage times:\n%s' "$times"
printf '  %-10s %5d s (%dm%02ds)\n' total "$total" $((total / 60)) $((total % 60))
