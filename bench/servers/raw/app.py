"""The "limit": a raw WSGI app (no framework) on waitress doing the CloudEvent echo by hand.

BENCH_MODE=hello -> GET / answers "Hello, World!" (text/plain).
BENCH_MODE=query -> GET /?name=X answers "Hello, X!" (the query string parsed, as a framework does).
BENCH_MODE=json  -> POST / with a JSON body answers the same JSON (parsed and serialised again).
BENCH_MODE=ce    -> POST / takes a CloudEvent (binary, structured or batch mode) and replies
                    with a new event: type "bench.reply", source "/bench", a fresh id, the same
                    data; the reply uses the request's mode (binary -> binary, structured ->
                    structured, batch -> batch).

It does the minimum a correct runtime must do per request: read the body, check the required
attributes, parse the JSON data and serialise it again, mint a uuid4 id. It is meant as the
upper bound a waitress-based runtime can reach, so it stays deliberately naive and small.
Started as: waitress.serve(app, host=127.0.0.1, port=$PORT, threads=$BENCH_THREADS).
"""

import json
import logging
import os
import uuid
from urllib.parse import parse_qs

import waitress

MODE = os.environ.get("BENCH_MODE", "ce")
REQUIRED = ("specversion", "id", "source", "type")
HELLO = b"Hello, World!"


def _bad(start_response, msg):
    body = msg.encode()
    start_response(
        "400 Bad Request",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _reply_event(ev):
    out = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/bench",
        "type": "bench.reply",
    }
    if "datacontenttype" in ev:
        out["datacontenttype"] = ev["datacontenttype"]
    if "data" in ev:
        out["data"] = ev["data"]
    elif "data_base64" in ev:
        out["data_base64"] = ev["data_base64"]
    return out


def app(environ, start_response):
    if MODE == "query":
        name = parse_qs(environ.get("QUERY_STRING", "")).get("name", ["World"])[0]
        body = f"Hello, {name}!".encode()
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]
    if MODE == "json":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            value = json.loads(environ["wsgi.input"].read(length))
        except ValueError:
            return _bad(start_response, "bad json")
        body = json.dumps(value).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if MODE == "hello":
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
        )
        return [HELLO]

    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    ctype = environ.get("CONTENT_TYPE", "")

    if ctype.startswith("application/cloudevents-batch+json"):
        try:
            events = json.loads(body)
        except ValueError:
            return _bad(start_response, "bad batch")
        if not isinstance(events, list) or any(
            not isinstance(e, dict) or any(k not in e for k in REQUIRED) for e in events
        ):
            return _bad(start_response, "bad batch")
        out = json.dumps([_reply_event(e) for e in events]).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/cloudevents-batch+json"),
                ("Content-Length", str(len(out))),
            ],
        )
        return [out]

    if ctype.startswith("application/cloudevents+json"):
        try:
            ev = json.loads(body)
        except ValueError:
            return _bad(start_response, "bad event")
        if not isinstance(ev, dict) or any(k not in ev for k in REQUIRED):
            return _bad(start_response, "missing attributes")
        out = json.dumps(_reply_event(ev)).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/cloudevents+json"),
                ("Content-Length", str(len(out))),
            ],
        )
        return [out]

    # binary mode
    for k in REQUIRED:
        if "HTTP_CE_" + k.upper() not in environ:
            return _bad(start_response, "missing ce-" + k)
    if ctype.startswith("application/json") or ctype.endswith("+json"):
        try:
            data = json.loads(body)
        except ValueError:
            return _bad(start_response, "bad json")
        out = json.dumps(data).encode()
    else:
        out = body
    headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", str(uuid.uuid4())),
        ("ce-source", "/bench"),
        ("ce-type", "bench.reply"),
        ("Content-Length", str(len(out))),
    ]
    if ctype:
        headers.append(("Content-Type", ctype))
    start_response("200 OK", headers)
    return [out]


if __name__ == "__main__":
    # waitress logs "Task queue depth is N" at WARNING for every request that waits for a
    # worker thread, i.e. for nearly every request under load. The limit silences it.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    waitress.serve(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8080")),
        threads=int(os.environ.get("BENCH_THREADS", "4")),
        ident="raw",
    )
