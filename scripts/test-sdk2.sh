#!/usr/bin/env bash
# The binding and CloudEvents tests on cloudevents 2.x (pyproject allows 1.x and 2.x; .venv and
# the images run 1.x), in a venv of its own (.venv-sdk2): the test tools from scripts/locks/test.lock,
# then cloudevents 2.x over its 1.x from scripts/locks/sdk2.lock (scripts/lock.sh writes both).
# Usage: scripts/test-sdk2.sh [pytest arguments]; with none it runs tests/unit and
# tests/integration, the binding and CloudEvents tests among them: their handlers import the 1.x
# API from cloudevents.v1 here (legacy() in tests/support.py), and tests/integration/test_sdk_majors.py
# binds and returns 2.x's own CloudEvent.
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(sed -n 's/^cloudevents==\([0-9.]*\) .*/\1/p' scripts/locks/sdk2.lock)"
printf '==> .venv-sdk2 with cloudevents==%s\n' "$version"
[ -x .venv-sdk2/bin/python ] || "${PYTHON:-python3}" -m venv .venv-sdk2
pip=(.venv-sdk2/bin/python -m pip install -q --disable-pip-version-check --require-hashes)
"${pip[@]}" -r scripts/locks/test.lock
"${pip[@]}" --no-deps -r scripts/locks/sdk2.lock
.venv-sdk2/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
.venv-sdk2/bin/python -m pip check >/dev/null
installed="$(.venv-sdk2/bin/python -c 'from importlib.metadata import version; print(version("cloudevents"))')"
[ "$installed" = "$version" ] || { echo "error: cloudevents $installed installed, not $version" >&2; exit 1; }

if [ "$#" -eq 0 ]; then
  set -- -q -p no:cacheprovider tests/unit tests/integration
fi
printf '==> pytest on cloudevents %s: %s\n' "$version" "$*"
exec .venv-sdk2/bin/python -m pytest -m "not e2e" "$@"
