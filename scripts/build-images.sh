#!/usr/bin/env bash
# Build pyfunc's images locally, without a registry, one stack per Python of STACKS (versions.env):
#   pyfunc/rootfs:SUITE     debootstrap'd Debian with python3, `docker import`ed (root_image in lib.sh)
#   pyfunc/base:X.Y         image/Dockerfile: the runtime, no shell (also the builder's run image)
#   pyfunc/build:X.Y        builder/build.Dockerfile: rootfs + base's venv + pip/uv/poetry/cyclonedx
#   pyfunc/builder:X.Y      `pack builder create` with buildpack/ and the local lifecycle
# The default stack (PYTHON_VERSION) is also tagged without a version: pyfunc/base, pyfunc/builder.
# Usage: scripts/build-images.sh [X.Y ...] (default: every stack).
# Each step is skipped when its inputs are unchanged (labels keep input hashes), so a re-run is cheap.
# Needs scripts/install-tools.sh first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
docker info >/dev/null 2>&1 || die "docker is not running: run scripts/install-tools.sh first"
command -v pack >/dev/null || die "pack not found: run scripts/install-tools.sh first"
LC_TGZ="$TOOLS/lifecycle-v$LIFECYCLE_VERSION+linux.x86-64.tgz"
[ -s "$LC_TGZ" ] || die "lifecycle tarball missing: run scripts/install-tools.sh"

