#!/usr/bin/env bash
# Builds the Debian package of Aura (cargo-deb) and prints the path of the .deb.
#
#   dist/build-deb.sh [--profile release|dev] [--binary PATH] [--out DIR] [--work DIR] [--fast]
#
#   --profile release  (default) build target/release/aura
#   --profile dev      build target/debug/aura (quick; implies --fast)
#   --binary PATH      package this aura binary, without building
#   --out DIR          where the packages go (default: <target>/debian)
#   --work DIR         scratch directory (default: <target>/dist)
#   --fast             quick and larger: the binary as it is, fast compression
#
# Without --fast the binary is stripped and its debug information (line tables, for
# backtraces) goes to a second package, aura-dbgsym_*.ddeb, printed before the .deb.
#
# The scratch directory stands in for cargo-deb's target directory: it gets the binary
# (release/aura, a hard link when it can) and the shell completions and man pages the
# binary generates (release/completions, release/man), then cargo-deb runs there with
# --no-build. The assets and units are listed in crates/aura-cli/Cargo.toml
# ([package.metadata.deb]). Needs cargo-deb (`cargo install cargo-deb --locked`) and
# gzip; dpkg-shlibdeps (Debian package dpkg-dev) for the libc dependency.
set -euo pipefail

usage() {
    sed -n '2,14s/^# \{0,1\}//p' "$0" >&2
    exit "$1"
}

profile=release
binary=
out=
work=
fast=
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=${2:?}; shift 2 ;;
        --binary) binary=${2:?}; shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        --work) work=${2:?}; shift 2 ;;
        --fast) fast=1; shift ;;
        -h | --help) usage 0 ;;
        *) echo "build-deb: unknown argument $1" >&2; usage 2 ;;
    esac
done
case "$profile" in
    release) profile_dir=release ;;
    dev) profile_dir=debug; fast=1 ;;
    *) echo "build-deb: --profile is release or dev, not $profile" >&2; exit 2 ;;
esac

# Paths given relative to where the script was called from, then to the repository.
absolute() {
    case "$1" in
        /* | '') printf '%s' "$1" ;;
        *) printf '%s/%s' "$PWD" "$1" ;;
    esac
}
binary=$(absolute "$binary")
out=$(absolute "$out")
work=$(absolute "$work")
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 1
fi
if ! command -v dpkg-shlibdeps >/dev/null 2>&1; then
    echo "build-deb: dpkg-shlibdeps is missing (Debian package dpkg-dev); without it the" \
        "package would not name the libc it needs" >&2
    exit 1
fi

target=$(cargo metadata --format-version 1 --no-deps --locked |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
if [ -z "$target" ]; then
    echo "build-deb: cannot find cargo's target directory" >&2
    exit 1
fi
work=${work:-$target/dist}
out=${out:-$target/debian}

if [ -z "$binary" ]; then
    cargo build --locked --profile "$profile" -p aura-cli --bin aura >&2
    binary=$target/$profile_dir/aura
fi
if [ ! -x "$binary" ]; then
    echo "build-deb: no aura binary at $binary" >&2
    exit 1
fi

stage=$work/release
rm -rf "$stage"
mkdir -p "$stage" "$out"
ln -f "$binary" "$stage/aura" 2>/dev/null || cp -f "$binary" "$stage/aura"
"$stage/aura" generate completions --shell bash --shell zsh --shell fish \
    --out "$stage/completions" >/dev/null
"$stage/aura" generate man --out "$stage/man" >/dev/null
# Debian policy: man pages compressed, reproducibly (no name, no timestamp).
gzip -9n "$stage"/man/*.1

# cargo-deb resolves `target/release/` in the asset list against CARGO_TARGET_DIR.
if [ -n "$fast" ]; then
    packaging=(--fast --no-strip --no-dbgsym)
else
    packaging=(--dbgsym)
fi
built=$(CARGO_TARGET_DIR=$work cargo deb -p aura-cli --no-build --locked -o "$out" \
    "${packaging[@]}")
deb=$(printf '%s\n' "$built" | grep '\.deb$' | tail -n 1 || true)
if [ ! -f "$deb" ]; then
    echo "build-deb: cargo deb did not report a package (it said: $built)" >&2
    exit 1
fi
printf '%s\n' "$built" | grep '\.ddeb$' || true
echo "$deb"
