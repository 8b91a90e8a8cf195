#!/usr/bin/env bash
# Build pyfunc's images locally, without a registry:
#   pyfunc/rootfs:bookworm  debootstrap'd Debian with python3, `docker import`ed (root_image in lib.sh)
#   pyfunc/base             image/Dockerfile: the runtime, no shell (also the builder's run image)
#   pyfunc/build            builder/build.Dockerfile: rootfs + base's venv + pip/cyclonedx, the build image
#   pyfunc/builder          `pack builder create` with buildpack/ and the local lifecycle
# Each step is skipped when its inputs are unchanged (labels keep input hashes), so a re-run is cheap.
# Needs scripts/install-tools.sh first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
docker info >/dev/null 2>&1 || die "docker is not running: run scripts/install-tools.sh first"
command -v pack >/dev/null || die "pack not found: run scripts/install-tools.sh first"

# --- root image (scripts/lib.sh: debootstrap once, cached as a tar and an image) ----------------
ROOT_IMAGE="$(root_image "$DEBIAN_SUITE")"

# --- wheelhouses, from the hashed locks (pip verifies every wheel's sha256) ---------------------
# context/base:  image/requirements.lock's wheels, the pyfunc-invoker wheel (this repo), pip's wheel
# context/build: builder/requirements.lock's wheels (pip, cyclonedx-bom and their dependencies)
# Wheels already there are kept (pip download skips them), so only a changed lock downloads.
download() {  # download LOCK DIR: every wheel the lock names, for the images' Python
  python3 -m pip download --quiet --disable-pip-version-check -d "$2" --require-hashes -r "$1" \
    --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --implementation cp --python-version "$PYTHON_VERSION"
}
prune() {  # prune LOCK DIR: drop wheels an older lock left (they would change the build context)
  local whl name
  for whl in "$2"/*.whl; do
    name="$(basename "$whl" | cut -d- -f1-2 | tr 'A-Z_' 'a-z-')"   # e.g. typing-extensions-4.16.0
    grep -q "^${name%-*}==${name##*-} " "$1" || rm -f "$whl"
  done
}
BASE_CTX="$CACHE/context/base" BUILD_CTX="$CACHE/context/build"
locks_hash="$(hash_of image/requirements.lock builder/requirements.lock)-$PYTHON_VERSION"
if [ "$(cat "$CACHE/context/.locks" 2>/dev/null)" != "$locks_hash" ]; then
  step "Downloading the locked wheels (image/requirements.lock, builder/requirements.lock)"
  rm -rf "$CACHE/context/wheelhouse"  # the layout before the locks
  mkdir -p "$BASE_CTX/wheelhouse" "$BUILD_CTX/wheelhouse"
  download "$REPO/builder/requirements.lock" "$BUILD_CTX/wheelhouse"
  download "$REPO/image/requirements.lock" "$BASE_CTX/wheelhouse"
  prune "$REPO/builder/requirements.lock" "$BUILD_CTX/wheelhouse"
  prune "$REPO/image/requirements.lock" "$BASE_CTX/wheelhouse"
  rm -f "$BASE_CTX"/wheelhouse/pip-*.whl && cp "$BUILD_CTX"/wheelhouse/pip-*.whl "$BASE_CTX/wheelhouse/"
  echo "$locks_hash" >"$CACHE/context/.locks"
fi
runtime_hash="$(hash_of runtime pyproject.toml)"
if [ "$(cat "$BASE_CTX/.runtime" 2>/dev/null)" != "$runtime_hash" ] || ! ls "$BASE_CTX"/wheelhouse/pyfunc_invoker-*.whl >/dev/null 2>&1; then
  step "Building the pyfunc-invoker wheel (runtime/ changed or first run)"
  rm -f "$BASE_CTX"/wheelhouse/pyfunc_invoker-*.whl
  python3 -m pip wheel --quiet --disable-pip-version-check --no-deps --no-cache-dir -w "$BASE_CTX/wheelhouse" "$REPO"
  echo "$runtime_hash" >"$BASE_CTX/.runtime"
fi
cp "$REPO/image/requirements.lock" "$REPO/image/slim.py" "$BASE_CTX/"
cp "$REPO/builder/requirements.lock" "$BUILD_CTX/"

# --- base and build images ---------------------------------------------------------------------
# pyfunc/base: the runtime venv on a stripped root (no shell). pyfunc/build: the full Debian root
# (shell, apt) + the very same venv copied from pyfunc/base + the build tools.
root_id="$(docker image inspect -f '{{.Id}}' "$ROOT_IMAGE" | cut -c8-19)"
base_inputs="$root_id-$runtime_hash-$(hash_of image/Dockerfile image/slim.py image/requirements.lock)"
if [ "$(label_of pyfunc/base)" != "$base_inputs" ]; then
  step "Building pyfunc/base (image/Dockerfile)"
  docker build -q -f "$REPO/image/Dockerfile" --build-arg "BASE_IMAGE=$ROOT_IMAGE" \
    --label "io.pyfunc.inputs=$base_inputs" -t pyfunc/base "$BASE_CTX" >/dev/null
fi
note "pyfunc/base $(docker image inspect -f '{{.Size}}' pyfunc/base | awk '{printf "%.1f MB", $1/1e6}')"

base_id="$(docker image inspect -f '{{.Id}}' pyfunc/base | cut -c8-19)"
build_inputs="$root_id-$base_id-$(hash_of builder/build.Dockerfile builder/requirements.lock)"
if [ "$(label_of pyfunc/build)" != "$build_inputs" ]; then
  step "Building pyfunc/build (builder/build.Dockerfile)"
  docker build -q -f "$REPO/builder/build.Dockerfile" --build-arg "ROOT_IMAGE=$ROOT_IMAGE" \
    --build-arg RUN_IMAGE=pyfunc/base --label "io.pyfunc.inputs=$build_inputs" -t pyfunc/build "$BUILD_CTX" >/dev/null
fi

# --- builder ------------------------------------------------------------------------------------
LC_TGZ="$TOOLS/lifecycle-v$LIFECYCLE_VERSION+linux.x86-64.tgz"
[ -s "$LC_TGZ" ] || die "lifecycle tarball missing: run scripts/install-tools.sh"
build_id="$(docker image inspect -f '{{.Id}}' pyfunc/build | cut -c8-19)"
builder_inputs="$base_id-$build_id-$(hash_of buildpack builder/builder.toml)-$LIFECYCLE_VERSION-$PACK_VERSION"
if [ "$(label_of pyfunc/builder)" != "$builder_inputs" ]; then
  step "Creating pyfunc/builder with pack (buildpack/, lifecycle v$LIFECYCLE_VERSION)"
  sed -e "s|@BUILDPACK@|$REPO/buildpack|" -e "s|@LIFECYCLE@|$LC_TGZ|" \
    "$REPO/builder/builder.toml" >"$CACHE/builder.toml"
  pack builder create pyfunc/builder:tmp --config "$CACHE/builder.toml" --pull-policy never \
    >"$CACHE/builder-create.log" 2>&1 || { cat "$CACHE/builder-create.log"; die "pack builder create failed"; }
  # Stamp the inputs so an unchanged re-run skips this step.
  echo "FROM pyfunc/builder:tmp" | docker build -q --label "io.pyfunc.inputs=$builder_inputs" \
    -t pyfunc/builder - >/dev/null
  docker rmi pyfunc/builder:tmp >/dev/null
fi
# Drop our own superseded images (dangling, labelled by this script).
docker image prune -f --filter label=io.pyfunc.inputs >/dev/null
step "Images ready: pyfunc/base, pyfunc/build, pyfunc/builder"
