#!/bin/bash
# run.sh — install the npm packages the client tests need (openai, playwright-core, pinned in package-lock.json, into
# tests/web/node_modules) when missing or stale, then run run.mjs against `lossy serve`.
# Usage: tests/web/run.sh LOSSY_BIN MODEL OUTDIR   (called by the C test suite, tests/e2e/test_serve.c)
# Needs Debian packages nodejs, npm and chromium (the Makefile's DEB_PACKAGES).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 3 ] || { echo "usage: $0 LOSSY_BIN MODEL OUTDIR" >&2; exit 2; }
for tool in node npm curl; do
    command -v "$tool" >/dev/null || { echo "run.sh: '$tool' is missing (install the Makefile's DEB_PACKAGES: make deps)" >&2; exit 1; }
done
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "run.sh: chromium is missing (make deps)" >&2; exit 1; }
stamp="$here/node_modules/.lossy-installed"
if [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ]; then
    # a lock held by one installer at a time: test runs in parallel trees must not interleave installs
    (
        flock 9
        if [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ]; then
            (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2) && touch "$stamp"
        fi
    ) 9>"$here/.install.lock"
fi
exec node "$here/run.mjs" "$1" "$2" "$3"
