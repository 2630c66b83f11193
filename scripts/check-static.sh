#!/usr/bin/env bash
# Fails unless every given binary is statically linked (static or static-pie); prints each one's size.
set -euo pipefail
status=0
for bin in "$@"; do
  if [ ! -f "$bin" ]; then echo "missing: $bin" >&2; status=1; continue; fi
  info="$(file -b "$bin")"
  if grep -qE 'statically linked|static-pie linked' <<<"$info"; then
    printf '%-55s static, %7d bytes\n' "$bin" "$(stat -c %s "$bin")"
  else
    echo "NOT static: $bin ($info)" >&2; status=1
  fi
done
exit $status
