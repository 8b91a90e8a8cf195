# Shared by the scripts in this folder: cache paths, pinned versions, docker client settings.
# shellcheck shell=bash
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PYFUNC_CACHE:-$HOME/.cache/pyfunc}"
TOOLS="$CACHE/tools"
# shellcheck source=versions.env
source "$REPO/scripts/versions.env"
export PATH="$TOOLS/bin:$PATH"
# Debian 12's engine speaks API 1.41; a newer client elsewhere on PATH must talk down to it.
export DOCKER_API_VERSION="${DOCKER_API_VERSION:-1.41}"
# pack names its build-cache volumes from this key; unset (inside a container) it picks a new one
# per build, and cached layers (the function's dependencies) would never be reused.
export PACK_VOLUME_KEY="${PACK_VOLUME_KEY:-pyfunc-local}"
mkdir -p "$TOOLS/bin"

step() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# py_tool NAME VERSION: a PyPI tool in its own venv under $TOOLS/py (installed once), path of its bin/.
# With scripts/locks/NAME.lock (hashed, made by scripts/lock.sh) its dependencies are pinned too, so
# a release upstream cannot change what CI runs.
py_tool() {
  local dir="$TOOLS/py/$1-$2" lock="$REPO/scripts/locks/$1.lock"
  local spec=("$1==$2")
  [ -f "$lock" ] && spec=(--require-hashes -r "$lock")
  if [ ! -x "$dir/bin/$1" ]; then
    step "Installing $1==$2 (PyPI) into $dir" >&2
    rm -rf "$dir"; python3 -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "${spec[@]}" >&2
  fi
  echo "$dir/bin"
}
