#!/bin/bash
# gpu-pack.sh — stage, on a development machine, what scripts/gpu-check.sh needs on a bare GPU machine that has CUDA
# but none of lossy's Debian libraries and no package registry: headers and shared libraries of pcre2, jansson,
# utf8proc and libmicrohttpd (with the libraries they pull in), the shared fixtures, and a prebuilt tree for a generic
# x86-64-v3 CPU as a fallback should building there fail. Everything lands in .gpu/ (git-ignored), which the device
# call carries. Usage: scripts/gpu-pack.sh   (then, there: bash scripts/gpu-check.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
G=.gpu
rm -rf "$G/lib" "$G/include" "$G/fixtures"
mkdir -p "$G/lib" "$G/include" "$G/fixtures"

# Headers for building there.
for h in pcre2.h jansson.h jansson_config.h utf8proc.h microhttpd.h; do
    cp -L "/usr/include/$h" "$G/include/" 2>/dev/null || cp -L "/usr/include/x86_64-linux-gnu/$h" "$G/include/"
done
# The libraries lossy links and what they need at run time (glibc itself excepted), plus link-time names.
for so in $(ldd build/lead/lossy | awk '/=>/ {print $3}' | grep -v -E '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so'); do
    cp -L "$so" "$G/lib/"
done
for n in pcre2-8 jansson utf8proc microhttpd; do
    real=$(ls "$G/lib"/lib$n.so.* | head -1)
    ln -sf "$(basename "$real")" "$G/lib/lib$n.so"
done
cp -r ../shared/fixtures/. "$G/fixtures/"
# Fallback build for a CPU that may lack this machine's extensions (AVX-512/AMX paths are chosen at run time).
make --no-print-directory B="$G/build" -j2 CFLAGS_MODE="-O3 -march=x86-64-v3 -g1" build >/dev/null
rm -rf "$G/build/src" "$G/build/tests" "$G/build/liblossy.a"
du -sh "$G"/* | sed 's/^/gpu-pack: /'
