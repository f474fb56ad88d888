#!/bin/sh
# deps.sh PACKAGE... — install the Debian packages that are missing, and nothing else.
# On a ready machine this only asks dpkg (no network). As root it runs apt-get; otherwise it prints the command.
missing=""
for p in "$@"; do
    # npm may come inside a nodejs package from another source (NodeSource's nodejs bundles it, and conflicts with
    # Debian's npm package): a working npm command is enough
    if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
echo "lossy: missing Debian packages:$missing"
if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing
else
    echo "lossy: run as root:  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
