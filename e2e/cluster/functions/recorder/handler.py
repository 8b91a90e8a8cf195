"""The cluster e2e's recorder: a second pyfunc function that keeps every CloudEvent POSTed to it
(a Trigger's subscriber, a dead-letter sink, a PingSource's sink) and lists them on GET. One pod
(min-scale = max-scale = 1), in memory: the test reads it back through the ingress."""

import threading

RECORDS: list = []
LOCK = threading.Lock()


def handler(req):
    if req.method == "GET":
        with LOCK:
            return {"events": list(RECORDS)}
    record = {k.lower()[3:]: v for k, v in req.headers.items() if k.lower().startswith("ce-")}
    record["data"] = req.get_data(as_text=True)
    with LOCK:
        RECORDS.append(record)
    return "", 202
