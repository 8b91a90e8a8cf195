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

# py_tool NAME VERSION: a PyPI tool in its own venv under $TOOLS/py, path of its bin/. The venv is
# made with the machine's python3, whose bundled pip may be too old for the lock (pip 23.2 does not
# match `cachecontrol[filecache]>=…` to a hashed `cachecontrol==…` line): so its pip is first brought
# to scripts/locks/pip.lock, then the tool installs from scripts/locks/NAME.lock (hashed, made by
# scripts/lock.sh). A stamp of both locks marks a finished install: a changed lock, or an install
# that failed halfway, makes a new venv, and a failed install stops the caller with pip's reason.
py_tool() {
  local dir="$TOOLS/py/$1-$2" lock="$REPO/scripts/locks/$1.lock" pins="$REPO/scripts/locks/pip.lock" stamp
  [ -f "$lock" ] || die "py_tool $1: no lock $lock (scripts/lock.sh writes it)"
  stamp="$(cat "$pins" "$lock" | sha256sum | cut -c1-16)"
  if [ "$(cat "$dir/.pyfunc-lock" 2>/dev/null)" != "$stamp" ] || [ ! -x "$dir/bin/$1" ]; then
    step "Installing $1==$2 (PyPI, from scripts/locks/$1.lock) into $dir" >&2
    rm -rf "$dir"
    python3 -m venv "$dir" >&2 &&
      "$dir/bin/python" -m pip install -q --disable-pip-version-check --require-hashes -r "$pins" >&2 &&
      "$dir/bin/python" -m pip install -q --disable-pip-version-check --require-hashes -r "$lock" >&2 &&
      [ -x "$dir/bin/$1" ] || { rm -rf "$dir"; die "installing $1 from scripts/locks/$1.lock failed (see above)"; }
    echo "$stamp" >"$dir/.pyfunc-lock"
  fi
  echo "$dir/bin"
}

# pip_check_sdk2 VENV: `pip check` of a venv that holds cloudevents 2.x on purpose (.venv-sdk2,
# .venv-asgi: func-python needs 2.x). pyfunc-invoker's own `cloudevents<2` (pyproject says why) is
# the one conflict allowed; any other stops the caller with pip's words.
pip_check_sdk2() {
  local conflicts
  conflicts="$("$1/bin/python" -m pip check 2>&1 |
    grep -v '^pyfunc-invoker [^ ]* has requirement cloudevents[^ ]*, but you have cloudevents 2\.' || true)"
  [ -z "$conflicts" ] || [ "$conflicts" = "No broken requirements found." ] || die "pip check in $1: $conflicts"
}

# hash_of PATH...: a short hash of the files under PATHs (of the repo), for the images' input labels.
hash_of() { (cd "$REPO" && find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 |
  sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }
# label_of IMAGE: the input hash an image was built from (empty if there is no such image).
label_of() { docker image inspect -f "{{index .Config.Labels \"io.pyfunc.inputs\"}}" "$1" 2>/dev/null || true; }

# root_image SUITE [PACKAGE...]: pyfunc/rootfs:SUITE, a debootstrapped minimal Debian with python3,
# CA certificates and the PACKAGEs, `docker import`ed; prints its name. Made once: the tar is cached
# in $CACHE (named after SUITE and PACKAGEs) and the image is re-imported only when the tar changes.
# Shared by build-images.sh (the images' root) and test-pythons.sh (one root per Debian release).
root_image() {
  local suite="$1" extra; shift; extra="$(IFS=,; echo "$*")"
  local tar="$CACHE/rootfs-$suite${extra:++${extra//,/+}}.tar" image="pyfunc/rootfs:$suite" root mirror script inputs
  if [ ! -s "$tar" ]; then
    step "Making the $suite root filesystem with debootstrap (about a minute)" >&2
    mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
    [ -n "$mirror" ] || mirror="$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
    [ -n "$mirror" ] || die "no Debian mirror found in the host's apt sources"
    # A release newer than the host's debootstrap has no script of its own: testing's rules are sid's.
    script="/usr/share/debootstrap/scripts/$suite"
    [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
    root="$(mktemp -d)"
    debootstrap --variant=minbase --include="python3,ca-certificates${extra:+,$extra}" "$suite" "$root" "$mirror" "$script" \
      >"$CACHE/debootstrap-$suite.log" 2>&1 || { tail -20 "$CACHE/debootstrap-$suite.log" >&2; die "debootstrap $suite failed"; }
    # Trim what a function runtime never reads: filesystem tools, docs, locales, apt lists, pydoc topics.
    chroot "$root" dpkg --purge e2fsprogs logsave libss2 libext2fs2 >/dev/null 2>&1 || true
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
      "$root"/usr/share/lintian "$root"/var/log/* "$root"/usr/lib/x86_64-linux-gnu/gconv/*.so \
      "$root"/usr/lib/python3.*/pydoc_data/topics.py "$root"/usr/lib/python3.*/pydoc_data/__pycache__
    tar -C "$root" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$root"
  fi
  inputs="$(stat -c '%s-%Y' "$tar")${extra:+-$extra}"
  if [ "$(label_of "$image")" != "$inputs" ]; then
    step "Importing $image" >&2
    docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'CMD ["/bin/bash"]' -c "LABEL io.pyfunc.inputs=$inputs" "$tar" "$image" >/dev/null
  fi
  echo "$image"
}
