"""GET /metrics (PYFUNC_METRICS=true): the counters, the access log, and a real Prometheus scraping it."""

from __future__ import annotations

import subprocess
import sys
import time

import requests

from support import make_event, send

HANDLER = """
import time
import pyfunc

def handler(event):
    data = event.data or {}
    if "retry" in data:
        raise pyfunc.Retry("r")
    if "drop" in data:
        raise pyfunc.Drop("d")
    if "boom" in data:
        raise RuntimeError("boom")
    if "sleep" in data:
        time.sleep(data["sleep"])
    if "none" in data:
        return None
    return {"type": "reply", "source": "/t"}, data
"""

ON = {"PYFUNC_METRICS": "true", "PYFUNC_TIMEOUT": "1"}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    want = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    for line in text.splitlines():
        if line.startswith(name + want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_counts_every_outcome_by_type(serve):
    server = serve(HANDLER, env=ON)
    for data, kind in [({"a": 1}, "t.reply"), ({"none": 1}, "t.none"), ({"retry": 1}, "t.retry"),
                       ({"drop": 1}, "t.drop"), ({"boom": 1}, "t.boom"), ({"sleep": 3}, "t.slow")]:
        send(server.url, make_event(data, type=kind))
    requests.post(server.url, data=b"not an event", headers={"Content-Type": "text/plain"}, timeout=10)
    text = requests.get(server.url + "/metrics", timeout=10).text
    for outcome, kind in [("reply", "t.reply"), ("no-reply", "t.none"), ("retry", "t.retry"), ("drop", "t.drop"),
                          ("error", "t.boom"), ("timeout", "t.slow")]:
        assert sample(text, "pyfunc_invocations_total", outcome=outcome, type=kind) == 1, outcome
    assert sample(text, "pyfunc_invocations_total", outcome="rejected", type="") == 1
    assert sample(text, "pyfunc_invocation_duration_seconds_count", outcome="reply") == 1
    assert sample(text, "pyfunc_invocation_duration_seconds_sum", outcome="timeout") >= 1
    assert sample(text, "pyfunc_in_flight_requests") == 0
    assert 0 < sample(text, "pyfunc_startup_seconds") < 30
    assert sample(text, "process_resident_memory_bytes") > 0


def test_batches_count_each_event(serve):
    server = serve(HANDLER, env=ON)
    batch = [{"specversion": "1.0", "id": str(i), "source": "/b", "type": "t.batch", "data": {"i": i}}
             for i in range(3)]
    response = requests.post(server.url, json=batch,
                             headers={"Content-Type": "application/cloudevents-batch+json"}, timeout=10)
    assert response.status_code == 200
    text = requests.get(server.url + "/metrics", timeout=10).text
    assert sample(text, "pyfunc_invocations_total", outcome="reply", type="t.batch") == 3
    assert sample(text, "pyfunc_batch_events_count") == 1 and sample(text, "pyfunc_batch_events_sum") == 3


def test_in_flight_gauge(serve):
    import threading

    server = serve(HANDLER, env={"PYFUNC_METRICS": "true"})
    thread = threading.Thread(target=send, args=(server.url, make_event({"sleep": 1.5})))
    thread.start()
    time.sleep(0.5)
    assert sample(requests.get(server.url + "/metrics", timeout=10).text, "pyfunc_in_flight_requests") == 1
    thread.join()


def test_scrapes_are_not_in_the_access_log(serve):
    server = serve(HANDLER, env=ON)
    for _ in range(3):
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 200
    send(server.url, make_event({"a": 1}))
    time.sleep(0.3)
    logs = server.logs()
    assert "/metrics" not in logs
    assert "POST / 200" in logs


def test_off_by_default_metrics_is_the_functions_path(serve):
    server = serve("def handler(req):\n    return req.path\n")
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200 and response.text == "/metrics"


def test_prometheus_client_is_imported_only_when_on(tmp_path):
    (tmp_path / "handler.py").write_text("def handler(event):\n    return None\n")
    code = ("import sys\nfrom pyfunc.testing import FunctionClient\n"
            f"with FunctionClient({str(tmp_path)!r}, metrics={{flag}}):\n"
            "    print('prometheus_client' in sys.modules, 'pyfunc._metrics' in sys.modules)\n")
    for flag, expected in (("False", "False False"), ("True", "True True")):
        out = subprocess.run([sys.executable, "-c", code.replace("{flag}", flag)], capture_output=True,
                             text=True, check=True).stdout
        assert out.strip() == expected


def test_a_real_prometheus_sees_the_invocations(serve, prometheus):
    server = serve(HANDLER, env=ON)
    for i in range(7):
        assert send(server.url, make_event({"i": i}, id=f"p{i}", type="t.prom")).status_code == 200
    prom = prometheus([f"127.0.0.1:{server.port}"])
    query = 'sum(pyfunc_invocations_total{outcome="reply",type="t.prom"})'
    deadline = time.monotonic() + 60
    value = None
    while time.monotonic() < deadline:
        try:
            result = requests.get(prom.url + "/api/v1/query", params={"query": query}, timeout=5).json()
            if result["status"] == "success" and result["data"]["result"]:
                value = float(result["data"]["result"][0]["value"][1])
                if value == 7:
                    break
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.5)
    assert value == 7
    up = requests.get(prom.url + "/api/v1/query", params={"query": "up"}, timeout=5).json()
    assert up["data"]["result"][0]["value"][1] == "1"


