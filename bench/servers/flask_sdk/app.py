"""A hand-written Flask + CloudEvents SDK (1.x) app on waitress: what a user would write
without a function runtime.

BENCH_MODE=hello -> GET / returns "Hello, World!".
BENCH_MODE=query -> GET /?name=X returns "Hello, X!" (request.args).
BENCH_MODE=json  -> POST / returns the JSON body it got (request.get_json()).
BENCH_MODE=ce    -> POST / parses the event with cloudevents.http.from_http and replies with a
                    new CloudEvent (type bench.reply, source /bench, data echoed) in the
                    request's mode (to_structured for structured requests, else to_binary).
                    Batches are not supported by the SDK (n/a in the tables).
Started as: waitress.serve(app, threads=$BENCH_THREADS), as Flask's deployment docs show.
"""

import os

import waitress
from cloudevents.http import CloudEvent, from_http, to_binary, to_structured
from flask import Flask, request

MODE = os.environ.get("BENCH_MODE", "ce")
app = Flask(__name__)


if MODE == "hello":

    @app.route("/", methods=["GET"])
    def hello():
        return "Hello, World!"

elif MODE == "query":

    @app.route("/", methods=["GET"])
    def query():
        return f"Hello, {request.args.get('name', 'World')}!"

elif MODE == "json":

    @app.route("/", methods=["POST"])
    def echo_json():
        return request.get_json()

else:

    @app.route("/", methods=["POST"])
    def echo():
        event = from_http(request.headers, request.get_data())
        reply = CloudEvent({"type": "bench.reply", "source": "/bench"}, event.data)
        if request.mimetype == "application/cloudevents+json":
            headers, body = to_structured(reply)
        else:
            headers, body = to_binary(reply)
            headers["content-type"] = event.get("datacontenttype") or request.content_type
        return body, 200, headers


if __name__ == "__main__":
    waitress.serve(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8080")),
        threads=int(os.environ.get("BENCH_THREADS", "4")),
        ident="flask",
    )
