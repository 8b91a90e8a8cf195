#!/usr/bin/env bash
# pyfunc's main job, end to end, on this machine and without a registry:
# install the tools, build the images and the builder, `pack build` examples/cloudevent-echo,
# `docker run` it like Knative would, send it a CloudEvent and print the reply.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
IMAGE=pyfunc-demo/cloudevent-echo
NAME=pyfunc-demo

"$REPO/scripts/install-tools.sh"
"$REPO/scripts/build-images.sh"

step "pack build $IMAGE (examples/cloudevent-echo, builder pyfunc/builder, offline)"
pack build "$IMAGE" --builder pyfunc/builder --pull-policy never --trust-builder \
  --path "$REPO/examples/cloudevent-echo" 2>&1 | grep -v -e '^Warning' -e SBOM | sed 's/^/    /'

step "docker run $IMAGE (PORT=8080, K_SERVICE set, read-only root, non-root: the image's uid 1001)"
docker rm -f "$NAME" >/dev/null 2>&1 || true
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
started=$(date +%s%N)
docker run -d --name "$NAME" -e PORT=8080 -e K_SERVICE=cloudevent-echo --read-only --tmpfs /tmp \
  -p 127.0.0.1::8080 "$IMAGE" >/dev/null
port="$(docker port "$NAME" 8080/tcp | head -1 | sed 's/.*://')"
url="http://127.0.0.1:$port"
for _ in $(seq 200); do
  curl -fs -o /dev/null "$url/health/readiness" && break
  sleep 0.05
done
curl -fs -o /dev/null "$url/health/readiness" || { docker logs "$NAME"; die "function did not become ready"; }
note "ready at $url after $(( ($(date +%s%N) - started) / 1000000 )) ms"

step "Sending a CloudEvent (binary mode) to $url/"
note "ce-type: com.example.ping, data: {\"message\": \"hello from pyfunc\"}"
step "Reply:"
curl -sS -i "$url/" -X POST \
  -H 'ce-specversion: 1.0' -H "ce-id: demo-$RANDOM" -H 'ce-source: /pyfunc/demo' \
  -H 'ce-type: com.example.ping' -H 'content-type: application/json' \
  -d '{"message": "hello from pyfunc"}' | tr -d '\r' | sed 's/^/    /'
echo
step "Container log:"
docker logs "$NAME" 2>&1 | sed 's/^/    /'
step "Done: the demo container is removed on exit (image $IMAGE stays)"

# What a user runs next (README.md's Quickstart). pack stays in $TOOLS/bin, off the user's PATH:
# `pyfunc build` looks there itself, with the Docker API version and volume key set as above.
step "Next: your own function (README.md, Quickstart; docs/quickstart.md is the long form)"
note "cd $REPO"
note "python3 -m venv .venv && . .venv/bin/activate   # Debian 12's system pip refuses installs (PEP 668)"
note "pip install -e '.[reload]' pytest               # from this checkout: PyPI's pyfunc-invoker is the old 0.1.0"
note "pyfunc init hello && pytest hello"
note "pyfunc build hello --image hello                # finds pack in $TOOLS/bin by itself"
note "docker run --rm -p 8080:8080 hello              # then, in another terminal: pyfunc invoke"
note "(pack itself: export PATH=\"$TOOLS/bin:\$PATH\" DOCKER_API_VERSION=$DOCKER_API_VERSION PACK_VOLUME_KEY=$PACK_VOLUME_KEY)"