ASYNC_HANDLER = """
import asyncio
import pyfunc

async def handler(event):
    data = event.data or {}
    if "sleep" in data:
        await asyncio.sleep(data["sleep"])
    if "retry" in data:
        raise pyfunc.Retry("r")
    if "drop" in data:
        raise pyfunc.Drop("d")
    return {"type": "reply", "source": "/t"}, data
"""


def test_async_handlers_are_counted_and_held_in_flight(serve):
    import threading

    server = serve(ASYNC_HANDLER, env={"PYFUNC_METRICS": "true", "PYFUNC_TIMEOUT": "1"})
    thread = threading.Thread(target=send, args=(server.url, make_event({"sleep": 0.8}, type="a.slow")))
    thread.start()
    time.sleep(0.4)  # the invocation waits on the event loop, no worker holds it: still in flight
    assert sample(requests.get(server.url + "/metrics", timeout=10).text, "pyfunc_in_flight_requests") == 1
    thread.join()
    batch = [{"specversion": "1.0", "id": str(i), "source": "/b", "type": "a.batch", "data": data}
             for i, data in enumerate([{}, {"retry": 1}, {"drop": 1}, {"sleep": 2}])]
    response = requests.post(server.url, json=batch,
                             headers={"Content-Type": "application/cloudevents-batch+json"}, timeout=10)
    # The time ran out on the last event; the ones before it keep their outcomes, and the batch
    # gets the first retriable failure's status (the Retry's).
    assert response.status_code == 503
    assert [e["status"] for e in response.json()["events"]] == [200, 503, 422, 504]
    send(server.url, make_event({"retry": 1}, type="a.retry"))
    text = requests.get(server.url + "/metrics", timeout=10).text
    assert sample(text, "pyfunc_in_flight_requests") == 0
    assert sample(text, "pyfunc_invocations_total", outcome="reply", type="a.slow") == 1
    assert sample(text, "pyfunc_invocations_total", outcome="retry", type="a.retry") == 1
    assert sample(text, "pyfunc_invocations_total", outcome="reply", type="a.batch") == 1
    assert sample(text, "pyfunc_invocations_total", outcome="retry", type="a.batch") == 1
    assert sample(text, "pyfunc_invocations_total", outcome="drop", type="a.batch") == 1
    assert sample(text, "pyfunc_invocations_total", outcome="timeout", type="a.batch") == 1
