#!/usr/bin/env bash
# Build the real Knative parts the e2e runs against, from the Go module proxy, into
# ${PYFUNC_CACHE:-~/.cache/pyfunc}/tools/bin:
#   queue-proxy   knative.dev/serving/cmd/queue        (upstream, v$KNATIVE_VERSION)
#   func          knative.dev/func/cmd/func            (upstream, v$KNATIVE_VERSION)
#   kn-events     e2e/knative/events   (ours: eventing's kncloudevents delivery + a sdk-go reader)
#   kn-validate   e2e/knative/validate (ours: serving's v1.Service SetDefaults + Validate, and the
#                 pod spec its reconcilers make: queue-proxy's env, preStop, grace period)
#   kn-pause      e2e/knative/pause    (ours: holds a pod's network namespace in the e2e)
# Idempotent and cached: each binary carries a stamp (hash of version, Go version and our source,
# go.mod, go.sum) and is rebuilt only when that changes. Go's build and module caches are kept, so a
# rebuild after a change takes seconds; cold, the four builds take minutes each on 2 cores.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

GO="$(command -v go || true)"; [ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || die "Go not found (need go >= 1.23 on PATH or in /usr/local/go)"
export GOFLAGS="-buildvcs=false" CGO_ENABLED=0
# Only the module proxy is reachable, not the checksum database: trust the pinned tags of the
# top-level modules; every dependency is checked against their go.sum (ours are committed).
export GONOSUMDB="knative.dev/serving,knative.dev/func,knative.dev/eventing"
SRC="$TOOLS/src"; mkdir -p "$SRC"

# stamp_ok NAME PARTS...: is bin/NAME built from exactly this (version, Go, files)?
stamp_of() { { echo "$KNATIVE_VERSION $("$GO" env GOVERSION)"; for f in "$@"; do echo "$f"; cat "$f"; done; } | sha256sum | cut -d' ' -f1; }
fresh() { [ -x "$TOOLS/bin/$1" ] && [ "$(cat "$TOOLS/bin/$1.stamp" 2>/dev/null)" = "$2" ]; }

# module_copy MOD: a writable copy of MOD@v$KNATIVE_VERSION (serving and func have replace
# directives, so `go install MOD/cmd/x@v` is refused; serving ships a stub vendor/modules.txt).
module_copy() {
  local mod="$1" dest="$SRC/$(basename "$1")-v$KNATIVE_VERSION" dir
  if [ ! -f "$dest/go.mod" ]; then
    dir="$("$GO" mod download -json "$mod@v$KNATIVE_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
    [ -d "$dir" ] || die "go mod download of $mod v$KNATIVE_VERSION failed"
    rm -rf "$dest.tmp"; cp -r "$dir" "$dest.tmp"; chmod -R u+w "$dest.tmp"; rm -rf "$dest.tmp/vendor"
    mv "$dest.tmp" "$dest"
  fi
  echo "$dest"
}

# upstream NAME MOD PKG: build an upstream command inside its module copy.
upstream() {
  local name="$1" mod="$2" pkg="$3" stamp dir start
  stamp="$(stamp_of /dev/null)-$mod/$pkg"
  if ! fresh "$name" "$stamp"; then
    step "Building $name ($mod/$pkg v$KNATIVE_VERSION) from the Go module proxy"
    start=$SECONDS
    dir="$(module_copy "$mod")"
    (cd "$dir" && "$GO" build -mod=mod -trimpath -ldflags "-s -w" -o "$TOOLS/bin/$name.tmp" "./$pkg")
    mv "$TOOLS/bin/$name.tmp" "$TOOLS/bin/$name"; echo "$stamp" >"$TOOLS/bin/$name.stamp"
    note "$name built in $((SECONDS - start)) s"
  fi
}

# ours NAME: build e2e/knative/NAME (its own go.mod/go.sum pin the Knative and sdk-go versions).
ours() {
  local name="$1" dir="$REPO/e2e/knative/$1" stamp start
  stamp="$(cd "$dir" && stamp_of go.mod go.sum *.go)"
  if ! fresh "kn-$name" "$stamp"; then
    step "Building kn-$name (e2e/knative/$name) from the Go module proxy"
    start=$SECONDS
    (cd "$dir" && "$GO" build -mod=readonly -trimpath -ldflags "-s -w" -o "$TOOLS/bin/kn-$name.tmp" .)
    mv "$TOOLS/bin/kn-$name.tmp" "$TOOLS/bin/kn-$name"; echo "$stamp" >"$TOOLS/bin/kn-$name.stamp"
    note "kn-$name built in $((SECONDS - start)) s"
  fi
}

upstream queue-proxy knative.dev/serving cmd/queue
ours pause
ours validate
ours events
upstream func knative.dev/func cmd/func
note "knative parts v$KNATIVE_VERSION in $TOOLS/bin: queue-proxy kn-pause kn-validate kn-events func"
