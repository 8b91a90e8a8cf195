#!/usr/bin/env bash
# ASGI and func-python serving against the real thing (tests/asgi): Starlette and FastAPI apps and
# Knative func's Python functions served by pyfunc and, for the differential tests, by uvicorn and
# func-python 0.8.1 (hypercorn). They live in a venv of their own (.venv-asgi) installed only from
# scripts/locks/asgi.lock (pyfunc[test] + scripts/locks/asgi.in, cloudevents 2.x as func-python
# requires). Usage: scripts/test-asgi.sh [pytest arguments] (default: tests/asgi).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

printf '==> .venv-asgi from scripts/locks/asgi.lock\n'
[ -x .venv-asgi/bin/python ] || "${PYTHON:-python3}" -m venv .venv-asgi
.venv-asgi/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r scripts/locks/asgi.lock
.venv-asgi/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
pip_check_sdk2 .venv-asgi

[ "$#" -gt 0 ] || set -- -q -p no:cacheprovider tests/asgi
printf '==> pytest in .venv-asgi: %s\n' "$*"
exec .venv-asgi/bin/python -m pytest -m "not e2e" "$@"
