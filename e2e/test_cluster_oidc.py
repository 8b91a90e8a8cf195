"""Authenticated delivery on the real cluster (scripts/cluster.sh): Eventing's OIDC tokens, verified by pyfunc.

NOT YET RUN: written while the cluster branch was still building scripts/cluster.sh, so every test
here is marked ``cluster`` and skips unless the integrator's cluster run provides:

* ``kubectl`` on PATH talking to the cluster (``KUBECONFIG``), Knative Serving and Eventing
  (pinned v0.44.0 = Knative 1.17: ``authentication-oidc`` exists, RequestReply does not) with
  the MT channel-based Broker;
* ``PYFUNC_CLUSTER_OIDC_IMAGE``: a function image the cluster can pull, built from
  e2e/functions/oidc (pyfunc with the ``oidc`` extra, ``PyJWT[crypto]``, in its requirements);
* an API server that serves service-account issuer discovery to service accounts (the
  default since Kubernetes 1.21: ClusterRoleBinding system:service-account-issuer-discovery).

What it checks (issue 25, item 2): with ``authentication-oidc`` enabled, an event sent to a
Broker reaches the function through a Trigger (the broker filter presents a token for the
Trigger's subscriber audience, minted for the Trigger's OIDC service account) and is
accepted; requests from another pod with no token, with a token for another audience, and
with a valid token from a service account not allowed, are refused 401, 401 and 403.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.timeout(900)]

IMAGE = os.environ.get("PYFUNC_CLUSTER_OIDC_IMAGE", "")
FUNCTION = "oidc-fn"


def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
    return done.stdout


def _wait(what: str, predicate, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def _ready(kind: str, name: str, namespace: str) -> bool:
    out = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if not out:
        return False
    conditions = json.loads(out).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@pytest.fixture(scope="module")
def cluster():
    if not IMAGE or shutil.which("kubectl") is None:
        pytest.skip("needs the cluster of scripts/cluster.sh and PYFUNC_CLUSTER_OIDC_IMAGE (see the module docstring)")
    if subprocess.run(["kubectl", "get", "crd", "brokers.eventing.knative.dev"], capture_output=True,
                      timeout=60).returncode != 0:
        pytest.skip("Knative Eventing is not installed on the cluster")
    # Eventing's feature flag: Brokers and Triggers present tokens for their subscribers' audiences.
    kubectl("patch", "configmap", "config-features", "-n", "knative-eventing", "--type", "merge",
            "-p", json.dumps({"data": {"authentication-oidc": "enabled"}}))
    namespace = f"pyfunc-oidc-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    try:
        yield namespace
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def deployed(cluster):
    namespace = cluster
    # Eventing names audiences <group>/<kind>/<namespace>/<name> (knative/eventing pkg/auth/audience.go);
    # a Knative Service announces none, so the Trigger names it (spec.subscriber.audience) and the
    # function requires the same.
    audience = f"serving.knative.dev/service/{namespace}/{FUNCTION}"
    manifests = [
        {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "default",
                                                                               "namespace": namespace}},
        {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
         "metadata": {"name": FUNCTION, "namespace": namespace},
         "spec": {"template": {"spec": {"containers": [{"image": IMAGE, "env": [
             {"name": "PYFUNC_OIDC_AUDIENCE", "value": audience},
             {"name": "PYFUNC_LOG_FORMAT", "value": "json"},
         ]}]}}}},
        {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
         "metadata": {"name": "to-fn", "namespace": namespace},
         "spec": {"broker": "default", "subscriber": {
             "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": FUNCTION},
             "audience": audience}}},
    ]
    kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(m) for m in manifests))
    for kind, name in (("broker", "default"), ("ksvc", FUNCTION), ("trigger", "to-fn")):
        _wait(f"{kind}/{name} ready", lambda kind=kind, name=name: _ready(kind, name, namespace))
    trigger = json.loads(kubectl("get", "trigger", "to-fn", "-n", namespace, "-o", "json"))
    sender = trigger["status"]["auth"]["serviceAccountName"]  # the Trigger's OIDC identity
    # Only the Trigger may deliver: like an EventPolicy whose `from` is the Broker's Trigger.
    kubectl("set", "env", f"ksvc/{FUNCTION}", "-n", namespace,
            f"PYFUNC_OIDC_ALLOWED_SUBJECTS=system:serviceaccount:{namespace}:{sender}")
    _wait("the new revision ready", lambda: _ready("ksvc", FUNCTION, namespace))
    broker = json.loads(kubectl("get", "broker", "default", "-n", namespace, "-o", "json"))
    return {"namespace": namespace, "audience": audience, "broker": broker["status"]["address"]["url"],
            "function": f"http://{FUNCTION}.{namespace}.svc.cluster.local"}


def _post_from_a_pod(namespace: str, url: str, token: str | None, event_id: str) -> int:
    """The status of a binary-mode CloudEvent POSTed from a fresh pod (the function image's Python)."""
    code = (
        "import sys, urllib.request, urllib.error\n"
        "h = {'ce-specversion': '1.0', 'ce-id': sys.argv[2], 'ce-source': '/e2e/oidc', "
        "'ce-type': 'com.example.oidc', 'Content-Type': 'application/json'}\n"
        "if sys.argv[3]: h['Authorization'] = 'Bearer ' + sys.argv[3]\n"
        "try:\n"
        "    print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], b'{}', h), timeout=60).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
    )
    name = f"client-{uuid.uuid4().hex[:6]}"
    out = kubectl("run", name, "-n", namespace, "--image", IMAGE, "--restart=Never", "--rm", "-i", "--quiet",
                  "--command", "--", "python", "-c", code, url, event_id, token or "", timeout=300)
    return int(out.strip().splitlines()[-1])


def _token(namespace: str, account: str, audience: str) -> str:
    kubectl("create", "serviceaccount", account, "-n", namespace, check=False)
    return kubectl("create", "token", account, "-n", namespace, "--audience", audience, "--duration", "10m").strip()


def _function_log(namespace: str) -> str:
    return kubectl("logs", "-n", namespace, "-l", f"serving.knative.dev/service={FUNCTION}", "-c", "user-container",
                   "--tail", "-1", check=False)


def test_an_event_through_the_broker_is_accepted(deployed):
    namespace = deployed["namespace"]
    assert _post_from_a_pod(namespace, deployed["broker"], None, "through-broker") == 202
    def delivered() -> bool:
        return any('"ce_id": "through-broker"' in line and '"status": 200' in line
                   for line in _function_log(namespace).splitlines())

    _wait("the delivery in the function's log", delivered)


def test_a_request_without_a_token_is_401(deployed):
    assert _post_from_a_pod(deployed["namespace"], deployed["function"], None, "no-token") == 401


def test_a_token_for_another_audience_is_401(deployed):
    token = _token(deployed["namespace"], "other-audience", "serving.knative.dev/service/elsewhere/fn")
    assert _post_from_a_pod(deployed["namespace"], deployed["function"], token, "wrong-audience") == 401


def test_a_valid_token_from_a_sender_not_allowed_is_403(deployed):
    token = _token(deployed["namespace"], "intruder", deployed["audience"])
    assert _post_from_a_pod(deployed["namespace"], deployed["function"], token, "not-allowed") == 403
