#!/usr/bin/env bash
# Install what the fuzz tests need for coverage of the generated C: clang
# and its sanitizer runtime (Debian splits the ASan runtime into
# libclang-rt-N-dev, which `apt-get install clang` does not pull in).
# Best effort: prints what it did; exit 0 when clang can now link an ASan
# build, 1 when it cannot (the fuzz tests then fall back to the ordinary
# build and say so).
set -uo pipefail

probe() {
    local tmp rc
    tmp=$(mktemp -d)
    echo 'int fastsrv_probe(int x) { return x + 1; }' > "$tmp/p.c"
    clang -shared -fPIC -fsanitize=address,fuzzer-no-link "$tmp/p.c" -o "$tmp/p.so" 2> "$tmp/err"
    rc=$?
    [ $rc -eq 0 ] || tail -n 1 "$tmp/err"
    rm -rf "$tmp"
    return $rc
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends "$@" \
        > /tmp/fastsrv-apt.log 2>&1 && return 0
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q > /tmp/fastsrv-apt.log 2>&1
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends "$@" \
        >> /tmp/fastsrv-apt.log 2>&1
}

if command -v clang > /dev/null && probe > /dev/null; then
    echo "[fuzz toolchain] clang links ASan builds: $(clang --version | head -n 1)"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
    echo "[fuzz toolchain] clang with ASan is missing and cannot be installed here (needs apt-get as root)"
    exit 1
fi
command -v clang > /dev/null || apt_install clang || { echo "[fuzz toolchain] apt-get install clang failed:"; tail -n 3 /tmp/fastsrv-apt.log; exit 1; }
major=$(clang --version | sed -n 's/.*clang version \([0-9][0-9]*\)\..*/\1/p' | head -n 1)
apt_install "libclang-rt-${major}-dev" || { echo "[fuzz toolchain] apt-get install libclang-rt-${major}-dev failed:"; tail -n 3 /tmp/fastsrv-apt.log; exit 1; }
if why=$(probe); then
    echo "[fuzz toolchain] installed clang ${major} and libclang-rt-${major}-dev: ASan builds link"
    exit 0
fi
echo "[fuzz toolchain] clang still cannot link an ASan build: $why"
exit 1