# --- wheelhouses, from the hashed locks (pip verifies every wheel's sha256) ---------------------
# context/pyX.Y/base:  the image lock's wheels, the pyfunc-invoker wheel (this repo), pip's wheel
# context/pyX.Y/build: the builder lock's wheels (pip, cyclonedx-bom, uv, poetry and their dependencies)
# Wheels already there are kept (pip download skips them), so only a changed lock downloads.
# --no-deps: the lock is complete for that Python, and pip would judge its dependencies' markers
# (python_version < "3.12", say) by the host's Python, not the target's.
download() {  # download LOCK DIR PYTHON: every wheel the lock names, for that Python
  python3 -m pip download --quiet --disable-pip-version-check -d "$2" --require-hashes --no-deps -r "$1" \
    --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --implementation cp --python-version "$3"
}
prune() {  # prune LOCK DIR: drop wheels an older lock left (they would change the build context)
  local whl name
  for whl in "$2"/*.whl; do
    name="$(basename "$whl" | cut -d- -f1-2 | tr 'A-Z_' 'a-z-')"   # e.g. typing-extensions-4.16.0
    grep -q "^${name%-*}==${name##*-} " "$1" || rm -f "$whl"
  done
}
runtime_hash="$(hash_of runtime pyproject.toml)"
WHEEL_DIR="$CACHE/context/pyfunc-wheel"
if [ "$(cat "$WHEEL_DIR/.runtime" 2>/dev/null)" != "$runtime_hash" ] || ! ls "$WHEEL_DIR"/pyfunc_invoker-*.whl >/dev/null 2>&1; then
  step "Building the pyfunc-invoker wheel (runtime/ changed or first run)"   # pure Python: one for all stacks
  rm -rf "$WHEEL_DIR"; mkdir -p "$WHEEL_DIR"
  # pip builds in the tree, and setuptools keeps build/lib between builds: a module since removed
  # from runtime/ (pyfunc/_waitress.py, now a package) would still be packed into the wheel.
  rm -rf "$REPO/build"
  python3 -m pip wheel --quiet --disable-pip-version-check --no-deps --no-cache-dir -w "$WHEEL_DIR" "$REPO"
  echo "$runtime_hash" >"$WHEEL_DIR/.runtime"
fi

# stack VERSION SUITE DEBIAN_VERSION: pyfunc/base:VERSION, pyfunc/build:VERSION, pyfunc/builder:VERSION.
stack() {
  local version="$1" suite="$2" distro_version="$3" suffix="" start=$SECONDS
  [ "$version" = "$PYTHON_VERSION" ] || suffix="-$version"
  local image_lock="image/requirements$suffix.lock" builder_lock="builder/requirements$suffix.lock"
  local ctx="$CACHE/context/py$version" root base="pyfunc/base:$version" build="pyfunc/build:$version"
  local builder="pyfunc/builder:$version" root_id base_id build_id inputs
  [ -f "$REPO/$image_lock" ] && [ -f "$REPO/$builder_lock" ] || die "no $image_lock or $builder_lock: run scripts/lock.sh"
  root="$(root_image "$suite")"

  local locks_hash; locks_hash="$(hash_of "$image_lock" "$builder_lock")"
  if [ "$(cat "$ctx/.locks" 2>/dev/null)" != "$locks_hash" ]; then
    step "Downloading the locked wheels for Python $version ($image_lock, $builder_lock)"
    mkdir -p "$ctx/base/wheelhouse" "$ctx/build/wheelhouse"
    download "$REPO/$builder_lock" "$ctx/build/wheelhouse" "$version"
    download "$REPO/$image_lock" "$ctx/base/wheelhouse" "$version"
    prune "$REPO/$builder_lock" "$ctx/build/wheelhouse"
    prune "$REPO/$image_lock" "$ctx/base/wheelhouse"
    rm -f "$ctx"/base/wheelhouse/pip-*.whl && cp "$ctx"/build/wheelhouse/pip-*.whl "$ctx/base/wheelhouse/"
    echo "$locks_hash" >"$ctx/.locks"
  fi
  rm -f "$ctx"/base/wheelhouse/pyfunc_invoker-*.whl && cp "$WHEEL_DIR"/pyfunc_invoker-*.whl "$ctx/base/wheelhouse/"
  cp "$REPO/$image_lock" "$ctx/base/requirements.lock" && cp "$REPO/image/slim.py" "$ctx/base/"
  cp "$REPO/$builder_lock" "$ctx/build/requirements.lock"

  # pyfunc/base: the runtime venv on a stripped root (no shell). pyfunc/build: the full Debian root
  # (shell, apt) + the very same venv copied from pyfunc/base + the build tools.
  root_id="$(docker image inspect -f '{{.Id}}' "$root" | cut -c8-19)"
  inputs="$root_id-$runtime_hash-$(hash_of image/Dockerfile image/slim.py "$image_lock")"
  if [ "$(label_of "$base")" != "$inputs" ]; then
    step "Building $base (image/Dockerfile on $suite)"
    docker build -q -f "$REPO/image/Dockerfile" --build-arg "BASE_IMAGE=$root" --build-arg "DISTRO_VERSION=$distro_version" \
      --label "io.pyfunc.inputs=$inputs" -t "$base" "$ctx/base" >/dev/null
  fi
  base_id="$(docker image inspect -f '{{.Id}}' "$base" | cut -c8-19)"
  inputs="$root_id-$base_id-$(hash_of builder/build.Dockerfile "$builder_lock")"
  if [ "$(label_of "$build")" != "$inputs" ]; then
    step "Building $build (builder/build.Dockerfile)"
    docker build -q -f "$REPO/builder/build.Dockerfile" --build-arg "ROOT_IMAGE=$root" --build-arg "RUN_IMAGE=$base" \
      --build-arg "DISTRO_VERSION=$distro_version" --label "io.pyfunc.inputs=$inputs" -t "$build" "$ctx/build" >/dev/null
  fi

  build_id="$(docker image inspect -f '{{.Id}}' "$build" | cut -c8-19)"
  inputs="$base_id-$build_id-$(hash_of buildpack builder/builder.toml)-$LIFECYCLE_VERSION-$PACK_VERSION"
  if [ "$(label_of "$builder")" != "$inputs" ]; then
    step "Creating $builder with pack (buildpack/, lifecycle v$LIFECYCLE_VERSION)"
    sed -e "s|@BUILDPACK@|$REPO/buildpack|" -e "s|@LIFECYCLE@|$LC_TGZ|" -e "s|@BUILD_IMAGE@|$build|" \
      -e "s|@RUN_IMAGE@|$base|" "$REPO/builder/builder.toml" >"$CACHE/builder-$version.toml"
    pack builder create "$builder-tmp" --config "$CACHE/builder-$version.toml" --pull-policy never \
      >"$CACHE/builder-create-$version.log" 2>&1 || { cat "$CACHE/builder-create-$version.log"; die "pack builder create failed"; }
    # Stamp the inputs so an unchanged re-run skips this step.
    echo "FROM $builder-tmp" | docker build -q --label "io.pyfunc.inputs=$inputs" -t "$builder" - >/dev/null
    docker rmi "$builder-tmp" >/dev/null
  fi
  if [ "$version" = "$PYTHON_VERSION" ]; then  # the default stack, untagged too
    docker tag "$base" pyfunc/base && docker tag "$build" pyfunc/build && docker tag "$builder" pyfunc/builder
  fi
  note "Python $version ($suite): $(docker image inspect -f '{{.Size}}' "$base" | awk '{printf "%.1f MB", $1/1e6}') $base," \
    "$(docker image inspect -f '{{.Size}}' "$build" | awk '{printf "%.1f MB", $1/1e6}') $build, $((SECONDS - start)) s"
}

wanted=()
for entry in $STACKS; do
  [ $# -eq 0 ] || [[ " $* " == *" ${entry%%:*} "* ]] && wanted+=("$entry")
done
# The roots first, two at a time: a cold debootstrap is mostly waiting on the mirror.
for entry in "${wanted[@]}"; do
  IFS=: read -r _ suite _ <<<"$entry"
  [ "$(jobs -rp | wc -l)" -lt 2 ] || wait -n || true
  root_image "$suite" >/dev/null &
done
wait
for entry in "${wanted[@]}"; do
  IFS=: read -r version suite distro_version <<<"$entry"
  stack "$version" "$suite" "$distro_version"   # makes any root that failed above, or dies
done
# Drop our own superseded images (dangling, labelled by this script).
docker image prune -f --filter label=io.pyfunc.inputs >/dev/null
step "Images ready: pyfunc/base, pyfunc/build, pyfunc/builder (:$(for e in $STACKS; do printf '%s ' "${e%%:*}"; done | sed 's/ $//;s/ /, :/g'))"
