#!/usr/bin/env bash
# A real single-node Kubernetes + Knative cluster on this machine, for pyfunc's cluster e2e
# (e2e/cluster). Everything is built from the Go module proxy and Debian packages
# (scripts/cluster-build.sh, pinned in scripts/versions.env); no registry, no downloads of releases.
#
#   scripts/cluster.sh up          build (cached), start, wait until everything is Ready; a second
#                                  `up` on a running cluster returns at once
#   scripts/cluster.sh env         `export KUBECONFIG=…` and `export PYFUNC_INGRESS=127.0.0.1:PORT`
#                                  (the Knative ingress; requests carry Host: <the ksvc URL's host>)
#   scripts/cluster.sh load IMAGE  a local docker image into the cluster's containerd; prints the
#                                  reference to put in a manifest on its last line
#   scripts/cluster.sh kubectl …   the cluster's kubectl with its kubeconfig
#   scripts/cluster.sh down        stop everything and put the host back (safe twice, and after a
#                                  half-finished `up`)
#
# What runs: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy as
# host processes; a second containerd (Debian's binary, its own root, state, socket and runc root:
# the system containerd Docker uses is never touched); CoreDNS, Traefik (the KIngress) and Knative
# Serving + Eventing (in-memory channel, MT channel-based broker) as pods from images made here
# (static binaries FROM scratch) and imported into that containerd.
# Network: the node address is on an interface made here (an empty bridge), pods on a bridge made here, services
# virtual (kube-proxy's iptables); nothing is routed off the machine (pods get no default route and
# no masquerading) and CoreDNS answers for cluster.local only, forwarding nothing.
# Host effects undone by `down`: iptables chains (KUBE-*, CNI-*), the bridge and dummy interface,
# mounts (the kubelet's root bind-mount, pod volumes, network namespaces), the kubelet's cgroups,
# sysctls (kept from changing in the first place: protectKernelDefaults, kube-proxy flags).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CL="$CACHE/cluster"; BIN="$CL/bin"; STATE="$CL/state"; IMAGES="$CL/images"
RUN=/run/pyfunc-cluster           # sockets: short paths
LOGS="$STATE/logs"; PKI="$STATE/pki"; KUBECONFIG_FILE="$STATE/kubeconfig"
NODE_IF=pyfcl0 BRIDGE=pyfcni0 NODE_NAME=pyfunc-node
NODE_IP=10.211.0.1 POD_CIDR=10.212.0.0/24 SVC_CIDR=10.213.0.0/24 API_SVC_IP=10.213.0.1 DNS_IP=10.213.0.10
INGRESS_PORT="${PYFUNC_CLUSTER_INGRESS_PORT:-31080}"
CONTAINERD_SOCK="$RUN/containerd.sock"
IMG=dev.local/pyfunc-cluster
PAUSE_IMAGE="$IMG/pause:ours"
# The components, in start order; each a host process with a pid file in $RUN.
PROCS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet
  net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait)

fail() { printf 'error: %s\n' "$*" >&2; exit 1; }
kc() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
alive() { local pid; pid="$(cat "$RUN/$1.pid" 2>/dev/null)" && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# wait_for WHAT SECONDS CMD...: retry CMD until it succeeds; after SECONDS, fail naming WHAT.
wait_for() {
  local what="$1" limit="$2" start=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $((SECONDS - start)) -lt "$limit" ] || fail "$what not ready after ${limit}s (logs: $LOGS; then scripts/cluster.sh down)"
    sleep 2
  done
}

# start NAME CMD...: a host process in its own session, output to $LOGS/NAME.log.
start() {
  local name="$1"; shift
  alive "$name" && return 0
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  sleep 1
  alive "$name" || { tail -5 "$LOGS/$name.log" >&2; fail "$name exited at once: see $LOGS/$name.log"; }
}

cluster_ready() { [ -f "$RUN/up.done" ] && alive kube-apiserver && alive kubelet && kc get --raw /readyz >/dev/null 2>&1; }

