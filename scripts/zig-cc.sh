#!/bin/sh
# The C compiler of the portable wheel build (scripts/build-wheels.sh): maturin's
# `zig cc` for the cargo target, without `-static`.
#
# isal-sys's `static` feature passes LDFLAGS=-static to ISA-L's ./configure, which
# then links its test programs statically; zig refuses to link glibc statically
# ("libc of the specified target requires dynamic linking"), so configure fails.
# The flag only shapes those throwaway programs: libisal.a is an archive (built
# with --enable-static --disable-shared) and is linked into the extension module
# by rustc either way. Dropping it here leaves every other argument as it was.
#
# build-wheels.sh points CC_<target> (with dashes, which the cc crate reads before
# the CC_<target_with_underscores> that maturin --zig sets) at this file; cargo
# passes TARGET to build scripts, and configure runs inside one.
set -eu
[ -n "${TARGET:-}" ] || { echo "zig-cc.sh: TARGET is unset (run under cargo)" >&2; exit 2; }
var=CC_$(printf '%s' "$TARGET" | tr -- '-.' '__')
eval "zig_cc=\${$var:-}"
[ -n "$zig_cc" ] || { echo "zig-cc.sh: $var is unset (run under maturin --zig)" >&2; exit 2; }
for arg do
    shift
    [ "$arg" = -static ] || set -- "$@" "$arg"
done
exec "$zig_cc" "$@"
