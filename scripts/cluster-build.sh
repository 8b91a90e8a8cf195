#!/usr/bin/env bash
# Build every binary of the single-node Kubernetes + Knative cluster of scripts/cluster.sh from the Go
# module proxy alone (no registry, no release downloads), pinned in scripts/versions.env, into
# ${PYFUNC_CACHE:-~/.cache/pyfunc}/cluster/bin. Cached: each binary has a stamp (its version, Go's
# version, the package) and is rebuilt only when that changes; Go's build cache is shared, so a
# rebuild is seconds. Cold it is the long part (~25-35 min of wall time on a busy 2-core machine,
# kube-apiserver alone ~8 min): scripts/test.sh runs it in the background while other suites run.
#   scripts/cluster-build.sh          build everything (idempotent)
#   scripts/cluster-build.sh --check  exit 0 only if everything is built and fresh
# A module the proxy refuses or a build that fails stops it with one line naming the part.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

GO="$(command -v go || true)"; [ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || die "Go not found: install go >= 1.24 (on PATH or in /usr/local/go)"
# Only the module proxy is reachable here, not the checksum database. Every version is pinned, and
# each upstream module's own go.sum checks its dependencies; the staging modules Kubernetes pins
# by replace (and etcd's own submodules) have no go.sum lines, hence no checksum database for them.
export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 GOSUMDB=off GOTOOLCHAIN=local
CL="$CACHE/cluster"; SRC="$CL/src"; BIN="$CL/bin"; mkdir -p "$SRC" "$BIN"
GOVER="$("$GO" env GOVERSION)"
CHECK=0; [ "${1:-}" = --check ] && CHECK=1
STALE=0

fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

# stamp NAME MOD VER PKG: what bin/NAME must have been built from.
stamp() { echo "$2@$3 $4 $GOVER build-3"; }
fresh() { [ -x "$BIN/$1" ] && [ "$(cat "$BIN/$1.stamp" 2>/dev/null)" = "$(stamp "$@")" ]; }

# module_copy MOD VER: a writable copy of MOD@VER out of the module cache (go install is refused for
# modules with replace directives; some ship stub vendor/ trees), printed as a path.
module_copy() {
  local mod="$1" ver="$2" dest dir
  dest="$SRC/$(echo "$mod" | tr '/' '_')@$ver"
  if [ ! -f "$dest/.pyfunc-copied" ]; then
    dir="$("$GO" mod download -json "$mod@$ver" 2>"$CL/download.err" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')" || true
    [ -n "$dir" ] && [ -d "$dir" ] ||
      fail "the Go module proxy refused $mod@$ver ($(tail -c 200 "$CL/download.err" | tr '\n' ' ')): pin a version it serves in scripts/versions.env"
    rm -rf "$dest" "$dest.tmp"; cp -r "$dir" "$dest.tmp"; chmod -R u+w "$dest.tmp"
    rm -rf "$dest.tmp/vendor" "$dest.tmp/go.work" "$dest.tmp/go.work.sum"
    touch "$dest.tmp/.pyfunc-copied"; mv "$dest.tmp" "$dest"
  fi
  echo "$dest"
}

# drop_local_replaces DIR VER [DROP...]: in DIR's go.mod, every `replace X => ./local/path` is dropped
# and X (when required) required at VER instead (the published release of that submodule); DROP modules (refused by
# the proxy and not needed by what we build) are removed from the requirements.
drop_local_replaces() {
  local dir="$1" ver="$2"; shift 2
  local args
  args="$(cd "$dir" && "$GO" mod edit -json | python3 -c '
import json, sys
ver, drop = sys.argv[1], set(sys.argv[2:])
mod = json.load(sys.stdin)
out = []
required = {req["Path"] for req in mod.get("Require") or []}
for r in mod.get("Replace") or []:
    old, new = r["Old"]["Path"], r["New"]["Path"]
    # Replaces of modules nothing requires (the ./FORBIDDEN_DEPENDENCY guards of etcd) stay.
    if (new.startswith("./") or new.startswith("../")) and old in required:
        out.append("-dropreplace=" + old)
        if old not in drop:
            out.append("-require=%s@%s" % (old, ver))
for req in mod.get("Require") or []:
    if req["Path"] in drop:
        out.append("-droprequire=" + req["Path"])
print(" ".join(out))
' "$ver" "$@")"
  # shellcheck disable=SC2086
  [ -z "$args" ] || (cd "$dir" && "$GO" mod edit $args)
}

# build NAME MOD VER PKG DIR [LDFLAGS]: go build DIR/PKG into bin/NAME unless fresh.
build() {
  local name="$1" mod="$2" ver="$3" pkg="$4" dir="$5" ldflags="${6:-}" start=$SECONDS lock
  fresh "$name" "$mod" "$ver" "$pkg" && return 0
  if [ "$CHECK" = 1 ]; then STALE=1; return 0; fi
  # One build of a binary at a time (two runs of this script, e.g. CI's background one and an
  # `up`, wait for each other instead of building it twice).
  exec {lock}>"$BIN/$name.lock"; flock "$lock"
  if fresh "$name" "$mod" "$ver" "$pkg"; then exec {lock}>&-; return 0; fi
  step "Building $name ($mod@$ver ./$pkg)"
  (cd "$dir" && "$GO" build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$name.tmp.$$" "./$pkg") \
    >"$CL/build-$name.log" 2>&1 || { tail -15 "$CL/build-$name.log" >&2; rm -f "$BIN/$name.tmp.$$"; fail "building $name ($mod@$ver ./$pkg) failed: see $CL/build-$name.log"; }
  mv "$BIN/$name.tmp.$$" "$BIN/$name"; stamp "$name" "$mod" "$ver" "$pkg" >"$BIN/$name.stamp"
  exec {lock}>&-
  note "$name built in $((SECONDS - start)) s"
}


# --- Kubernetes: the staging modules are replaced by ./staging/src/k8s.io/* in its go.mod, which the
# module zip does not contain; require the published k8s.io/*@v0.MINOR.PATCH instead.
k8s() {
  local mod=k8s.io/kubernetes ver="v$K8S_VERSION" dir minor vpkg ld name
  local names=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
  local need=0; for name in "${names[@]}"; do fresh "$name" "$mod" "$ver" "cmd/$name" || need=1; done
  [ "$need" = 1 ] || return 0
  [ "$CHECK" = 1 ] && { STALE=1; return 0; }
  dir="$(module_copy "$mod" "$ver")"
  if [ ! -f "$dir/.pyfunc-edited" ]; then
    drop_local_replaces "$dir" "v0.${K8S_VERSION#1.}" k8s.io/sample-cli-plugin k8s.io/sample-controller
    touch "$dir/.pyfunc-edited"
  fi
  minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"
  # Without these --version says v0.0.0 and clients refuse version-gated features.
  ld=""
  for vpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $vpkg.gitVersion=$ver -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
    ld+=" -X $vpkg.buildDate=1970-01-01T00:00:00Z"
  done
  for name in "${names[@]}"; do build "$name" "$mod" "$ver" "cmd/$name" "$dir" "$ld"; done
}

# --- etcd: the server module replaces its sibling modules (api, client/pkg, client/v3, pkg) by ../*.
etcd() {
  local mod=go.etcd.io/etcd/server/v3 ver="v$ETCD_VERSION" dir
  fresh etcd "$mod" "$ver" . && return 0
  [ "$CHECK" = 1 ] && { STALE=1; return 0; }
  dir="$(module_copy "$mod" "$ver")"
  if [ ! -f "$dir/.pyfunc-edited" ]; then drop_local_replaces "$dir" "$ver"; touch "$dir/.pyfunc-edited"; fi
  build etcd "$mod" "$ver" . "$dir"
}

# --- CoreDNS: no replaces; its default plugin set (kubernetes, forward, cache...).
coredns() {
  local mod=github.com/coredns/coredns ver="v$COREDNS_VERSION"
  fresh coredns "$mod" "$ver" . && return 0
  [ "$CHECK" = 1 ] && { STALE=1; return 0; }
  build coredns "$mod" "$ver" . "$(module_copy "$mod" "$ver")"
}

# --- Knative Serving and Eventing, each command a pod image (FROM scratch) in the cluster.
knative() {
  local mod="$1" ver="$2" prefix="$3"; shift 3
  local pkg name need=0
  for pkg in "$@"; do name="$prefix-$(basename "$pkg")"; fresh "$name" "$mod" "$ver" "$pkg" || need=1; done
  [ "$need" = 1 ] || return 0
  [ "$CHECK" = 1 ] && { STALE=1; return 0; }
  local dir; dir="$(module_copy "$mod" "$ver")"
  for pkg in "$@"; do build "$prefix-$(basename "$pkg")" "$mod" "$ver" "$pkg" "$dir"; done
}

# --- Traefik: the KIngress implementation (its knative provider), pure Go.
traefik() {
  local mod=github.com/traefik/traefik/v3 ver="v$TRAEFIK_VERSION"
  fresh traefik "$mod" "$ver" cmd/traefik && return 0
  [ "$CHECK" = 1 ] && { STALE=1; return 0; }
  build traefik "$mod" "$ver" cmd/traefik "$(module_copy "$mod" "$ver")" \
    "-X github.com/traefik/traefik/v3/pkg/version.Version=$ver"
}

# --- ours: the pods' pause container (holds the network namespace until SIGTERM).
pause() {
  local dir="$REPO/e2e/knative/pause" sum
  sum="$(cat "$dir/go.mod" "$dir/main.go" | sha256sum | cut -c1-16)"
  fresh pause ours "$sum" . && return 0
  [ "$CHECK" = 1 ] && { STALE=1; return 0; }
  build pause ours "$sum" . "$dir"
}

SERVING_CMDS=(cmd/controller cmd/webhook cmd/activator cmd/autoscaler cmd/queue)
EVENTING_CMDS=(cmd/controller cmd/webhook cmd/in_memory/channel_controller cmd/in_memory/channel_dispatcher
  cmd/mtchannel_broker cmd/broker/filter cmd/broker/ingress cmd/mtping cmd/requestreply)

serving() { knative knative.dev/serving "v$KNATIVE_SERVING_VERSION" serving "${SERVING_CMDS[@]}"; }
eventing() { knative knative.dev/eventing "v$KNATIVE_EVENTING_VERSION" eventing "${EVENTING_CMDS[@]}"; }

START=$SECONDS
# PYFUNC_CLUSTER_PARTS: some parts only, in that order (e.g. a second run building the rest).
for part in ${PYFUNC_CLUSTER_PARTS:-pause etcd k8s coredns serving eventing traefik}; do
  case "$part" in
    pause|etcd|k8s|coredns|serving|eventing|traefik) "$part" ;;
    *) fail "unknown part $part (PYFUNC_CLUSTER_PARTS): pause etcd k8s coredns serving eventing traefik" ;;
  esac
done
if [ "$CHECK" = 1 ]; then exit "$STALE"; fi
note "cluster binaries in $BIN ($((SECONDS - START)) s)"
