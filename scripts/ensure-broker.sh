#!/usr/bin/env bash
# Makes sure nisshi 0.8, the second broker (TEST_BROKER=nisshi, DEMO_BROKER=nisshi), is installed;
# builds it once (about 12 minutes on 2 cores) with Rust 1.96.0, the first release it builds on
# (installed with rustup if missing), and never again while a working binary is cached.
# Prints the binary's path on the last line.
set -euo pipefail

version="0.8.1"
bin="${NISSHI_BIN:-}"
if [ -z "$bin" ]; then
  bin="$(command -v nisshi 2>/dev/null || true)"
  [ -n "$bin" ] || bin="${CARGO_HOME:-$HOME/.cargo}/bin/nisshi"
fi

if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "nisshi: using $("$bin" --version 2>/dev/null | head -n1) at $bin" >&2
  echo "$bin"
  exit 0
fi

toolchain="1.96.0"
if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
  echo "nisshi: installing Rust $toolchain (nisshi needs rustc >= 1.96)…" >&2
  rustup toolchain install "$toolchain" --profile minimal >&2
fi

echo "nisshi: not found; building nisshi $version with $(rustc "+$toolchain" --version)." >&2
echo "nisshi: this happens once and takes about 12 minutes on 2 cores; progress follows." >&2
echo "nisshi: (the tests and the demo default to Apache Kafka, which needs no build)" >&2
start=$(date +%s)
# cargo's own progress bar is invisible without a terminal (CI): print one line per crate instead.
cargo "+$toolchain" install --locked nisshi --version "$version" \
  --no-default-features --features dynostore,libsql --color never 2>&1 |
  while IFS= read -r line; do
    case "$line" in
      *Compiling*) n=$((${n:-0} + 1)); printf 'nisshi: [%4ss] %3d crates compiled: %s\n' "$(( $(date +%s) - start ))" "$n" "${line#*Compiling }" >&2 ;;
      *error*|*warning:*unused*) echo "$line" >&2 ;;
      *Installed*|*Installing*|*Finished*) echo "nisshi: $line" >&2 ;;
    esac
  done
bin="${CARGO_HOME:-$HOME/.cargo}/bin/nisshi"
if ! "$bin" --version >/dev/null 2>&1; then
  echo "nisshi: the build did not produce a working $bin" >&2
  exit 1
fi
echo "nisshi: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
