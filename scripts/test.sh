#!/usr/bin/env bash
# Every test pyfunc has, on a fresh machine: lint, types, unit, integration, serving, CLI, examples,
# the waitress floor, cloudevents 2.x, the Python matrix (in containers) and the e2e with real pack
# and docker. It installs what it needs: .venv here,
# and Docker, pack, the lifecycle, the images and the builder through scripts/install-tools.sh
# and scripts/build-images.sh (both cached: a second run skips what is already built).
# Extra arguments go to pytest; PYFUNC_SKIP_E2E=1 skips the container side for a quick local loop.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '==> %s\n' "$*"; }

step "Python venv (.venv) with pyfunc and its test dependencies, from scripts/locks/test.lock"
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
# Exact, hashed versions: a release upstream cannot change what CI runs (scripts/lock.sh refreshes).
.venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r scripts/locks/test.lock
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .

step "Figures: stale results"
.venv/bin/python scripts/figures.py --stale

step "ruff"
.venv/bin/ruff check .

step "mypy --strict runtime/pyfunc (pyproject's [tool.mypy])"
.venv/bin/mypy

step "The waitress floor: tests that reach into waitress, on the oldest version pyproject allows"
scripts/test-waitress-floor.sh

step "cloudevents 2.x: the binding tests on the SDK's other major"
scripts/test-sdk2.sh

if [ "${PYFUNC_SKIP_E2E:-0}" != 1 ]; then
  scripts/install-tools.sh
  scripts/build-images.sh
  step "Every Python pyproject declares, in containers (scripts/test-pythons.sh)"
  scripts/test-pythons.sh
  # pack, docker (API 1.41) and the cache paths, exactly as the scripts set them.
  # shellcheck source=lib.sh
  source scripts/lib.sh
  marker=()
else
  marker=(-m "not e2e")
fi

step "pytest"
set +e
.venv/bin/python -m pytest "${marker[@]}" "$@"
status=$?
set -e
# pytest's 5 means "no tests collected": never a pass.
exit "$status"
