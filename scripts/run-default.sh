#!/bin/sh
# run-default.sh LOSSY_BIN — the main job behind `make run`.
# Today: describe the shipped model (lossy info) and, once the tokenizer lands, tokenize a sentence with its
# vocabulary. When generation lands (`lossy run`), this becomes a chat with the shipped default model.
set -eu
bin=$1
model=models/stories260K.gguf
"$bin" --version
echo
"$bin" info "$model"
if "$bin" --help | grep -q '^  tokenize '; then
    echo
    echo "tokenize \"Once upon a time, there was a little robot.\" with the model's own vocabulary:"
    printf 'Once upon a time, there was a little robot.' | "$bin" tokenize "$model"
fi
