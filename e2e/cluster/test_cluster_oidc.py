"""Authenticated delivery on the real cluster (issue 25): Knative Eventing's OIDC tokens, verified by pyfunc.

With Eventing's ``authentication-oidc`` feature on, Eventing's senders present a token minted for
their OIDC service account, for the audience their sink names (``sink.audience``,
``spec.subscriber.audience``: a Knative Service announces none). The function, the recorder built
with pyfunc's ``oidc`` extra, requires that audience (``PYFUNC_OIDC_AUDIENCE``) and those senders
(``PYFUNC_OIDC_ALLOWED_SUBJECTS``), and checks tokens against the keys of the cluster's own
service-account issuer, which it discovers from inside its pod (no ``PYFUNC_OIDC_ISSUER``).

Checked: a PingSource's events are accepted and recorded; an event sent to a Broker (whose ingress
checks the producer's token) reaches the function through a Trigger, with the Trigger's token;
through the ingress and from another pod (the function's cluster-local address), a request with no
token, with a token for another audience, and with a valid token from a service account not allowed
are refused 401, 401 and 403, with bodies that name no cause; probes need none.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from cluster_e2e import (
    NAMESPACE,
    apply,
    call,
    kjson,
    kubectl,
    ready,
    resource_ready,
    service,
    wait,
)

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.timeout(1200)]

NAME = "guarded"
# Eventing's form of an audience, <group>/<kind>/<namespace>/<name> (knative/eventing pkg/auth).
AUDIENCE = f"serving.knative.dev/service/{NAMESPACE}/{NAME}"
ONE_POD = {"autoscaling.knative.dev/min-scale": "1", "autoscaling.knative.dev/max-scale": "1"}


def _oidc(state: str) -> None:
    kubectl("patch", "configmap", "config-features", "-n", "knative-eventing", "--type", "merge",
            "-p", json.dumps({"data": {"authentication-oidc": state}}))


def token(account: str, audience: str) -> str:
    """A token of service account ``account`` (made if missing) for ``audience``, from the API server."""
    kubectl("create", "serviceaccount", account, "-n", NAMESPACE, check=False)
    return kubectl("create", "token", account, "-n", NAMESPACE, "--audience", audience,
                   "--duration", "10m").stdout.strip()


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def event_headers(event_id: str) -> dict[str, str]:
    return {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/e2e/oidc", "ce-type": "com.example.oidc",
            "content-type": "application/json"}


@pytest.fixture(scope="module")
def guarded(guarded_image: str) -> dict[str, str]:
    """The recorder with verification on, fed by PingSource `oidc-ping` and by Broker `authenticated`
    through Trigger `to-guarded` (both naming AUDIENCE), allowing only their two OIDC identities."""
    _oidc("enabled")
    try:
        env = {"PYFUNC_OIDC_AUDIENCE": AUDIENCE}
        apply(service(NAME, guarded_image, env=env, annotations=ONE_POD))
        ready(NAME)
        apply({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "authenticated"}})
        apply({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "to-guarded"},
               "spec": {"broker": "authenticated", "subscriber": {
                   "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": NAME},
                   "audience": AUDIENCE}}})
        apply({"apiVersion": "sources.knative.dev/v1", "kind": "PingSource", "metadata": {"name": "oidc-ping"},
               "spec": {"schedule": "* * * * *", "contentType": "application/json", "data": '{"ping": "oidc"}',
                        "sink": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": NAME},
                                 "audience": AUDIENCE}}})
        trigger = resource_ready("trigger", "to-guarded")
        sender = trigger["status"]["auth"]["serviceAccountName"]  # the Trigger's OIDC identity
        pinger = resource_ready("pingsource", "oidc-ping")["status"]["auth"]["serviceAccountName"]
        # Only these two may deliver, as an EventPolicy whose `from` names them would say.
        env["PYFUNC_OIDC_ALLOWED_SUBJECTS"] = ",".join(f"system:serviceaccount:{NAMESPACE}:{account}"
                                                       for account in (sender, pinger))
        apply(service(NAME, guarded_image, env=env, annotations=ONE_POD))
        host = ready(NAME)
        broker = resource_ready("broker", "authenticated")
        # The broker's ingress from the host: its Service's cluster IP (kube-proxy's rules).
        ip = kjson("get", "service", "broker-ingress", "-n", "knative-eventing")["spec"]["clusterIP"]
        yield {"host": host, "sender": sender, "broker": f"http://{ip}/{NAMESPACE}/authenticated",
               "broker_audience": broker["status"]["address"]["audience"]}
    finally:
        _oidc("disabled")
        kubectl("delete", "pingsource", "oidc-ping", "-n", NAMESPACE, "--wait=false", check=False)
        kubectl("delete", "trigger", "to-guarded", "-n", NAMESPACE, "--wait=false", check=False)
        kubectl("delete", "ksvc", NAME, "-n", NAMESPACE, "--wait=false", check=False)


def function_log(lines: int = 30) -> str:
    """The function's own log (its refusals say why there), for a failure's message."""
    return kubectl("logs", "-n", NAMESPACE, "-l", f"serving.knative.dev/service={NAME}", "--all-containers",
                   "--tail", str(lines), check=False).stdout


def _refusal(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300], function_log())
    problem = response.json()
    assert problem["status"] == status
    return problem


def records(guarded: dict[str, str]) -> list[dict]:
    """What the function recorded, read as the Trigger: its identity's token, for the function's audience."""
    listing = call(guarded["host"], method="GET", headers=bearer(token(guarded["sender"], AUDIENCE)), timeout=30)
    assert listing.status_code == 200, (listing.status_code, listing.text[:300], function_log())
    return listing.json()["events"]


def test_a_pingsource_delivers_with_its_token(guarded: dict[str, str]) -> None:
    """Eventing's PingSource sends each event with a token of its OIDC identity for the sink's
    audience; the function verifies it against the cluster's keys and records the event."""
    record = wait("the PingSource's event, accepted", lambda: next(
        (r for r in records(guarded) if r.get("type") == "dev.knative.sources.ping"), None), timeout=240, every=3)
    assert json.loads(record["data"]) == {"ping": "oidc"}


