#!/bin/sh
# gen-readme-commands.sh LOSSY_BIN README — replace the command list between the markers in README with the one the
# CLI table prints (`lossy help --markdown`). A test fails when they differ, so run `make docs` after adding a command.
set -eu
bin=$1
readme=$2
tmp=$(mktemp)
"$bin" help --markdown > "$tmp.list"
awk -v list="$tmp.list" '
  /<!-- commands:begin -->/ { print; while ((getline line < list) > 0) print line; skip = 1; next }
  /<!-- commands:end -->/ { skip = 0 }
  !skip { print }
' "$readme" > "$tmp"
mv "$tmp" "$readme"
rm -f "$tmp.list"
