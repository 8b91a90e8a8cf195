#!/usr/bin/env bash
# The binding and CloudEvents tests on cloudevents 2.x (pyproject allows 1.x and 2.x; .venv and
# the images run 1.x), in a venv of its own (.venv-sdk2): the test tools from scripts/locks/test.lock,
# then cloudevents 2.x over its 1.x from scripts/locks/sdk2.lock (scripts/lock.sh writes both).
# Usage: scripts/test-sdk2.sh [pytest arguments]; with none it runs tests/unit, tests/integration,
# tests/serving (real servers on loopback) and tests/cli/test_testing.py (pyfunc.testing), the
# binding and CloudEvents tests among them: their handlers import the 1.x API from cloudevents.v1
# here (legacy() in tests/support.py), tests/integration/test_sdk_majors.py binds and returns 2.x's
# own CloudEvent, and tests/cli/test_testing.py sends and reads back 2.x's types through
# pyfunc.testing. Not e2e (-m "not e2e" below).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

version="$(sed -n 's/^cloudevents==\([0-9.]*\) .*/\1/p' scripts/locks/sdk2.lock)"
printf '==> .venv-sdk2 with cloudevents==%s\n' "$version"
[ -x .venv-sdk2/bin/python ] || "${PYTHON:-python3}" -m venv .venv-sdk2
pip=(.venv-sdk2/bin/python -m pip install -q --disable-pip-version-check --require-hashes)
"${pip[@]}" -r scripts/locks/test.lock
"${pip[@]}" --no-deps -r scripts/locks/sdk2.lock
.venv-sdk2/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
# pip check: consistent but for the one conflict this venv is made of (pyproject requires 1.x; a
# user who installs 2.x over it gets the same warning, and pyfunc binds 2.x's types).
pip_check_sdk2 .venv-sdk2
installed="$(.venv-sdk2/bin/python -c 'from importlib.metadata import version; print(version("cloudevents"))')"
[ "$installed" = "$version" ] || { echo "error: cloudevents $installed installed, not $version" >&2; exit 1; }

if [ "$#" -eq 0 ]; then
  # Left out of tests/serving: the pure-transport modules (the epoll loop under slow readers and
  # pipelining, the waitress contract, concurrency, drain). Their handlers take the HTTP body and headers, no
  # event is bound or returned as an SDK type, and the tests send no CloudEvent: the server never
  # imports cloudevents, whichever major is installed (tests/cli/test_cold_start.py checks, from
  # inside a real server process, that serving such a function loads no cloudevents module). They
  # are most of tests/serving's time and run on 1.x in .venv.
  set -- -q -p no:cacheprovider tests/unit tests/integration tests/serving tests/cli/test_testing.py \
    --ignore=tests/serving/test_concurrency.py --ignore=tests/serving/test_drain.py \
    --ignore=tests/serving/test_eventloop.py --ignore=tests/serving/test_waitress_contract.py
fi
printf '==> pytest on cloudevents %s: %s\n' "$version" "$*"
exec .venv-sdk2/bin/python -m pytest -m "not e2e" "$@"
