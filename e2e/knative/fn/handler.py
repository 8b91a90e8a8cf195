"""The CloudEvent function the real-Knative e2e runs (e2e/test_knative_*.py).

What it does is steered by the event's data (a JSON object):
  {"sleep": S}           sleep S seconds, then reply
  {"fail": true}         raise (pyfunc answers 500 with its problem body)
  {"status": 429}        answer that status with a plain body (a flask.Response is passed through)
  {"noreply": true}      no reply (pyfunc answers 202)
  {"reply": {...}}       reply attributes to set (subject, extensions); the data is echoed
It is ready (``/health/readiness`` 200) only once the file $READY_FILE exists (default
/tmp/ready), so a test can hold it unready and then release it.
"""

import os
import time

from flask import Response

READY_FILE = os.environ.get("READY_FILE", "/tmp/ready")


def ready():
    return os.path.exists(READY_FILE), f"waiting for {READY_FILE}"


def handler(data, attributes):
    data = data if isinstance(data, dict) else {}
    if data.get("sleep"):
        time.sleep(float(data["sleep"]))
    if data.get("fail"):
        raise RuntimeError("SecretInternalState: the handler failed on purpose")
    if data.get("status"):
        return Response("busy, try again", status=int(data["status"]), mimetype="text/plain")
    if data.get("noreply"):
        return None
    reply = {"type": "com.example.knative.reply", "source": "/e2e/knative"}
    reply.update(data.get("reply") or {})
    return reply, {"echo": data, "path_type": attributes.get("type")}
