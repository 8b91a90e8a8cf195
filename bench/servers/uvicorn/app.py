"""The workers scenario (bench/workers_bench.py) as a bare ASGI app under ``uvicorn --workers N``:
about 2 ms of pure Python per request, the same loop as pyfunc's and functions-framework's.

A bare ASGI callable (no framework) so that the column is uvicorn itself: its process model,
its HTTP parser (httptools when installed, else h11) and its event loop.
"""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while True:  # the request body, if any
        message = await receive()
        if not message.get("more_body"):
            break
    total = 0
    for i in range(15000):
        total += i * i
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