# --- preparation ---------------------------------------------------------------------------------

need_packages() {
  local missing=()
  [ -x /usr/bin/containerd ] || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v openssl >/dev/null || missing+=(openssl)
  python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)    # manifests (cluster_tools.py)
  [ -x /usr/bin/redis-server ] || missing+=(redis-server)             # the cluster e2e's Redis pod image
  [ "${#missing[@]}" = 0 ] && return 0
  step "Installing ${missing[*]} from Debian"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$CL/apt.log" 2>&1 || fail "apt-get install ${missing[*]} failed: see $CL/apt.log"
}

# A listener on PORT for ADDR (or any address) would take the port.
port_taken() { ss -ltnH 2>/dev/null | awk '{print $4}' | grep -Eq "^(\*|0\.0\.0\.0|\[::\]|$2):$1\$"; }
check_ports() {
  local p
  for p in 2379 2380 6443 10250 10248 10249 10256 10257 10259; do
    port_taken "$p" "$NODE_IP" && fail "port $p is taken on all addresses ($(ss -ltnpH "sport = :$p" | head -1 | awk '{print $NF}')): stop that program, then scripts/cluster.sh up"
  done
  port_taken "$INGRESS_PORT" 127.0.0.1 &&
    fail "ingress port 127.0.0.1:$INGRESS_PORT is taken: free it or set PYFUNC_CLUSTER_INGRESS_PORT, then scripts/cluster.sh up"
  return 0
}

