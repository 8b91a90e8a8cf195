"""Google functions-framework (3.x) functions, run as its docs say:
    functions-framework --target=hello   (HTTP)
    functions-framework --target=echo    (CloudEvent, declared with the decorator)
    functions-framework --target=sleep   (the I/O scenario, bench/io.py: blocks 1 s)
The server is gunicorn (1 worker, gthread, THREADS = 4 x cpu_count by default).

The framework cannot send a reply event: a cloud_event function's return value is ignored
and the HTTP reply is 200 "OK". The echo still builds the reply event a user would build,
so the handler work is comparable; the tables mark this column "no reply".
"""

import time

import functions_framework
from cloudevents.http import CloudEvent


@functions_framework.http
def hello(request):
    return "Hello, World!"


@functions_framework.cloud_event
def echo(event):
    CloudEvent({"type": "bench.reply", "source": "/bench"}, event.data)


@functions_framework.http
def sleep(request):
    time.sleep(1)
    return "done"


@functions_framework.http
def cpu(request):
    """The workers scenario (bench/workers_bench.py): about 2 ms of pure Python per request."""
    total = 0
    for i in range(15000):
        total += i * i
    return "ok"
