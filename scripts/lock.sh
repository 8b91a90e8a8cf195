#!/usr/bin/env bash
# Regenerate the hashed locks of the images' Python packages with uv (pinned in versions.env):
#   image/requirements.lock    pyproject.toml's runtime dependencies: the venv of pyfunc/base
#   builder/requirements.lock  builder/requirements.in: pip + cyclonedx-bom in pyfunc/build
# for CPython 3.11 on manylinux x86_64 (the images' Python), whatever the host runs. Needs PyPI.
# Run it after changing a dependency, or to take upstream fixes (pip-audit); review the diff.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
uv="$(py_tool uv "$UV_VERSION")/uv"
target=(--python-version "$PYTHON_VERSION" --python-platform x86_64-manylinux_2_28)
cd "$REPO"
for pair in pyproject.toml:image/requirements.lock builder/requirements.in:builder/requirements.lock; do
  step "uv pip compile ${pair%%:*} -> ${pair##*:}"
  "$uv" pip compile --quiet --generate-hashes --no-strip-markers "${target[@]}" \
    --custom-compile-command "scripts/lock.sh" -o "${pair##*:}" "${pair%%:*}" ${UPGRADE:+--upgrade}
done
step "Locks written (UPGRADE=1 scripts/lock.sh takes the newest allowed versions)"
