#!/bin/sh
# run-default.sh LOSSY_BIN — the main job behind `make run`.
# Today: describe the shipped TinyStories model, tokenize a sentence with its vocabulary and generate a story.
# When lossy ships its own finetuned assistant, this becomes a chat with it.
set -eu
bin=$1
model=models/stories260K.gguf
"$bin" --version
echo
"$bin" info "$model"
echo
echo "== lossy tokenize: \"Once upon a time, there was a little robot.\" with the model's own vocabulary"
printf 'Once upon a time, there was a little robot.' | "$bin" tokenize "$model"
echo
echo "== lossy run: a story from the model (greedy, 200 tokens)"
"$bin" run "$model" -p "Once upon a time, there was a little robot" -n 200 --temp 0
