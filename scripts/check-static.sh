#!/usr/bin/env bash
# Fails unless every given binary is statically linked (static or static-pie); prints each one's size.
# Without arguments: the release binaries `make build` leaves in cargo's target directory, which
# CARGO_TARGET_DIR (or a target-dir in .cargo/config.toml) may move away from target/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# Cargo's output directory for the workspace, as cargo itself resolves it.
target_dir() {
  local dir
  dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')" || true
  echo "${dir:-${CARGO_TARGET_DIR:-$root/target}}"
}

if [ $# -eq 0 ]; then
  release="$(target_dir)/x86_64-unknown-linux-musl/release"
  set -- "$release/admin" "$release/producer" "$release/consumer"
fi
status=0
for bin in "$@"; do
  if [ ! -f "$bin" ]; then
    echo "missing: $bin (make build writes the release binaries under cargo's target directory: CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-unset})" >&2
    status=1; continue
  fi
  info="$(file -b "$bin")"
  if grep -qE 'statically linked|static-pie linked' <<<"$info"; then
    printf '%-55s static, %7d bytes\n' "$bin" "$(stat -c %s "$bin")"
  else
    echo "NOT static: $bin ($info)" >&2; status=1
  fi
done
exit $status
