"""pyfunc as a Knative Eventing subscriber, with eventing's real delivery code and the CloudEvents Go
SDK: kn-events (e2e/knative/events) drives knative.dev/eventing v0.44.0's kncloudevents.Dispatcher
(what the in-memory channel, the broker filter and the sources send with: reply forwarding,
retries, dead-letter sink) and github.com/cloudevents/sdk-go/v2 v2.15.2 (what eventing builds on)
against the function running behind the real queue-proxy (e2e/knative_parts.py)."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from knative_parts import pod, tool
from pyfunc_e2e import ENV

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def fn(knative_fn_build):
    with pod(knative_fn_build.image) as p:
        p.wait_ready()
        yield p


def kn_events(*args: str) -> dict:
    proc = subprocess.run([tool("kn-events"), *args], env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def ce(data: dict, id_: str = "e-1") -> dict:
    return {"specversion": "1.0", "id": id_, "source": "/e2e/eventing", "type": "com.example.knative",
            "datacontenttype": "application/json", "data": data}


def deliver(fn, data: dict, *flags: str) -> dict:
    return kn_events("deliver", "-target", fn.url, "-event", json.dumps(ce(data)), *flags)


def sink_event(received: dict) -> tuple[dict, object]:
    """(attributes, data) of what a sink received, binary (ce- headers) or structured (JSON body)."""
    h = received["headers"]
    if h.get("Content-Type", "").startswith("application/cloudevents+json"):
        doc = json.loads(received["body"])
        return {k: v for k, v in doc.items() if k != "data"}, doc.get("data")
    attrs = {k[3:].lower(): v for k, v in h.items() if k.startswith("Ce-")}
    return attrs, json.loads(received["body"])


# ---- kncloudevents delivery ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["binary", "json"])
def test_reply_is_forwarded_to_the_reply_sink(fn, fmt):
    out = deliver(fn, {"x": 1}, "-reply", "-format", fmt)
    assert out["error"] is None and out["function_statuses"] == [200], out
    (reply,) = out["reply"]
    attrs, data = sink_event(reply)
    assert attrs["type"] == "com.example.knative.reply" and attrs["source"] == "/e2e/knative"
    assert data["echo"] == {"x": 1}
    # kncloudevents re-encodes in the Trigger's delivery format: structured for json.
    assert ("Ce-Type" in reply["headers"]) == (fmt == "binary")
    assert out["dead_letter"] == []


def test_202_forwards_nothing(fn):
    out = deliver(fn, {"noreply": True}, "-reply", "-dls")
    assert out["error"] is None and out["function_statuses"] == [202], out
    assert out["reply"] == [] and out["dead_letter"] == []


def test_500_is_retried_then_dead_lettered_with_the_problem(fn):
    out = deliver(fn, {"fail": True}, "-reply", "-dls", "-retry", "2")
    assert out["function_statuses"] == [500, 500, 500], out
    assert out["reply"] == []
    (dead,) = out["dead_letter"]
    attrs, data = sink_event(dead)
    assert attrs["knativeerrorcode"] == "500" and attrs["id"] == "e-1"  # the original event
    assert data == {"fail": True}
    problem_text = base64.b64decode(attrs["knativeerrordata"]).decode()
    problem = json.loads(problem_text)
    assert problem["status"] == 500 and problem["reason"]
    # The handler's exception stays in the log: no traceback, class name or message in the event.
    for leak in ("Traceback", "SecretInternalState", "failed on purpose", 'File "'):
        assert leak not in problem_text, problem_text
    assert "RuntimeError" not in problem_text, problem_text


def test_429_is_retried(fn):
    out = deliver(fn, {"status": 429}, "-dls", "-retry", "2")
    assert out["function_statuses"] == [429, 429, 429], out
    (dead,) = out["dead_letter"]
    assert dead["headers"]["Ce-Knativeerrorcode"] == "429"


# ---- sdk-go reads pyfunc's replies ------------------------------------------------------------------

AWKWARD = {
    "subject": "héllo wörld",
    "percent": "100%",
    "quotes": 'say "hi" and \'bye\'',
    "spaces": "  a  b  ",
    "encodedlooking": "a%20b%zz",
}


@pytest.mark.parametrize("mode", ["binary", "structured", "batch"])
def test_sdk_go_reads_replies_exactly(fn, mode):
    reply = {"subject": AWKWARD["subject"], **{k: v for k, v in AWKWARD.items() if k != "subject"}}
    events = [ce({"reply": reply}, "r-1")]
    if mode == "batch":
        events.append(ce({"reply": {"subject": "plain"}}, "r-2"))
    payload = json.dumps(events if mode == "batch" else events[0])
    out = kn_events("read", "-target", fn.url, "-mode", mode, "-event", payload)
    assert out["status"] == 200, out
    # A binary reply whose values would need percent-encoding goes out structured (sdk-go, like
    # most consumers, does not percent-decode ce- headers).
    assert out["mode"] == ("batch" if mode == "batch" else "structured"), out
    got = out["events"][0]
    assert got["type"] == "com.example.knative.reply"
    assert got["subject"] == AWKWARD["subject"], out
    for name, value in AWKWARD.items():
        if name != "subject":
            assert got["extensions"][name] == value, (name, out)
    assert json.loads(got["data"])["echo"] == {"reply": reply}
    if mode == "batch":
        assert [e["subject"] for e in out["events"]] == [AWKWARD["subject"], "plain"]
        assert out["sdk_is_http_batch"] is True, out  # sdk-go's own batch test sees it


def test_sdk_go_reads_a_plain_binary_reply_as_binary(fn):
    """Values that need no percent-encoding keep the binary mode the request came in."""
    out = kn_events("read", "-target", fn.url, "-mode", "binary",
                    "-event", json.dumps(ce({"reply": {"subject": "plain-ascii", "myext": "v1"}})))
    assert out["mode"] == "binary", out
    assert out["events"][0]["subject"] == "plain-ascii"
    assert out["events"][0]["extensions"]["myext"] == "v1"
