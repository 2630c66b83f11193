#!/usr/bin/env bash
# Installs the offline manifest checkers that scripts/check-manifests.sh runs, unless the pinned
# versions are already there, and prints the directory holding their commands:
#   kubernetes-validate  Kubernetes' OpenAPI schemas (1.25 to 1.37) packaged for offline validation
#   checkov              a policy scanner (its kubernetes framework)
# They live in their own virtualenv (MANIFEST_TOOLS_VENV, default ~/.cache/kafka-lag-lab/manifest-tools):
# checkov pins dozens of dependencies, which must not move the test clients' packages.
set -euo pipefail
python="${PYTHON:-python3}"
venv="${MANIFEST_TOOLS_VENV:-$HOME/.cache/kafka-lag-lab/manifest-tools}"
pins=(kubernetes-validate==1.37.0 checkov==3.3.30)

installed() {
  [[ -x "$venv/bin/python" ]] && "$venv/bin/python" - "${pins[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    assert version(name) == want, (name, version(name), want)
PY
}

if installed; then
  echo "manifest tools: already installed (${pins[*]})" >&2
else
  echo "manifest tools: installing ${pins[*]} into $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
  installed || { echo "manifest tools: ${pins[*]} did not install into $venv" >&2; exit 1; }
fi
echo "$venv/bin"
