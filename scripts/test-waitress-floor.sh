#!/usr/bin/env bash
# The test suite on the oldest waitress pyproject.toml allows (its floor), in a venv of its own
# (.venv-floor), so the floor of the range is tested and not only whatever 3.0.x is newest.
# Usage: scripts/test-waitress-floor.sh [pytest arguments]; with none it runs the tests that
# exercise waitress's internals: tests/serving, tests/reliability/test_hostile_http.py and
# tests/integration. The floor's version comes from pyproject.toml, its hash from
# scripts/locks/waitress-floor.lock (scripts/lock.sh writes both locks).
set -euo pipefail
cd "$(dirname "$0")/.."

floor="$(sed -n 's/^ *"waitress>=\([0-9.]*\),.*/\1/p' pyproject.toml)"
[ -n "$floor" ] || { echo "error: no waitress floor found in pyproject.toml" >&2; exit 1; }
grep -q "^waitress==$floor " scripts/locks/waitress-floor.lock ||
  { echo "error: scripts/locks/waitress-floor.lock is not for waitress $floor: run scripts/lock.sh" >&2; exit 1; }

printf '==> .venv-floor with waitress==%s\n' "$floor"
[ -x .venv-floor/bin/python ] || "${PYTHON:-python3}" -m venv .venv-floor
# The same hashed test tools as .venv, then the floor over the locked waitress.
pip=(.venv-floor/bin/python -m pip install -q --disable-pip-version-check --require-hashes)
"${pip[@]}" -r scripts/locks/test.lock
"${pip[@]}" --no-deps -r scripts/locks/waitress-floor.lock
.venv-floor/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
installed="$(.venv-floor/bin/python -c 'from importlib.metadata import version; print(version("waitress"))')"
[ "$installed" = "$floor" ] || { echo "error: waitress $installed installed, not $floor" >&2; exit 1; }

if [ "$#" -eq 0 ]; then
  set -- -q -p no:cacheprovider tests/serving tests/reliability/test_hostile_http.py tests/integration
fi
printf '==> pytest on waitress %s: %s\n' "$floor" "$*"
exec .venv-floor/bin/python -m pytest -m "not e2e" "$@"
