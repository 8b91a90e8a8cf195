#!/usr/bin/env bash
# Regenerate every hashed lock with uv (pinned in versions.env). Nothing else resolves versions:
# scripts/test.sh, the images and the host tools install only from these files, so what CI runs
# changes only when a commit changes a lock.
#   image/requirements.lock    pyproject.toml's runtime dependencies: the venv of pyfunc/base
#   builder/requirements.lock  builder/requirements.in: pip, cyclonedx-bom, uv, poetry in pyfunc/build
#     (both for CPython 3.11 on manylinux x86_64, the images' Python, whatever the host runs; and
#     image/requirements-3.13.lock, builder/requirements-3.13.lock, ... for the other STACKS)
#   scripts/locks/test.lock    pyfunc + its [test] extra: the .venv of scripts/test.sh
#   scripts/locks/waitress-floor.lock  the oldest waitress pyproject allows (scripts/test-waitress-floor.sh)
#   scripts/locks/sdk2.lock    cloudevents 2.x over test.lock (scripts/test-sdk2.sh; 2.x needs Python >= 3.10)
#   scripts/locks/asgi.lock    pyfunc[test] + func-python, uvicorn, hypercorn, Starlette, FastAPI (scripts/test-asgi.sh)
#   scripts/locks/pip-audit.lock  the auditor's own dependencies (scripts/audit.sh)
#   scripts/locks/uv.lock, pip.lock  uv itself, and the pip every tool venv is brought to first
#     (lib.sh's py_tool: the machine's own pip may be too old to install a lock)
#     (all universal: any Python pyproject allows, any platform)
# Needs PyPI. Run it after changing a dependency, or as the deliberate step that takes upstream
# releases and fixes: UPGRADE=1 scripts/lock.sh, then review the diff and run scripts/test.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
uv="$(py_tool uv "$UV_VERSION")/uv"
sdk1=(-c scripts/locks/cloudevents-1.txt)  # the images and .venv keep cloudevents 1.x (the file says why)
cd "$REPO"
for stack in $STACKS; do
  version="${stack%%:*}"
  suffix="$([ "$version" = "$PYTHON_VERSION" ] || echo "-$version")"   # the default stack: no suffix
  target=(--python-version "$version" --python-platform x86_64-manylinux_2_28)
  for pair in pyproject.toml:image/requirements$suffix.lock builder/requirements.in:builder/requirements$suffix.lock; do
    step "uv pip compile ${pair%%:*} -> ${pair##*:} (Python $version)"
    "$uv" pip compile --quiet --generate-hashes --no-strip-markers "${target[@]}" "${sdk1[@]}" \
      --custom-compile-command "scripts/lock.sh" -o "${pair##*:}" "${pair%%:*}" ${UPGRADE:+--upgrade}
  done
done
universal=(--universal --python-version 3.9)
step "uv pip compile pyproject.toml[test] -> scripts/locks/test.lock"
"$uv" pip compile --quiet --generate-hashes "${universal[@]}" "${sdk1[@]}" --extra test \
  --custom-compile-command "scripts/lock.sh" -o scripts/locks/test.lock pyproject.toml scripts/locks/build-backend.in ${UPGRADE:+--upgrade}
floor="$(sed -n 's/^ *"waitress>=\([0-9.]*\),.*/\1/p' pyproject.toml)"
step "uv pip compile waitress==$floor (the floor of pyproject's range) -> scripts/locks/waitress-floor.lock"
echo "waitress==$floor" | "$uv" pip compile --quiet --generate-hashes "${universal[@]}" --no-deps \
  --custom-compile-command "scripts/lock.sh" -o scripts/locks/waitress-floor.lock -
step "uv pip compile cloudevents==2.2.0 -> scripts/locks/sdk2.lock"
# The 2.x end of pyproject's range, with its own dependencies (dateutil, deprecation).
echo "cloudevents==2.2.0" | "$uv" pip compile --quiet --generate-hashes --universal --python-version 3.10 \
  --custom-compile-command "scripts/lock.sh" -o scripts/locks/sdk2.lock - ${UPGRADE:+--upgrade}
step "uv pip compile pyproject.toml[test] + scripts/locks/asgi.in -> scripts/locks/asgi.lock"
# func-python, uvicorn, hypercorn, Starlette, FastAPI (tests/asgi, bench/): a whole venv of its own
# (.venv-asgi, scripts/test-asgi.sh), on cloudevents 2.x as func-python requires (Python >= 3.10).
"$uv" pip compile --quiet --generate-hashes --universal --python-version 3.10 --extra test \
  --custom-compile-command "scripts/lock.sh" -o scripts/locks/asgi.lock pyproject.toml \
  scripts/locks/build-backend.in scripts/locks/asgi.in ${UPGRADE:+--upgrade}
step "uv pip compile pip-audit==$PIP_AUDIT_VERSION -> scripts/locks/pip-audit.lock"
# pip-audit itself needs Python >= 3.10 (the hosts run 3.11).
echo "pip-audit==$PIP_AUDIT_VERSION" | "$uv" pip compile --quiet --generate-hashes --universal \
  --python-version 3.10 --custom-compile-command "scripts/lock.sh" -o scripts/locks/pip-audit.lock - ${UPGRADE:+--upgrade}
for pin in "uv==$UV_VERSION:scripts/locks/uv.lock" "pip==$PIP_VERSION:scripts/locks/pip.lock"; do
  step "uv pip compile ${pin%%:*} -> ${pin##*:}"
  echo "${pin%%:*}" | "$uv" pip compile --quiet --generate-hashes "${universal[@]}" \
    --custom-compile-command "scripts/lock.sh" -o "${pin##*:}" -
done
step "Locks written (UPGRADE=1 scripts/lock.sh takes the newest allowed versions)"