certs() {
  [ -f "$PKI/admin.crt" ] || make_certs
  [ -f "$KUBECONFIG_FILE" ] && return 0
  "$BIN/kubectl" config --kubeconfig "$KUBECONFIG_FILE.tmp" set-cluster pyfunc --server "https://$NODE_IP:6443" \
    --certificate-authority "$PKI/ca.crt" --embed-certs >/dev/null
  "$BIN/kubectl" config --kubeconfig "$KUBECONFIG_FILE.tmp" set-credentials admin --client-certificate "$PKI/admin.crt" \
    --client-key "$PKI/admin.key" --embed-certs >/dev/null
  "$BIN/kubectl" config --kubeconfig "$KUBECONFIG_FILE.tmp" set-context pyfunc --cluster pyfunc --user admin >/dev/null
  "$BIN/kubectl" config --kubeconfig "$KUBECONFIG_FILE.tmp" use-context pyfunc >/dev/null
  mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

make_certs() {
  mkdir -p "$PKI"; local d="$PKI"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=pyfunc-cluster-ca"
    cat >apiserver.ext <<EOF
subjectAltName=IP:$NODE_IP,IP:$API_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EOF
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile apiserver.ext
    # One client identity for the components and the tests: a throwaway single-user cluster.
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin"
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 3650 -extfile client.ext
    openssl genrsa -out sa.key 2048 && openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$LOGS/pki.log" 2>&1 || { rm -f "$PKI/admin.crt"; fail "making the cluster's certificates with openssl failed: see $LOGS/pki.log"; }
}

network() {
  # What the host had before the first `up`: `down` restores it.
  if [ ! -f "$CL/sysctl.before" ]; then
    local k; for k in "${SYSCTLS[@]}"; do
      [ -e "/proc/sys/${k//.//}" ] && echo "$k=$(cat "/proc/sys/${k//.//}")"
    done >"$CL/sysctl.before.tmp"; mv "$CL/sysctl.before.tmp" "$CL/sysctl.before"
  fi
  [ -d /var/log/containers ] || { mkdir -p /var/log/containers; touch "$CL/made-var-log-containers"; }
  ip link show "$NODE_IF" >/dev/null 2>&1 || {
    # A bridge with no ports, not a dummy interface: this kernel may have no dummy driver, and an
    # empty bridge is as good a home for a local address that nothing outside can reach.
    ip link add "$NODE_IF" type bridge && ip addr add "$NODE_IP/32" dev "$NODE_IF" && ip link set "$NODE_IF" up
  } || fail "making the node interface $NODE_IF ($NODE_IP) failed (needs root and the bridge driver)"
  # Pods talk to each other and to services through the bridge: the kernel must forward and
  # bridged traffic must see iptables (kube-proxy's service rules). Docker already sets both.
  [ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || sysctl -qw net.ipv4.ip_forward=1
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || modprobe br_netfilter 2>/dev/null || true
  [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" = 1 ] || sysctl -qw net.bridge.bridge-nf-call-iptables=1 ||
    fail "bridge netfilter is not available (modprobe br_netfilter)"
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  # Routes only to the node and the service range: no default route, no masquerading, so
  # nothing a pod sends can leave the machine. `firewall` accepts pod traffic in FORWARD,
  # whose policy Docker sets to DROP.
  cat >"$STATE/cni/net.d/10-pyfunc.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "pyfunc-cluster", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]],
            "routes": [{"dst": "$NODE_IP/32"}, {"dst": "$SVC_CIDR"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "firewall"}
]}
EOF
}

# --- the host processes --------------------------------------------------------------------------

start_containerd() {
  mkdir -p "$STATE/containerd" "$RUN"
  cat >"$STATE/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$RUN/containerd-state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$RUN/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Required here (root without CAP_SYS_RESOURCE): otherwise every sandbox fails with
  # "runc create failed: ... can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$RUN/runc"
        SystemdCgroup = false
EOF
  start containerd /usr/bin/containerd --config "$STATE/containerd.toml"
  wait_for "the cluster's containerd ($CONTAINERD_SOCK)" 60 ctr --address "$CONTAINERD_SOCK" version
}

# import_images: the pod images (cached tars, rebuilt when their binary changes) into containerd.
import_images() {
  mkdir -p "$IMAGES"
  local spec name entry binary user tar
  # image name | entrypoint | binary | user (Knative's pods run as non-root: ko's 65532)
  local specs=(
    "$PAUSE_IMAGE|/pause|pause|"
    "$IMG/coredns:v$COREDNS_VERSION|/coredns|coredns|"
    "$IMG/traefik:v$TRAEFIK_VERSION|/traefik|traefik|65532"
  )
  for name in controller webhook activator autoscaler queue; do
    specs+=("$IMG/serving-$name:v$KNATIVE_SERVING_VERSION|/ko-app/$name|serving-$name|65532")
  done
  for name in controller webhook channel_controller channel_dispatcher mtchannel_broker filter ingress mtping requestreply; do
    specs+=("$IMG/eventing-$name:v$KNATIVE_EVENTING_VERSION|/ko-app/$name|eventing-$name|65532")
  done
  for spec in "${specs[@]}"; do
    IFS='|' read -r name entry binary user <<<"$spec"
    [ -x "$BIN/$binary" ] || fail "$BIN/$binary is missing: run scripts/cluster-build.sh (see its error)"
    tar="$IMAGES/$binary.tar"
    if [ ! -s "$tar" ] || [ "$BIN/$binary" -nt "$tar" ] || [ "$(cat "$tar.name" 2>/dev/null)" != "$name" ]; then
      python3 "$REPO/scripts/cluster_tools.py" image "$name" "$entry" "$BIN/$binary" "$user" >"$tar.tmp" && mv "$tar.tmp" "$tar"
      echo "$name" >"$tar.name"
    fi
    ctr_ images ls -q | grep -qxF "$name" && continue
    ctr_ images import --no-unpack=false "$tar" >>"$LOGS/import.log" 2>&1 || fail "importing $name into the cluster's containerd failed: see $LOGS/import.log"
  done
}

start_etcd() {
  start etcd "$BIN/etcd" --name pyfunc --data-dir "$STATE/etcd" \
    --listen-client-urls "http://$NODE_IP:2379" --advertise-client-urls "http://$NODE_IP:2379" \
    --listen-peer-urls "http://$NODE_IP:2380" --initial-advertise-peer-urls "http://$NODE_IP:2380" \
    --initial-cluster "pyfunc=http://$NODE_IP:2380" --unsafe-no-fsync --log-level warn
}

start_control_plane() {
  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://$NODE_IP:2379" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port 6443 \
    --service-cluster-ip-range "$SVC_CIDR" --service-node-port-range 30000-32767 \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/admin.crt" --kubelet-client-key "$PKI/admin.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode RBAC --allow-privileged=true \
    --enable-aggregator-routing=true --profiling=false
  wait_for kube-apiserver 180 kc get --raw /readyz
  start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address "$NODE_IP" --leader-elect=false --use-service-account-credentials=true \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SVC_CIDR" --cluster-cidr "$POD_CIDR" --profiling=false
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address "$NODE_IP" --leader-elect=false --profiling=false
}

start_node() {
  mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
  : >"$STATE/resolv.conf"
  cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: $NODE_IP
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# Refuse to run rather than change kernel.panic, kernel.panic_on_oops, vm.overcommit_memory.
protectKernelDefaults: true
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $STATE/resolv.conf
podLogsDir: $STATE/pod-logs
serializeImagePulls: false
# Our images are imported, never pulled: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}
maxPods: 60
EOF
  # protectKernelDefaults makes the kubelet refuse to start unless these already have its values
  # (there is no "leave them and warn"): so it is on only when they do; otherwise the kubelet sets
  # them, and `down` puts back what the host had (recorded in network()).
  local want k v
  PROTECT_FAIL=""
  for want in vm.overcommit_memory=1 kernel.panic=10 kernel.panic_on_oops=1 vm.panic_on_oom=0 \
    kernel.keys.root_maxkeys=1000000 kernel.keys.root_maxbytes=25000000; do
    k="${want%=*}"; v="$(sysctl -n "$k")"
    [ "$v" = "${want#*=}" ] || PROTECT_FAIL+="$k=$v (kubelet wants ${want#*=}) "
  done
  if [ -n "${PROTECT_FAIL:-}" ]; then
    sed -i 's/^protectKernelDefaults: true/protectKernelDefaults: false/' "$STATE/kubelet.yaml"
    note "kubelet will change ${PROTECT_FAIL}; scripts/cluster.sh down restores them"
  fi
  start kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$KUBECONFIG_FILE" \
    --root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet/pki" --node-ip "$NODE_IP" --hostname-override "$NODE_NAME"
  wait_for "the node $NODE_NAME (kubelet)" 180 sh -c "'$BIN/kubectl' --kubeconfig '$KUBECONFIG_FILE' get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  # Without route_localnet and conntrack changes (they would change host sysctls); NodePorts only on
  # the node address.
  start kube-proxy "$BIN/kube-proxy" --kubeconfig "$KUBECONFIG_FILE" --hostname-override "$NODE_NAME" \
    --proxy-mode iptables --cluster-cidr "$POD_CIDR" --iptables-localhost-nodeports=false \
    --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 --conntrack-max-per-core=0 \
    --nodeport-addresses "$NODE_IP/32" --healthz-bind-address "$NODE_IP:10256" --metrics-bind-address "$NODE_IP:10249"
}

# --- the pods ------------------------------------------------------------------------------------

# apply FILE: kubectl apply, retried while webhooks come up (their pods start after their config).
apply() {
  local i
  for i in $(seq 30); do
    kc apply -f "$1" >"$LOGS/apply.log" 2>&1 && return 0
    sleep 4
  done
  tail -5 "$LOGS/apply.log" >&2; fail "kubectl apply -f $1 kept failing: see $LOGS/apply.log"
}

# crds_then_rest NAME FILE: CRDs first and Established, then everything.
crds_then_rest() {
  python3 - "$2" >"$STATE/$1-crds.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "CustomResourceDefinition"]
print(yaml.safe_dump_all(docs))
EOF
  if [ -s "$STATE/$1-crds.yaml" ] && grep -q kind "$STATE/$1-crds.yaml"; then
    apply "$STATE/$1-crds.yaml"
    wait_for "$1 CRDs" 120 kc wait --for condition=Established crd --all --timeout 5s
  fi
  apply "$2"
}

coredns() {
  cat >"$STATE/coredns.yaml" <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # cluster.local only: no forward plugin, a name outside the cluster gets no answer.
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
      - name: coredns
        image: $IMG/coredns:v$COREDNS_VERSION
        imagePullPolicy: Never
        args: ["-conf", "/etc/coredns/Corefile"]
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
        ports: [{containerPort: 53, protocol: UDP, name: dns}, {containerPort: 53, protocol: TCP, name: dns-tcp}]
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        resources: {requests: {cpu: 10m, memory: 30Mi}, limits: {memory: 170Mi}}
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: $DNS_IP
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
EOF
  apply "$STATE/coredns.yaml"
}

# Traefik with host networking: its public entrypoint on 127.0.0.1:$INGRESS_PORT (the tests') and
# the node address, its private one (cluster-local KIngresses, what Brokers deliver through) on the
# node address; Services point at those for in-cluster callers.
traefik() {
  local t="$STATE/traefik.yaml" fixtures
  fixtures="$(cd "$CL/src"/github.com_traefik_traefik_v3@v"$TRAEFIK_VERSION"/integration/fixtures/knative && pwd)"
  cat "$fixtures/01-rbac.yml" >"$t"
  cat >>"$t" <<EOF
---
kind: Namespace
apiVersion: v1
metadata: {name: traefik}
---
kind: ServiceAccount
apiVersion: v1
metadata: {name: traefik, namespace: traefik}
---
kind: Deployment
apiVersion: apps/v1
metadata: {name: traefik, namespace: traefik, labels: {app: traefik}}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: traefik}}
  template:
    metadata: {labels: {app: traefik}}
    spec:
      serviceAccountName: traefik
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      containers:
      - name: traefik
        image: $IMG/traefik:v$TRAEFIK_VERSION
        imagePullPolicy: Never
        args:
        - --entrypoints.pweb.address=127.0.0.1:$INGRESS_PORT
        - --entrypoints.pwebnode.address=$NODE_IP:8081
        - --entrypoints.privweb.address=$NODE_IP:8082
        - --entrypoints.traefik.address=$NODE_IP:9000
        - --ping=true
        - --experimental.knative
        - --providers.knative.publicEntrypoints=pweb,pwebnode
        - --providers.knative.publicService.namespace=traefik
        - --providers.knative.publicService.name=traefik
        - --providers.knative.privateEntrypoints=privweb
        - --providers.knative.privateService.namespace=traefik
        - --providers.knative.privateService.name=privtraefik
        - --providers.knative.throttleduration=1s
        - --entrypoints.pweb.transport.respondingTimeouts.readTimeout=0
        - --entrypoints.pwebnode.transport.respondingTimeouts.readTimeout=0
        - --entrypoints.privweb.transport.respondingTimeouts.readTimeout=0
        ports:
        - {name: pwebnode, containerPort: 8081}
        - {name: privweb, containerPort: 8082}
        readinessProbe: {httpGet: {path: /ping, port: 9000, host: $NODE_IP}, periodSeconds: 2}
        resources: {requests: {cpu: 10m, memory: 50Mi}, limits: {memory: 300Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: traefik, namespace: traefik}
spec:
  selector: {app: traefik}
  ports: [{name: http, port: 80, targetPort: pwebnode}]
---
apiVersion: v1
kind: Service
metadata: {name: privtraefik, namespace: traefik}
spec:
  selector: {app: traefik}
  ports: [{name: http, port: 80, targetPort: privweb}]
EOF
  apply "$t"
}

knative() {
  local s e net cach
  s="$CL/src/knative.dev_serving@v$KNATIVE_SERVING_VERSION/config"
  e="$CL/src/knative.dev_eventing@v$KNATIVE_EVENTING_VERSION/config"
  # The CRDs serving's config/ has as symlinks (absent from the module zip) are the networking and
  # caching modules' own, at the versions serving's go.mod requires.
  local go; go="$(command -v go || echo /usr/local/go/bin/go)"
  net="$(cd "$CL/src/knative.dev_serving@v$KNATIVE_SERVING_VERSION" && GOWORK=off GOFLAGS=-mod=mod "$go" list -m -f '{{.Dir}}' knative.dev/networking)/config"
  cach="$(cd "$CL/src/knative.dev_serving@v$KNATIVE_SERVING_VERSION" && GOWORK=off GOFLAGS=-mod=mod "$go" list -m -f '{{.Dir}}' knative.dev/caching)/config"
  [ -d "$net" ] && [ -d "$cach" ] || fail "knative.dev/networking or knative.dev/caching config/ not found in the module cache: run scripts/cluster-build.sh"
  # Serving without HPA objects (no metrics server) and eventing without the job sink deployment
  # (not built; its CRD stays: the eventing controller watches JobSinks).
  find "$s/core" -name '*.yaml' ! -name '*-hpa.yaml' | sort >"$STATE/serving.files"
  printf '%s\n' "$net/config-network.yaml" "$net/certificate.yaml" "$net/domain-claim.yaml" "$net/ingress.yaml" "$net/serverlessservice.yaml" \
    "$cach/image.yaml" >>"$STATE/serving.files"
  python3 "$REPO/scripts/cluster_tools.py" manifests "$IMG" "v$KNATIVE_SERVING_VERSION" $(cat "$STATE/serving.files") >"$STATE/serving.yaml"
  # The test-friendly settings go in before the controllers start: the ingress class is stamped on each
  # KIngress when it is made.
  cat >>"$STATE/serving.yaml" <<EOF
---
apiVersion: v1
kind: ConfigMap
metadata: {name: config-network, namespace: knative-serving, labels: {app.kubernetes.io/name: knative-serving}}
data:
  ingress-class: traefik.ingress.networking.knative.dev
---
apiVersion: v1
kind: ConfigMap
metadata: {name: config-features, namespace: knative-serving, labels: {app.kubernetes.io/name: knative-serving}}
data:
  secure-pod-defaults: enabled
  kubernetes.podspec-emptydir: enabled
---
apiVersion: v1
kind: ConfigMap
metadata: {name: config-autoscaler, namespace: knative-serving, labels: {app.kubernetes.io/name: knative-serving}}
data:
  # Scale to zero within seconds of the last request (Knative's minimums), not minutes.
  stable-window: 6s
  scale-to-zero-grace-period: 6s
  scale-to-zero-pod-retention-period: 0s
---
apiVersion: v1
kind: ConfigMap
metadata: {name: config-domain, namespace: knative-serving, labels: {app.kubernetes.io/name: knative-serving}}
data:
  example.com: ""
EOF
  # config-network etc. are also in the release files: ours replace theirs.
  python3 - "$STATE/serving.yaml" <<'EOF'
import sys, yaml
path = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
ours = {d["metadata"]["name"]: d for d in docs[-4:]}
# In place of Knative's own: before the webhook configurations that would validate them (and
# fail while the webhook pod is not up yet).
keep = [ours.get(d["metadata"]["name"], d) if d.get("kind") == "ConfigMap" else d for d in docs[:-4]]
missing = [d for name, d in ours.items() if name not in {k["metadata"]["name"] for k in keep}]
open(path, "w").write(yaml.safe_dump_all(keep + missing))
EOF
  crds_then_rest serving "$STATE/serving.yaml"
  { find "$e/core" -name '*.yaml' ! -name 'job-sink.yaml' ! -name '*-hpa.yaml'
    find "$e/channels/in-memory-channel" "$e/brokers/mt-channel-broker" -name '*.yaml'; } | sort >"$STATE/eventing.files"
  python3 "$REPO/scripts/cluster_tools.py" manifests "$IMG" "v$KNATIVE_EVENTING_VERSION" $(cat "$STATE/eventing.files") >"$STATE/eventing.yaml"
  crds_then_rest eventing "$STATE/eventing.yaml"
}

wait_ready() {
  local ns
  for ns in kube-system traefik knative-serving knative-eventing; do
    wait_for "the deployments in $ns" 420 kc -n "$ns" wait --for condition=Available deployment --all --timeout 10s
  done
  # Knative's own webhooks answer: a Service dry-run through Serving's defaulting and validation.
  printf '%s\n' 'apiVersion: serving.knative.dev/v1' 'kind: Service' 'metadata: {name: probe, namespace: default}' \
    'spec: {template: {spec: {containers: [{image: dev.local/probe:1}]}}}' >"$STATE/probe-ksvc.yaml"
  wait_for "Knative Serving's webhook" 180 kc apply --dry-run=server -f "$STATE/probe-ksvc.yaml"
}

up() {
  mkdir -p "$CL" "$RUN" "$STATE" "$LOGS"
  if cluster_ready; then note "cluster already up ($KUBECONFIG_FILE)"; return 0; fi
  local t0=$SECONDS
  need_packages
  step "Cluster binaries (scripts/cluster-build.sh; cached)"
  "$REPO/scripts/cluster-build.sh" || fail "building the cluster failed (above): fix it, then scripts/cluster.sh up"
  # Ports are checked before a first start only: a half-up cluster of ours holds its own.
  local p ours=0; for p in "${PROCS[@]}"; do alive "$p" && ours=1; done
  [ "$ours" = 1 ] || check_ports
  step "Node network ($NODE_IF $NODE_IP, bridge $BRIDGE $POD_CIDR), certificates, containerd"
  network
  certs
  start_containerd
  import_images
  step "etcd, kube-apiserver, controller-manager, scheduler"
  start_etcd
  start_control_plane
  step "kubelet, kube-proxy"
  start_node
  step "CoreDNS, Traefik, Knative Serving v$KNATIVE_SERVING_VERSION and Eventing v$KNATIVE_EVENTING_VERSION"
  coredns
  traefik
  knative
  step "Waiting until everything is Ready"
  wait_ready
  date -u +%FT%TZ >"$RUN/up.done"
  echo "$((SECONDS - t0))" >"$STATE/up-seconds"  # the cluster e2e records it
  note "cluster up in $((SECONDS - t0)) s; eval \"\$(scripts/cluster.sh env)\""
}

# --- down ----------------------------------------------------------------------------------------

stop() {  # stop NAME: TERM, then KILL after a while
  local pid i
  pid="$(cat "$RUN/$1.pid" 2>/dev/null)" || return 0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$1.pid"
}

remove_chains() {  # every KUBE-* and CNI-* chain (and the rules that jump to them), v4 and v6
  local ipt table chain rule
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle raw; do
      "$ipt" -t "$table" -S >/dev/null 2>&1 || continue
      { "$ipt" -t "$table" -S | grep -E -- '-j (KUBE|CNI)-' || true; } | sed 's/^-A /-D /' | while read -r rule; do
        eval "$ipt -t $table $rule" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
        "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

down() {
  mkdir -p "$RUN"
  rm -f "$RUN/up.done"
  if alive kube-apiserver && alive kubelet && [ -f "$KUBECONFIG_FILE" ]; then
    step "Removing the pods (so that the kubelet tears down their networks)"
    stop kube-controller-manager; stop kube-scheduler  # nothing new gets made or scheduled
    kc delete pods --all-namespaces --all --grace-period=1 --wait=false >/dev/null 2>&1 || true
    local i
    for i in $(seq 45); do
      [ -z "$(ctr_ tasks ls -q 2>/dev/null)" ] && break
      sleep 2
    done
  fi
  step "Stopping the cluster's processes"
  local name
  for name in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$name"; done
  # Containers left (a half-finished up, a stuck pod): their shims belong to our containerd only.
  if alive containerd; then
    for name in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$name" >/dev/null 2>&1 || true; done
    sleep 1
  fi
  stop containerd
  for name in $(pgrep -f "containerd-shim-runc-v2 -namespace k8s.io .*-address $CONTAINERD_SOCK" || true); do
    kill -KILL "$name" 2>/dev/null || true
  done
  step "Putting the host back: iptables chains, mounts, network, cgroups, sysctls"
  [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  remove_chains
  # Mounts under our state (the kubelet's root bind-mount, pod volumes, containerd's overlays),
  # deepest first, and the network namespaces of our pods (containerd 1.6 puts them in /var/run/netns).
  local m
  for m in $(awk -v s="$STATE" -v r="$RUN" 'index($2, s) == 1 || index($2, r) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  if [ -f "$CL/netns.before" ]; then
    for m in /var/run/netns/cni-*; do
      [ -e "$m" ] || continue
      grep -qxF "$m" "$CL/netns.before" && continue
      umount -l "$m" 2>/dev/null || true; rm -f "$m"
    done
  fi
  for m in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link del "$m" 2>/dev/null || true; done
  ip link del "$BRIDGE" 2>/dev/null || true
  ip link del "$NODE_IF" 2>/dev/null || true
  for m in /sys/fs/cgroup/*/kubepods; do
    [ -d "$m" ] && find "$m" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  if [ -f "$CL/sysctl.before" ]; then
    while IFS='=' read -r name m; do
      [ "$(sysctl -n "$name" 2>/dev/null)" = "$m" ] || sysctl -qw "$name=$m" 2>/dev/null || true
    done <"$CL/sysctl.before"
    rm -f "$CL/sysctl.before"
  fi
  if [ -f "$CL/made-var-log-containers" ]; then rm -rf /var/log/containers; rm -f "$CL/made-var-log-containers"; fi
  rm -rf "$STATE" "$RUN" "$CL/netns.before"
  note "cluster down"
}

main() {
case "${1:-}" in
  up)
    mkdir -p "$CL"
    [ -f "$CL/netns.before" ] || ls -d /var/run/netns/cni-* >"$CL/netns.before" 2>/dev/null || true
    up ;;
  down) down ;;
  env)
    [ -f "$KUBECONFIG_FILE" ] || fail "no cluster: scripts/cluster.sh up"
    echo "export KUBECONFIG=$KUBECONFIG_FILE"
    echo "export PYFUNC_INGRESS=127.0.0.1:$INGRESS_PORT" ;;
  kubectl) shift; [ -f "$KUBECONFIG_FILE" ] || fail "no cluster: scripts/cluster.sh up"; exec "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@" ;;
  load)
    [ -n "${2:-}" ] || fail "usage: scripts/cluster.sh load IMAGE"
    alive containerd || fail "no cluster: scripts/cluster.sh up"
    local image id base ref
    image="$2"
    id="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null)" || fail "no docker image $image (docker images)"
    id="${id#sha256:}"
    # A tag from the image id: never :latest (which the kubelet would try to pull), and names under
    # dev.local/ are not resolved to digests through a registry by Knative.
    base="$image"; case "${image##*/}" in *:*) base="${image%:*}" ;; esac
    base="${base#dev.local/}"
    ref="dev.local/${base}:${id:0:12}"
    if ! ctr_ images ls -q | grep -qxF "$ref"; then
      docker tag "$image" "$ref"
      docker save "$ref" | ctr_ images import - >"$RUN/load.log" 2>&1 || { docker rmi "$ref" >/dev/null 2>&1 || true; fail "importing $image failed: see $RUN/load.log"; }
      docker rmi "$ref" >/dev/null 2>&1 || true
    fi
    echo "$ref" ;;
  *) echo "usage: scripts/cluster.sh up|env|load IMAGE|kubectl ARGS...|down" >&2; exit 2 ;;
esac
}

# Sourced (a debugging shell), it only defines the functions.
[ "${BASH_SOURCE[0]}" != "$0" ] || main "$@"
