#!/usr/bin/env bash
# Install the container tools pyfunc needs, into ${PYFUNC_CACHE:-~/.cache/pyfunc}/tools:
# Docker (Debian's docker.io, daemon started here), pack and the CNB lifecycle (built from the
# Go module proxy at the versions in versions.env) and the Knative schema validator (npm). The
# e2e's Knative parts are scripts/install-knative.sh's (scripts/test.sh runs both).
# Idempotent: a second run finds everything in place and only checks it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# --- Docker -----------------------------------------------------------------------------
apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if ! [ -x /usr/sbin/dockerd ] || ! [ -x /usr/sbin/debootstrap ]; then
  step "Installing docker.io and debootstrap from Debian"
  apt_install docker.io debootstrap ca-certificates
fi
command -v curl >/dev/null || apt_install curl                  # scripts/demo.sh
command -v npm >/dev/null || apt_install nodejs npm             # the Knative schema validator
# Debian's client matches its daemon; prefer it over any newer client found earlier on PATH.
ln -sf /usr/bin/docker "$TOOLS/bin/docker"

# A live (not zombie) process with this pid and command name?
running() { [ "$(ps -o comm=,stat= -p "$1" 2>/dev/null | awk '$2 !~ /^Z/ {print $1}')" = "$2" ]; }
if ! docker info >/dev/null 2>&1; then
  step "Starting dockerd (log: $CACHE/dockerd.log)"
  # Pid files left by a daemon that was killed (end of a session) would stop it from starting.
  for pf in /var/run/docker.pid:dockerd /var/run/docker/containerd/containerd.pid:containerd; do
    f="${pf%%:*}"
    if [ -f "$f" ] && ! running "$(cat "$f")" "${pf##*:}"; then rm -f "$f"; fi
  done
  setsid nohup /usr/sbin/dockerd >"$CACHE/dockerd.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { tail -20 "$CACHE/dockerd.log"; die "dockerd did not come up"; }
fi
note "docker $(docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}})')"

# --- Go toolchain -----------------------------------------------------------------------
GO="$(command -v go || true)"; [ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || die "Go not found (need go >= 1.25 on PATH or in /usr/local/go)"
export GOFLAGS="-buildvcs=false" CGO_ENABLED=0
# Only the module proxy is reachable, not the checksum database: trust the pinned tags of the two
# top-level modules; every dependency is still checked against their go.sum.
export GONOSUMDB="github.com/buildpacks/pack,github.com/buildpacks/lifecycle"

# --- pack -------------------------------------------------------------------------------
if [ "$(pack version 2>/dev/null)" != "$PACK_VERSION" ]; then
  step "Building pack v$PACK_VERSION from the Go module proxy (several minutes cold)"
  # pack's go.mod has a replace directive, so `go install pack@v` is refused: build in its module.
  dir="$("$GO" mod download -json "github.com/buildpacks/pack@v$PACK_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$dir" ] || die "go mod download of pack v$PACK_VERSION failed"
  (cd "$dir" && "$GO" build -trimpath -o "$TOOLS/bin/pack" \
    -ldflags "-s -w -X github.com/buildpacks/pack/pkg/client.Version=$PACK_VERSION" .)
fi
note "pack $(pack version)"

# --- lifecycle + launcher, packed as the tarball builder.toml points at ---------------------
LC_DIR="$TOOLS/lifecycle-v$LIFECYCLE_VERSION"
LC_TGZ="$TOOLS/lifecycle-v$LIFECYCLE_VERSION+linux.x86-64.tgz"
if [ ! -s "$LC_TGZ" ] || [ "$("$LC_DIR/lifecycle/lifecycle" -version 2>/dev/null)" != "$LIFECYCLE_VERSION" ]; then
  step "Building lifecycle v$LIFECYCLE_VERSION from the Go module proxy"
  rm -rf "$LC_DIR"; mkdir -p "$LC_DIR/lifecycle"
  # Built inside its module (like pack): `go install pkg@v` would probe sub-module paths first.
  dir="$("$GO" mod download -json "github.com/buildpacks/lifecycle@v$LIFECYCLE_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$dir" ] || die "go mod download of lifecycle v$LIFECYCLE_VERSION failed"
  for cmd in lifecycle launcher; do
    (cd "$dir" && "$GO" build -trimpath -o "$LC_DIR/lifecycle/$cmd" \
      -ldflags "-s -w -X github.com/buildpacks/lifecycle/cmd.Version=$LIFECYCLE_VERSION" "./cmd/$cmd")
  done
  for phase in detector analyzer restorer builder exporter rebaser creator extender; do
    ln -sf lifecycle "$LC_DIR/lifecycle/$phase"
  done
  cat >"$LC_DIR/lifecycle.toml" <<TOML
[apis]
[apis.buildpack]
  deprecated = []
  supported = ["0.7", "0.8", "0.9", "0.10", "0.11"]
[apis.platform]
  deprecated = []
  supported = ["0.7", "0.8", "0.9", "0.10", "0.11", "0.12", "0.13", "0.14"]

[lifecycle]
  version = "$LIFECYCLE_VERSION"
TOML
  tar -C "$LC_DIR" --owner=0 --group=0 -czf "$LC_TGZ.tmp" lifecycle.toml lifecycle
  mv "$LC_TGZ.tmp" "$LC_TGZ"
fi
note "lifecycle $LC_TGZ"

# --- Knative Service schema validator (npm) ---------------------------------------------------
NPM_DIR="$TOOLS/npm"
if [ ! -f "$NPM_DIR/node_modules/@kubernetes-models/knative/package.json" ] ||
   ! grep -q "\"version\": \"$KNATIVE_MODELS_VERSION\"" "$NPM_DIR/node_modules/@kubernetes-models/knative/package.json"; then
  step "Installing @kubernetes-models/knative@$KNATIVE_MODELS_VERSION (npm)"
  mkdir -p "$NPM_DIR"
  npm install --silent --no-audit --no-fund --prefix "$NPM_DIR" \
    "@kubernetes-models/knative@$KNATIVE_MODELS_VERSION" "js-yaml@$JS_YAML_VERSION" 2>&1 | grep -v 'npm warn' || true
fi
note "knative validator in $NPM_DIR"
step "Tools ready (the Knative parts the e2e also runs: scripts/install-knative.sh)"
