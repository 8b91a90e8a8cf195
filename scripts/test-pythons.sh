#!/usr/bin/env bash
# The unit, integration and serving tests on every Python pyproject.toml declares (TEST_PYTHONS in
# versions.env), each in a container of Debian's own python3: one debootstrapped root per release
# (root_image in lib.sh, made once), plus a test image per Python holding scripts/locks/test.lock
# (rebuilt only when the root or the lock changes). The checkout goes in as a tar of git's files,
# the tests run with --network none (they only need loopback), two Pythons at a time (2 cores).
# Usage: scripts/test-pythons.sh [3.9 3.13 ...] [-- pytest arguments]; logs in $CACHE/test-pythons/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
docker info >/dev/null 2>&1 || die "docker is not running: run scripts/install-tools.sh first"

wanted=() pytest_args=()
while [ $# -gt 0 ]; do
  [ "$1" = -- ] && { shift; pytest_args=("$@"); break; }
  wanted+=("$1"); shift
done
# test_figures.py checks the repo's benchmark records against git, which the container lacks (and
# which does not depend on the Python): the host's run covers it.
[ ${#pytest_args[@]} -gt 0 ] || pytest_args=(-q -p no:cacheprovider -m "not e2e" tests/unit tests/integration
  tests/serving --ignore=tests/serving/test_figures.py)
LOGS="$CACHE/test-pythons"; mkdir -p "$LOGS"

# The installer: uv (pinned in versions.env, a static binary from its PyPI wheel), mounted into the
# containers. The roots have no pip (Debian splits it out), and pip 26 no longer runs on 3.9.
UV="$(py_tool uv "$UV_VERSION")/uv"
CA=/etc/ssl/certs/ca-certificates.crt  # the host's bundle: uv in a container verifies PyPI with it

# test_image VERSION SUITE: pyfunc/test-python:VERSION, the root + a venv (/venv) from test.lock.
# docker build cannot mount the CA bundle (no BuildKit on Debian 12): run, then commit.
test_image() {
  local version="$1" root image="pyfunc/test-python:$1" inputs name="pyfunc-test-python-$1-$$"
  # uv reads distutils on Pythons before 3.10, and Debian ships it apart.
  root="$(root_image "$2" $([ "$version" != 3.9 ] || echo python3-distutils))"
  inputs="$(docker image inspect -f '{{.Id}}' "$root" | cut -c8-19)-$(hash_of scripts/locks/test.lock)-$UV_VERSION"
  [ "$(label_of "$image")" = "$inputs" ] && return 0
  step "Building $image ($2's python3 + scripts/locks/test.lock)"
  docker run --name "$name" -v "$CA:$CA:ro" -v "$UV:/usr/local/bin/uv:ro" -v "$REPO/scripts/locks/test.lock:/test.lock:ro" \
    -e SSL_CERT_FILE="$CA" -e UV_NO_CACHE=1 "$root" sh -c 'uv venv -q --python /usr/bin/python3 /venv &&
      uv pip install -q --python /venv/bin/python --require-hashes -r /test.lock' >"$LOGS/image-$version.log" 2>&1 ||
    { tail -30 "$LOGS/image-$version.log" >&2; docker rm -f "$name" >/dev/null; die "installing test.lock on Python $version failed"; }
  docker commit -c "LABEL io.pyfunc.inputs=$inputs" -c 'ENV PATH=/venv/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$name" "$image" >/dev/null
  docker rm "$name" >/dev/null
}

# What runs in a test container: the checkout arrives as a tar on stdin; $1 is the Python the
# container must have (a Debian release moving its python3 would silently change the matrix), the
# rest is pytest's arguments.
IN_CONTAINER='
mkdir /w && tar -x -C /w && cd /w
want="$1"; shift
have="$(python -c "import sys; print(*sys.version_info[:2], sep=\".\")")"
[ "$have" = "$want" ] || { echo "error: python3 is $have, not $want" >&2; exit 1; }
uv pip install -q --python /venv/bin/python --offline --no-deps --no-build-isolation -e .
exec python -m pytest "$@"'

# run_tests VERSION: git's tracked and untracked-not-ignored files into a fresh container of
# pyfunc/test-python:VERSION, pyfunc installed editable, pytest.
run_tests() {
  local version="$1" start=$SECONDS status=0
  (cd "$REPO" && git ls-files -z -co --exclude-standard | tar -c --null --ignore-failed-read -T -) |
    docker run -i --rm --network none -v "$UV:/usr/local/bin/uv:ro" -e UV_NO_CACHE=1 "pyfunc/test-python:$version" \
      sh -ec "$IN_CONTAINER" sh "$version" "${pytest_args[@]}" >"$LOGS/$version.log" 2>&1 || status=$?
  echo "$version $status $((SECONDS - start))" >>"$LOGS/results"
}

matrix=()
# Roots and test images, two at a time too: a cold debootstrap is mostly waiting on the mirror.
rm -f "$LOGS"/failed-*
for pair in $TEST_PYTHONS; do
  version="${pair%%:*}"
  [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $version "* ]] || continue
  matrix+=("$version")
  [ "$(jobs -rp | wc -l)" -lt 2 ] || wait -n || true  # a failure is recorded below, not by wait
  (test_image "$version" "${pair##*:}" || touch "$LOGS/failed-$version") &
done
wait
[ ${#matrix[@]} -gt 0 ] || die "no Python of TEST_PYTHONS ($TEST_PYTHONS) matches: ${wanted[*]}"
! ls "$LOGS"/failed-* >/dev/null 2>&1 || die "no test image for $(cd "$LOGS" && echo failed-* | sed 's/failed-//g')"

step "pytest on Python ${matrix[*]} (one at a time): ${pytest_args[*]}"
# One at a time: tests/serving loads both cores with busy loops to check that the elastic pool
# does not take computing workers for blocked ones, and two suites doing that at once on 2 cores
# starve each other's servers beyond what the test allows.
rm -f "$LOGS/results"
for version in "${matrix[@]}"; do
  run_tests "$version"
done
failed=0
while read -r version status seconds; do
  summary="$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)' "$LOGS/$version.log" | tail -1 | tr -d '=' || true)"
  note "Python $version: $([ "$status" = 0 ] && echo ok || echo "FAILED ($status)") in ${seconds}s:${summary:- see $LOGS/$version.log}"
  if [ "$status" != 0 ]; then failed=1; tail -40 "$LOGS/$version.log" | sed 's/^/      /'; fi
done < <(sort -V "$LOGS/results")
exit "$failed"
