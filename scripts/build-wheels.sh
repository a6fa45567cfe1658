#!/usr/bin/env bash
# The release wheel that installs on every Linux with glibc 2.17 or newer
# (manylinux2014: RHEL/CentOS 7 and later, Ubuntu 14.04 and later, Amazon Linux 2),
# built on any newer machine.
#
# maturin's zig support links the extension module against zig's glibc 2.17
# stubs, so no old build image is needed; zig comes from PyPI
# (`pip install ziglang`). The one snag is isal-sys: its `static` feature gives
# ISA-L's ./configure LDFLAGS=-static, which zig refuses for glibc targets, so the
# C compiler of the build is scripts/zig-cc.sh (maturin's zig cc without that
# flag; see there why that is safe).
#
# Usage: scripts/build-wheels.sh [-o DIR] [--target TRIPLE] [more maturin build args]
#   -o DIR           where the wheel goes (default target/wheels)
#   --target TRIPLE  a Rust target whose standard library rustup has installed
#                    (default x86_64-unknown-linux-gnu)
# Prints the wheel's path as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=target/wheels
target=x86_64-unknown-linux-gnu
while [ $# -gt 0 ]; do
    case $1 in
        -o | --out) out=$2; shift 2 ;;
        --target) target=$2; shift 2 ;;
        *) break ;;
    esac
done

command -v maturin >/dev/null || { echo "maturin is missing: pip install maturin" >&2; exit 1; }
if ! command -v zig >/dev/null && ! python3 -m ziglang version >/dev/null 2>&1; then
    echo "zig is missing: pip install ziglang" >&2
    exit 1
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
    echo "no Rust standard library for $target: rustup target add $target" >&2
    exit 1
fi

mkdir -p "$out"
# CC_<target> with dashes: the cc crate reads it before maturin's
# CC_<target_with_underscores>, which zig-cc.sh then calls.
env "CC_$target=$root/scripts/zig-cc.sh" \
    maturin build --release --locked --zig --compatibility manylinux2014 \
    --target "$target" -o "$out" "$@" >&2
# The newest wheel for this architecture is the one just written.
wheel=$(ls -t "$out"/zswap_rs-*_"${target%%-*}".whl | head -n 1)
echo "$wheel"
