#!/bin/sh
# run-default.sh LOSSY_BIN — the main job behind `make run`: chat with lossy's shipped assistant
# (models/lossy-assistant.gguf, trained by lossy itself: `make default-model` rebuilds it).
# On a terminal: the interactive chat (`lossy chat`, /help lists its commands). Otherwise (a pipe, CI): a few sample
# questions piped into `lossy chat` and answered greedily, each a new conversation except the last two, where the
# second question refers to the first.
set -eu
bin=$1
model=${LOSSY_MODEL:-models/lossy-assistant.gguf}
[ -f "$model" ] || { echo "run-default.sh: $model not found (make default-model rebuilds it)" >&2; exit 1; }
"$bin" --version | head -n 1
# the parameter count as the file states it (lossy info), so the banner stays true for LOSSY_MODEL=another.gguf
params=$("$bin" info "$model" | sed -n 's/^tensors: .*(\([0-9]*\) parameters.*/\1/p')
millions=$(awk -v p="${params:-0}" 'BEGIN { printf "%.1f", p / 1e6 }')
echo "model: $model ($(wc -c < "$model") bytes), ${millions}M parameters."
if [ -z "${LOSSY_MODEL:-}" ]; then
    echo "Pretrained and finetuned by lossy on 2 CPU cores. It knows the US state capitals; its arithmetic and spelling"
    echo "are mostly wrong (bench/RESULTS.md has the figures)."
fi
if [ -t 0 ]; then
    echo "Chat with it (Ctrl-D or /quit leaves, /help lists the commands):"
    exec "$bin" chat --temp 0 "$model"
fi
echo
err=$(mktemp)
trap 'rm -f "$err"' EXIT
ask() { # ask QUESTION...: one conversation, one user message per argument; prints the transcript
    if ! answers=$(printf '%s\n' "$@" | "$bin" chat --temp 0 -n 64 "$model" 2>"$err"); then
        cat "$err" >&2
        exit 1
    fi
    i=1
    for q in "$@"; do
        printf '> %s\n%s\n' "$q" "$(printf '%s\n' "$answers" | sed -n "${i}p")"
        i=$((i + 1))
    done
}
ask "Hello!"
ask "What are you good at?"
ask "What's the capital city of Oregon?"
ask "What city is the state capital of Florida?"
ask "What is the capital of Ohio?" "And Texas?"
ask "What is 23 + 45?"
ask "How do you spell whale?"
