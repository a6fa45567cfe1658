#!/usr/bin/env bash
# Every test of zswap-rs, in the order a failure is cheapest to find:
# lint, the Rust crate on its own (no Python), then a wheel built by maturin,
# installed into a fresh virtual environment, and the Python suite run
# against that installed wheel (not the source tree). The wheel is the portable
# release one (scripts/build-wheels.sh); tests/test_wheel.py also builds the
# sdist from source with pip.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PYTHON:-python3}

echo "== rustfmt, clippy, rustdoc"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --lib --features python --locked -- -D warnings
# The crate docs: a broken or private intra-doc link fails here.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked

echo "== Rust tests (crate without Python)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --lib --tests --no-fail-fast
else
    cargo test --locked --lib --tests
fi
cargo test --locked --doc

echo "== valgrind memcheck over the tests of the unsafe code"
# The FFI to ISA-L and zstd (fed hostile input by compress_fuzz), the LZO
# interop, the IAA and NX drivers against their device models, the O_DIRECT
# file paths and the pool's page heap: an invalid read or write, or a use of
# uninitialised memory, fails the run. Miri (nightly) goes deeper into the IAA driver where
# it is installed (see tests/hw_iaa.rs); valgrind runs on stable.
if ! command -v valgrind >/dev/null; then
    echo "valgrind is missing: apt-get install -y valgrind (.ci/run does)" >&2
    exit 1
fi
memcheck=(compress_fuzz compress_interop hw_iaa hw_nx batch_iaa backing pool_memory)
mapfile -t binaries < <(
    cargo test --locked --no-run --message-format=json "${memcheck[@]/#/--test=}" \
        | "$py" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])'
)
if [ ${#binaries[@]} -ne ${#memcheck[@]} ]; then
    echo "expected ${#memcheck[@]} test binaries for valgrind, found ${#binaries[@]}" >&2
    exit 1
fi
printf '%s\n' "${binaries[@]}" \
    | xargs -P 2 -I{} valgrind -q --error-exitcode=99 --leak-check=no {} -q
# Benchmarks are programs, not tests: build them so they cannot rot.
cargo bench --locked --no-run

echo "== portable wheel (manylinux2014, built with zig)"
rm -rf target/wheels
wheel=$(scripts/build-wheels.sh -o target/wheels | tail -n 1)
"$py" - "$wheel" <<'PY'
import os, sys, zipfile
wheel = sys.argv[1]
(so,) = [i for i in zipfile.ZipFile(wheel).infolist() if i.filename.endswith(".so")]
print(f"built {wheel}: {os.path.getsize(wheel)} bytes, {so.filename} {so.file_size} bytes unpacked")
PY

echo "== fresh virtual environment"
venv=$root/target/test-venv
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$wheel" pytest lz4 mypy ruff matplotlib numpy auditwheel
export ZSWAP_RS_WHEEL=$wheel

echo "== auditwheel: the wheel needs glibc 2.17 at most"
"$venv/bin/auditwheel" show "$wheel" | tee target/wheels/auditwheel.txt
minor=$(tr -s ' \n' ' ' <target/wheels/auditwheel.txt \
    | sed -n 's/.*platform tag: "manylinux_2_\([0-9]*\)_.*/\1/p')
if [ -z "$minor" ] || [ "$minor" -gt 17 ]; then
    echo "auditwheel: $wheel is not manylinux_2_17 or older (found '${minor:-none}')" >&2
    exit 1
fi

echo "== ruff, stubtest"
"$venv/bin/ruff" check python tests benches
"$venv/bin/ruff" format --check python tests benches
(cd /tmp && "$venv/bin/python" -m mypy.stubtest zswap_rs --ignore-missing-stub \
    --allowlist "$root/tests/stubtest-allowlist.txt")

echo "== pytest (against the installed wheel)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests
