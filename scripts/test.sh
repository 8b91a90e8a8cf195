#!/usr/bin/env bash
# Every test pyfunc has, on a fresh machine: lint, types, unit, integration, serving, CLI, examples,
# the waitress floor, cloudevents 2.x, the Python matrix (in containers) and the e2e with real pack
# and docker. It installs what it needs: .venv here; Docker, pack, the lifecycle, the images and
# the builder through scripts/install-tools.sh and scripts/build-images.sh; the Knative parts
# through scripts/install-knative.sh (all cached: a second run skips what is already built).
# Then the cluster e2e (e2e/cluster, marker `cluster`) on a real single-node Kubernetes + Knative
# cluster (scripts/cluster.sh: built in the background from the start, brought up while the
# container e2e runs, taken down at the end).
# Extra arguments go to pytest (one run, e2e included); PYFUNC_SKIP_E2E=1 skips the container side
# (and the cluster) for a quick local loop, PYFUNC_SKIP_CLUSTER=1 only the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

START=$SECONDS
step() { printf '==> [%dm%02ds] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }

# On a fresh machine most of the time goes to building Go programs (pack, the lifecycle and the
# Knative parts: minutes each on 2 cores) and debootstrapping Debian roots, so they run in the
# background while the Python checks run: background NAME CMD... starts one (its output in
# $CACHE/ci-NAME.log), await NAME waits for it, prints that output and fails with it.
CACHE="${PYFUNC_CACHE:-$HOME/.cache/pyfunc}"; mkdir -p "$CACHE"
declare -A JOBS=()
# Each in a session of its own, so that a failed check ends a whole job (go build's children too).
CLUSTER=0; [ "${PYFUNC_SKIP_E2E:-0}" != 1 ] && [ "${PYFUNC_SKIP_CLUSTER:-0}" != 1 ] && CLUSTER=1
CLUSTER_STARTED=0
cleanup() {
  local pid
  for pid in "${JOBS[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  # A cluster this run brought up (or half brought up) goes down: the host as it was.
  [ "$CLUSTER_STARTED" = 0 ] || scripts/cluster.sh down >"$CACHE/ci-cluster-down.log" 2>&1 || true
}
trap cleanup EXIT
background() { local name="$1"; shift; setsid "$@" >"$CACHE/ci-$name.log" 2>&1 </dev/null & JOBS[$name]=$!; }
await() {
  local status=0
  wait "${JOBS[$1]}" || status=$?
  sed 's/^/    /' "$CACHE/ci-$1.log"
  [ "$status" = 0 ] || { echo "error: $1 failed ($status): $CACHE/ci-$1.log" >&2; exit "$status"; }
}

if [ "${PYFUNC_SKIP_E2E:-0}" != 1 ]; then
  step "In the background: Docker, pack, the lifecycle and the images (scripts/install-tools.sh, scripts/build-images.sh), the Knative parts (scripts/install-knative.sh)"
  background images sh -c 'scripts/install-tools.sh && scripts/build-images.sh'
  background knative scripts/install-knative.sh
fi
if [ "$CLUSTER" = 1 ]; then
  step "In the background: the cluster's binaries (scripts/cluster-build.sh: Kubernetes, etcd, CoreDNS, Knative, Traefik)"
  # Its exit status also goes to a file, for the job that brings the cluster up once it is built.
  rm -f "$CACHE/ci-cluster-build.rc"
  background cluster-build sh -c 'scripts/cluster-build.sh; rc=$?; echo "$rc" >"$1"; exit "$rc"' _ "$CACHE/ci-cluster-build.rc"
fi

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

step "ASGI: Starlette, FastAPI and func-python functions under pyfunc, against uvicorn and func-python"
scripts/test-asgi.sh

if [ "${PYFUNC_SKIP_E2E:-0}" = 1 ]; then
  step "pytest (not e2e)"
  exec .venv/bin/python -m pytest -m "not e2e" "$@"  # pytest's 5 ("no tests collected") is never a pass
fi

step "Docker, pack, the lifecycle and the images (background)"
await images
step "Every Python pyproject declares, in containers (scripts/test-pythons.sh)"
scripts/test-pythons.sh
# pack, docker (API 1.41) and the cache paths, exactly as the scripts set them.
# shellcheck source=lib.sh
source scripts/lib.sh
step() { printf '==> [%dm%02ds] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }  # lib.sh's has no time
# cluster_up: in the background, the cluster brought up as soon as its binaries are built (its own
# log). Cold, the Go builds outlast the Python suites: the container e2e runs meanwhile, not after.
cluster_up() {
  [ "$CLUSTER" = 1 ] || return 0
  CLUSTER_STARTED=1
  background cluster-up sh -c 'while [ ! -f "$1" ]; do sleep 5; done; [ "$(cat "$1")" = 0 ] || exit 1
    exec scripts/cluster.sh up' _ "$CACHE/ci-cluster-build.rc"
}
# cluster_ready: wait for both (a failed build is reported with its own log).
cluster_ready() {
  step "The cluster's binaries (scripts/cluster-build.sh, background)"
  await cluster-build
  step "The cluster up (scripts/cluster.sh up, background)"
  await cluster-up
}
if [ "$#" -gt 0 ]; then  # a selection: one pytest run, once everything is there
  await knative
  cluster_up
  [ "$CLUSTER" = 0 ] || cluster_ready
  step "pytest $*"
  exec .venv/bin/python -m pytest "$@"
fi
# The e2e last, so that the Knative parts have built meanwhile.
step "pytest (not e2e)"
status=0
.venv/bin/python -m pytest -m "not e2e" || status=$?
step "The Knative parts (background)"
await knative
cluster_up
step "pytest (e2e, not the cluster)"
.venv/bin/python -m pytest -m "e2e and not cluster" || status=$((status ? status : $?))
if [ "$CLUSTER" = 1 ]; then
  cluster_ready
  step "pytest (cluster: e2e/cluster on scripts/cluster.sh's Kubernetes + Knative)"
  .venv/bin/python -m pytest -m cluster || status=$((status ? status : $?))
  step "The cluster down (scripts/cluster.sh down)"
  scripts/cluster.sh down && CLUSTER_STARTED=0
fi
step "Done (pytest status $status)"
exit "$status"
