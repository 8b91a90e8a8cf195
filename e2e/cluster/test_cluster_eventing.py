"""pyfunc under Knative Eventing (scripts/versions.env) on the real cluster: a Broker (MT
channel-based, in-memory channel) and Triggers with attribute filters deliver to pyfunc functions;
a reply goes back into the Broker and on to a second function; pyfunc.Drop is dead-lettered,
pyfunc.Retry retried; a redelivery to another pod is deduplicated through Redis
(PYFUNC_DEDUPE=redis://); a PingSource delivers to a function; Eventing's RequestReply answers an
HTTP request with the function's reply, which pyfunc correlates.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests

from cluster_e2e import (
    NAMESPACE,
    apply,
    call,
    kjson,
    pods,
    ready,
    resource_ready,
    service,
    wait,
)

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.timeout(1200)]

ONE_POD = {"autoscaling.knative.dev/min-scale": "1", "autoscaling.knative.dev/max-scale": "1"}


@pytest.fixture(scope="module")
def recorder(recorder_image: str) -> str:
    apply(service("recorder", recorder_image, annotations=ONE_POD))
    return ready("recorder")


def records(host: str) -> list[dict]:
    return call(host, method="GET", timeout=30).json()["events"]


@pytest.fixture(scope="module")
def broker(events_image: str, recorder: str) -> str:
    """Broker `default`; Trigger `to-events` (filter e2etarget=events) -> the events function with
    the recorder as dead-letter sink; Trigger `replies` (filter source=/events) -> the recorder."""
    apply({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "default"}})
    apply(service("events", events_image, annotations=ONE_POD))
    ready("events")
    sink = {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "recorder"}}
    events = {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "events"}}
    apply({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "to-events"},
           "spec": {"broker": "default", "filter": {"attributes": {"e2etarget": "events"}},
                    "subscriber": events,
                    "delivery": {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.5S",
                                 "deadLetterSink": sink}}})
    apply({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "replies"},
           "spec": {"broker": "default", "filter": {"attributes": {"source": "/events"}}, "subscriber": sink}})
    for name in ("to-events", "replies"):
        resource_ready("trigger", name)
    resource_ready("broker", "default")
    # The broker's ingress from the host: its Service's cluster IP (kube-proxy's rules).
    ip = kjson("get", "service", "broker-ingress", "-n", "knative-eventing")["spec"]["clusterIP"]
    return f"http://{ip}/{NAMESPACE}/default"


def send(url: str, kind: str, data: dict, *, target: str = "events", event_id: str = "") -> str:
    event_id = event_id or f"{kind}-{uuid.uuid4().hex[:8]}"
    r = requests.post(url, data=json.dumps(data), timeout=30, headers={
        "ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/e2e/cluster", "ce-type": kind,
        "ce-e2etarget": target, "content-type": "application/json"})
    assert r.status_code == 202, (r.status_code, r.text)
    return event_id


def _find(host: str, pred) -> dict:
    return wait("the recorder got it", lambda: next((r for r in records(host) if pred(r)), None), timeout=180, every=2)


def test_trigger_filter_reply_back_through_the_broker(broker: str, recorder: str) -> None:
    event_id = send(broker, "e2e.hello", {"n": 1})
    reply = _find(recorder, lambda r: r.get("type") == "e2e.reply" and json.loads(r["data"])["id"] == event_id)
    assert json.loads(reply["data"])["received"] == {"n": 1}
    assert reply["source"] == "/events"
    # Filtered out: no e2etarget=events, so the events function never saw it (no reply for it).
    other = send(broker, "e2e.hello", {"n": 2}, target="elsewhere")
    send(broker, "e2e.hello", {"n": 3})  # a later event that does pass, as a marker
    _find(recorder, lambda r: r.get("type") == "e2e.reply" and json.loads(r["data"])["received"] == {"n": 3})
    assert not [r for r in records(recorder) if r.get("type") == "e2e.reply" and json.loads(r["data"])["id"] == other]


def test_drop_goes_to_the_dead_letter_sink_at_once(broker: str, recorder: str) -> None:
    event_id = send(broker, "e2e.drop", {"bad": True})
    dead = _find(recorder, lambda r: r.get("id") == event_id and r.get("type") == "e2e.drop")
    assert dead["knativeerrorcode"] == "422"
    data = dead.get("knativeerrordata", "")
    try:  # the body of the 422 (pyfunc's problem JSON), base64 in some eventing releases
        data += base64.b64decode(data, validate=True).decode()
    except ValueError:
        pass
    assert "can never be processed" in data


def test_retry_is_redelivered(broker: str, recorder: str) -> None:
    event_id = send(broker, "e2e.retry", {"try": 1})
    retried = _find(recorder, lambda r: r.get("type") == "e2e.retried" and json.loads(r["data"])["id"] == event_id)
    assert json.loads(retried["data"])["attempts"] == 2
    assert not [r for r in records(recorder) if r.get("id") == event_id and r.get("knativeerrorcode")]


def test_dedup_across_two_pods_through_redis(events_image: str, redis_ref: str) -> None:
    """The same event (source + id) sent to each of two pods: the second pod answers with the
    reply the first one stored in Redis, without running the handler."""
    apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "redis"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "redis"}},
                    "template": {"metadata": {"labels": {"app": "redis"}}, "spec": {"containers": [{
                        "name": "redis", "image": redis_ref, "imagePullPolicy": "IfNotPresent",
                        "args": ["--bind", "0.0.0.0", "--port", "6379", "--save", "", "--appendonly", "no",
                                 "--protected-mode", "no"],
                        "ports": [{"containerPort": 6379}],
                        "resources": {"limits": {"memory": "64Mi"}}}]}}}})
    apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis"},
           "spec": {"selector": {"app": "redis"}, "ports": [{"port": 6379}]}})
    apply(service("dedup", events_image, annotations={
        "autoscaling.knative.dev/min-scale": "2", "autoscaling.knative.dev/max-scale": "2"},
        env={"PYFUNC_DEDUPE": f"redis://redis.{NAMESPACE}.svc.cluster.local:6379/0"}))
    ready("dedup")
    two = wait("two dedup pods", lambda: (p := pods("dedup")) and len(p) == 2 and all(
        c.get("ready") for q in p for c in q["status"].get("containerStatuses", [])) and p, timeout=300)
    headers = {"ce-specversion": "1.0", "ce-id": f"dup-{uuid.uuid4().hex[:8]}", "ce-source": "/e2e/cluster",
               "ce-type": "e2e.dedup", "content-type": "application/json"}
    replies = []
    for pod in two:  # straight to each pod's queue-proxy, as a redelivery to another pod would go
        r = requests.post(f"http://{pod['status']['podIP']}:8012/", data="{}", headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        replies.append(r.json())
    assert replies[0]["pod"] == two[0]["metadata"]["name"]
    assert replies[1] == replies[0], "the second pod ran the handler again"


def test_pingsource_delivers_to_a_function(recorder: str) -> None:
    apply({"apiVersion": "sources.knative.dev/v1", "kind": "PingSource", "metadata": {"name": "ping"},
           "spec": {"schedule": "* * * * *", "contentType": "application/json", "data": '{"ping": "e2e"}',
                    "sink": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "recorder"}}}})
    resource_ready("pingsource", "ping")
    got = _find(recorder, lambda r: r.get("type") == "dev.knative.sources.ping")
    assert json.loads(got["data"]) == {"ping": "e2e"}


def test_request_reply_answers_with_the_function_s_reply(broker: str) -> None:
    """Eventing's RequestReply (v1alpha1) stamps the request with ``correlationid``, sends it into the
    Broker and holds the HTTP request until an event whose ``replyid`` matches comes back. The events
    function knows nothing of it: pyfunc carries the correlation onto the reply (pyfunc/_carry.py)."""
    apply({"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "RequestReply", "metadata": {"name": "ask"},
           "spec": {"brokerRef": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}})
    resource_ready("requestreply", "ask")
    ip = kjson("get", "service", "request-reply", "-n", "knative-eventing")["spec"]["clusterIP"]

    def ask() -> requests.Response | None:
        event_id = f"ask-{uuid.uuid4().hex[:8]}"
        r = requests.post(f"http://{ip}/{NAMESPACE}/ask", data=json.dumps({"n": 7}), timeout=40, headers={
            "ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/e2e/cluster", "ce-type": "e2e.hello",
            "ce-e2etarget": "events", "content-type": "application/json"})
        # 500 until the data plane has read the RequestReply's key, which the controller makes on demand.
        return r if r.status_code != 500 else None

    answer = wait("RequestReply's answer", ask, timeout=300, every=3)
    assert answer.status_code == 200, (answer.status_code, answer.text)
    asked = json.loads(answer.content)["id"]
    assert answer.headers["ce-type"] == "e2e.reply" and answer.headers["ce-source"] == "/events"
    assert json.loads(answer.content) == {"id": asked, "received": {"n": 7}}
    assert answer.headers["ce-id"] != asked, "the reply reuses the request's id"
    # <request id>:<the id sealed with the RequestReply's key>:<data-plane replica> (pkg/requestreply)
    assert answer.headers["ce-replyid"].startswith(f"{asked}:"), answer.headers
