"""pyfunc behind Knative's real queue-proxy (knative.dev/serving v0.44.0 cmd/queue), run as in a pod:
the pod spec Knative's reconcilers make for deploy/service.yaml (kn-validate -pod), a pause
container holding the network namespace, the function and queue-proxy joined to it, and the
kubelet's probe and deletion sequence (e2e/knative_parts.py)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from cloudevents.http import CloudEvent, from_http, to_binary, to_structured

from knative_parts import KUBELET_PROBE, MANIFEST, delete, pod

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore:to_(binary|structured) is deprecated"),
]


def event(data: dict, type_: str = "com.example.knative") -> CloudEvent:
    return CloudEvent({"type": type_, "source": "/e2e/queue-proxy"}, data)


def test_pod_spec_is_knatives(knative_fn_build):
    """What the pod runs comes from Knative's own reconciler code, not from this test."""
    with pod(knative_fn_build.image) as p:
        env = {e["name"]: e.get("value") for e in p.queue["env"]}
        assert env["USER_PORT"] == "8080" and env["QUEUE_SERVING_PORT"] == "8012"
        assert env["REVISION_TIMEOUT_SECONDS"] == "300" and env["CONTAINER_CONCURRENCY"] == "0"
        probe = json.loads(env["SERVING_READINESS_PROBE"])
        assert probe["httpGet"]["path"] == "/health/readiness" and probe["httpGet"]["port"] == 8080
        assert "periodSeconds" not in probe  # aggressive startup probing stays on
        assert "readinessProbe" not in p.user  # moved to queue-proxy
        # The user container gets PORT and K_*; the timeouts and concurrency only go to queue-proxy.
        user_env = {e["name"] for e in p.user["env"]}
        assert {"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"} <= user_env
        assert not user_env & {"REVISION_TIMEOUT_SECONDS", "CONTAINER_CONCURRENCY"}, user_env
        assert p.user["lifecycle"]["preStop"]["httpGet"] == {"path": "/wait-for-drain", "port": 8022}
        assert p.spec["terminationGracePeriodSeconds"] == 300
        p.wait_ready()


def test_readiness_through_queue_proxy(knative_fn_build):
    with pod(knative_fn_build.image, ready=False) as p:
        # Until the function's ready() hook says so, kubelet's probe through queue-proxy fails (it
        # times out while queue-proxy probes the function; a plain request there gets 503).
        start = time.monotonic()
        seen = set()
        while time.monotonic() - start < 4:
            try:
                seen.add(p.probe())
            except requests.ConnectionError:
                seen.add("refused")  # queue-proxy still starting
            time.sleep(0.2)
        assert None in seen and 200 not in seen, (seen, p.logs())
        assert requests.get(p.url, headers=KUBELET_PROBE, timeout=15).status_code == 503
        assert requests.get(p.user_url + "/health/readiness", timeout=5).status_code == 503
        p.make_ready()
        assert p.wait_ready(deadline=15) < 15
        headers, body = to_binary(event({"hi": 1}))
        r = requests.post(p.url, headers=headers, data=body, timeout=10)
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def ready_pod(knative_fn_build):
    with pod(knative_fn_build.image) as p:
        p.wait_ready()
        yield p


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_event_through_queue_proxy(ready_pod, mode):
    encode = to_binary if mode == "binary" else to_structured
    headers, body = encode(event({"mode": mode}))
    r = requests.post(ready_pod.url, headers=headers, data=body, timeout=10)
    assert r.status_code == 200, r.text
    reply = from_http(r.headers, r.content)
    assert reply["type"] == "com.example.knative.reply"
    assert reply.data["echo"] == {"mode": mode}
    assert ("ce-id" in r.headers) == (mode == "binary")


def test_batch_through_queue_proxy(ready_pod):
    batch = [{"specversion": "1.0", "id": str(i), "source": "/e2e", "type": "com.example.knative",
              "data": {"n": i}} for i in range(3)]
    r = requests.post(ready_pod.url, data=json.dumps(batch), timeout=10,
                      headers={"Content-Type": "application/cloudevents-batch+json"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/cloudevents-batch+json")
    assert [e["data"]["echo"] for e in r.json()] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_any_path_reaches_the_function(ready_pod):
    """Knative routes every path of the Service's URL to the pod; a CloudEvent function must take
    events POSTed to any path (a Trigger's subscriber URI often has one)."""
    headers, body = to_binary(event({"path": True}))
    r = requests.post(ready_pod.url + "/some/path", headers=headers, data=body, timeout=10)
    assert r.status_code == 200, r.text
    assert from_http(r.headers, r.content).data["echo"] == {"path": True}
    # Health paths stay reserved for the probes, even through queue-proxy.
    assert requests.get(ready_pod.url + "/health/readiness", timeout=5).status_code == 200


def test_container_concurrency_1_queues_in_queue_proxy(knative_fn_build, tmp_path):
    manifest = tmp_path / "service.yaml"
    text = MANIFEST.read_text()
    assert "containerConcurrency: 0" in text
    manifest.write_text(text.replace("containerConcurrency: 0", "containerConcurrency: 1"))
    with pod(knative_fn_build.image, manifest) as p:
        assert {"name": "CONTAINER_CONCURRENCY", "value": "1"} in p.queue["env"]
        p.wait_ready()
        done: dict = {}
        t0 = time.monotonic()

        def slow(i: int) -> None:
            headers, body = to_binary(event({"sleep": 2, "i": i}))
            r = requests.post(p.url, headers=headers, data=body, timeout=30)
            done[i] = (r.status_code, time.monotonic() - t0)

        threads = [threading.Thread(target=slow, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert [done[i][0] for i in range(2)] == [200, 200], (done, p.logs())
        first, last = sorted(s for _, s in done.values())
        # Serialised by queue-proxy: one after the other, not side by side.
        assert first < 3.5 and last >= 3.9, done


def test_pod_deletion_lets_a_70s_request_finish(knative_fn_build):
    """kubelet deletes the pod while a 70 s request is in flight: preStop /wait-for-drain and SIGTERM
    to queue-proxy at once, SIGTERM to the function when the hook returns (30 s without new
    requests), SIGKILL only at terminationGracePeriodSeconds (= timeoutSeconds, 300)."""
    with pod(knative_fn_build.image) as p:
        p.wait_ready()
        result: dict = {}
        t0 = time.monotonic()

        def long_request() -> None:
            headers, body = to_binary(event({"sleep": 70}))
            try:
                r = requests.post(p.url, headers=headers, data=body, timeout=120)
                result["status"] = r.status_code
                result["data"] = from_http(r.headers, r.content).data if r.status_code == 200 else r.text
            except requests.RequestException as exc:
                result["error"] = repr(exc)
            result["seconds"] = time.monotonic() - t0

        client = threading.Thread(target=long_request)
        client.start()
        time.sleep(2)  # in the handler now
        timings = delete(p)
        client.join(timeout=120)
        assert result.get("status") == 200, (result, timings, p.logs())
        assert result["data"]["echo"] == {"sleep": 70}
        assert result["seconds"] >= 70
        assert timings["prestop_status"] == 200 and 28 <= timings["prestop_returned"] <= 60, timings
        assert not timings.get("user_killed") and not timings.get("queue_killed"), timings
        assert timings["user_exit_code"] == "0", (timings, p.logs("user"))
        assert timings["user_exited"] < timings["grace"], timings
