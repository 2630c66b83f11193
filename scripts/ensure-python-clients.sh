#!/usr/bin/env bash
# Installs the independent Kafka clients the tests compare against (kafka-python, confluent-kafka),
# unless the pinned versions are already importable.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
if "$python" - "$here/tests/py/requirements.txt" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, want = line.split("==")
        assert version(name) == want, (name, version(name), want)
PY
then
  echo "python clients: already installed" >&2
else
  echo "python clients: installing $(grep -v '^#' "$here/tests/py/requirements.txt" | tr '\n' ' ')" >&2
  "$python" -m pip install --quiet --disable-pip-version-check -r "$here/tests/py/requirements.txt"
fi
