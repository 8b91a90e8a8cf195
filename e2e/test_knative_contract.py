"""Knative's runtime contract, emulated with docker: $PORT, K_* variables, a read-only root with
only /tmp writable, an arbitrary non-root uid, and SIGTERM (`docker stop`) draining requests."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from cloudevents.http import CloudEvent, from_http, to_binary

from pyfunc_e2e import METRICS, running, sh

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore:to_(binary|structured) is deprecated"),
]

KNATIVE = ("-e", "PORT=9090", "-e", "K_SERVICE=fn", "-e", "K_REVISION=fn-00001",
           "-e", "K_CONFIGURATION=fn", "--read-only", "--tmpfs", "/tmp", "-u", "123456:0")


def test_cloudevent_function_under_knative_contract(echo_build):
    with running(echo_build.image, *KNATIVE, port=9090) as fn:
        METRICS["cold_start_s.cloudevent-echo (run -> first 200)"] = fn.ready_seconds
        headers, body = to_binary(
            CloudEvent({"type": "com.example.ping", "source": "/knative"}, {"k": "v"}))
        r = requests.post(fn.url, headers=headers, data=body, timeout=10)
        assert r.status_code == 200, r.text
        assert from_http(r.headers, r.content).data == {"k": "v"}
        assert requests.get(fn.url + "/health/liveness", timeout=5).status_code == 200
        assert "9090" in fn.logs()
        assert fn.state("Running") == "true"
    # Start latency, median of a few runs (the first includes page-cache warm-up).
    samples = []
    for _ in range(3):
        with running(echo_build.image, *KNATIVE, port=9090) as again:
            samples.append(again.ready_seconds)
    METRICS["cold_start_s.cloudevent-echo median of 3"] = sorted(samples)[1]


def test_dependencies_layer_under_knative_contract(requirements_builds):
    # The dependencies layer must be readable by any uid on a read-only root.
    with running(requirements_builds["handler_only"].image, *KNATIVE, port=9090) as fn:
        METRICS["cold_start_s.with-requirements (run -> first 200)"] = fn.ready_seconds
        headers, body = to_binary(
            CloudEvent({"type": "com.example.measure", "source": "/knative"}, {"bytes": 5}))
        r = requests.post(fn.url, headers=headers, data=body, timeout=10)
        assert r.status_code == 200, r.text
        assert from_http(r.headers, r.content).data["human"] == "5 Bytes"


def test_sigterm_drains_in_flight_request(http_build):
    with running(http_build.image, *KNATIVE, port=9090) as fn:
        result: dict = {}

        def slow_request():
            try:
                r = requests.post(fn.url, params={"sleep": "3"}, json={"name": "drain"}, timeout=30)
                result["status"], result["body"] = r.status_code, r.json()
            except requests.RequestException as exc:
                result["error"] = repr(exc)

        client = threading.Thread(target=slow_request)
        client.start()
        time.sleep(1.0)  # the request is in the handler now
        stop_started = time.monotonic()
        sh("docker", "stop", "-t", "30", fn.name)  # SIGTERM, then SIGKILL after 30 s
        stopped_after = time.monotonic() - stop_started
        client.join(timeout=30)
        assert result.get("status") == 200, f"{result} / logs:\n{fn.logs()}"
        assert result["body"] == {"hello": "drain", "method": "POST"}
        assert fn.state("ExitCode") == "0", fn.logs()
        assert stopped_after < 25, "exited on SIGKILL, not on SIGTERM"
        METRICS["sigterm_drain_stop_s (3 s request in flight)"] = round(stopped_after, 2)