def test_an_event_through_the_broker_is_accepted(guarded: dict[str, str]) -> None:
    """Producer -> Broker ingress (checks the producer's token) -> in-memory channel (checks the
    ingress's) -> Broker filter -> the function, with the Trigger's token for AUDIENCE."""
    event_id = f"through-broker-{uuid.uuid4().hex[:8]}"
    producer = token("producer", guarded["broker_audience"])  # the Broker's ingress checks it too
    sent = requests.post(guarded["broker"], data=b'{"n": 1}', headers={**event_headers(event_id), **bearer(producer)},
                         timeout=30)
    assert sent.status_code == 202, (sent.status_code, sent.text)
    record = wait("the event delivered through the Broker", lambda: next(
        (r for r in records(guarded) if r.get("id") == event_id), None), timeout=180, every=2)
    assert record["data"] == '{"n": 1}'


def test_the_broker_refuses_an_event_without_a_token(guarded: dict[str, str]) -> None:
    """Eventing's own check, on: what makes the accepted delivery above an authenticated one."""
    sent = requests.post(guarded["broker"], data=b"{}", headers=event_headers("no-token-at-the-broker"), timeout=30)
    assert sent.status_code == 401


def test_a_request_without_a_token_is_401(guarded: dict[str, str]) -> None:
    refused = call(guarded["host"], data=b"{}", headers=event_headers("no-token"))
    problem = _refusal(refused, 401)
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert problem.get("reason") == "unauthenticated", problem


def test_a_token_for_another_audience_is_401(guarded: dict[str, str]) -> None:
    elsewhere = token("other-audience", f"serving.knative.dev/service/{NAMESPACE}/elsewhere")
    refused = call(guarded["host"], data=b"{}", headers={**event_headers("wrong-audience"), **bearer(elsewhere)})
    problem = _refusal(refused, 401)
    # The same body whatever failed: nothing tells a forger which claim to change.
    without = _refusal(call(guarded["host"], data=b"{}", headers=event_headers("no-token-2")), 401)
    fields = ("type", "title", "status", "reason", "detail")
    assert [problem.get(f) for f in fields] == [without.get(f) for f in fields]


def test_a_valid_token_from_a_sender_not_allowed_is_403(guarded: dict[str, str]) -> None:
    intruder = token("intruder", AUDIENCE)
    refused = call(guarded["host"], data=b"{}", headers={**event_headers("not-allowed"), **bearer(intruder)})
    problem = _refusal(refused, 403)
    assert "intruder" not in json.dumps(problem)


# Run in a pod of the function's own image (its Python, the standard library only): what any
# workload in the cluster could send to the function's cluster-local address.
FROM_A_POD = """
import json, os, urllib.error, urllib.request
answers = {}
for case in ("no-token", "other-audience", "not-allowed"):
    headers = {"ce-specversion": "1.0", "ce-id": "from-a-pod-" + case, "ce-source": "/e2e/pod",
               "ce-type": "com.example.oidc", "content-type": "application/json"}
    token = os.environ.get("TOKEN_" + case.upper().replace("-", "_"))
    if token:
        headers["Authorization"] = "Bearer " + token
    try:
        with urllib.request.urlopen(urllib.request.Request(os.environ["TARGET"], data=b"{}", headers=headers),
                                    timeout=60) as answer:
            answers[case] = answer.status
    except urllib.error.HTTPError as refused:
        answers[case] = refused.code
print(json.dumps(answers))
"""


def test_requests_from_another_pod_are_refused(guarded: dict[str, str], guarded_image: str) -> None:
    """Inside the cluster, past the ingress: a pod calls the function's cluster-local address with no
    token, a token for another audience, and a valid token of a service account not allowed."""
    target = kjson("get", "ksvc", NAME, "-n", NAMESPACE)["status"]["address"]["url"]
    env = {"TARGET": target,
           "TOKEN_OTHER_AUDIENCE": token("other-audience", f"serving.knative.dev/service/{NAMESPACE}/elsewhere"),
           "TOKEN_NOT_ALLOWED": token("intruder", AUDIENCE)}
    apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "caller"}, "spec": {
        "restartPolicy": "Never", "containers": [{
            "name": "caller", "image": guarded_image, "imagePullPolicy": "IfNotPresent",
            "command": ["/usr/bin/python3", "-c", FROM_A_POD],
            "env": [{"name": k, "value": v} for k, v in env.items()]}]}})
    def finished() -> str | None:
        phase = kjson("get", "pod", "caller", "-n", NAMESPACE)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    try:
        phase = wait("the caller pod done", finished, timeout=180, every=2)
        log = kubectl("logs", "caller", "-n", NAMESPACE, check=False).stdout
        assert phase == "Succeeded", log[-2000:]
        assert json.loads(log.strip().splitlines()[-1]) == {"no-token": 401, "other-audience": 401, "not-allowed": 403}
    finally:
        kubectl("delete", "pod", "caller", "-n", NAMESPACE, "--wait=false", check=False)


def test_probes_need_no_token(guarded: dict[str, str]) -> None:
    for path in ("/health/liveness", "/health/readiness"):
        answer = call(guarded["host"], method="GET", path=path, timeout=30)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
