"""A Knative func Python function (func-python's instance contract): echoes the request, streams,
fails on demand, and reports readiness from its configuration (READY)."""

import json
import logging


def new():
    return Function()


class Function:
    def __init__(self):
        self.cfg = None

    async def handle(self, scope, receive, send):
        body, messages = b"", 0
        while True:
            message = await receive()
            messages += 1
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/raise":
            raise ValueError("a secret that must not leak")
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [[b"content-type", b"text/event-stream"]]})
            for i in range(4):
                await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/":
            # func's HTTP template answers exactly this.
            await send({"type": "http.response.start", "status": 200, "headers": [[b"content-type", b"text/plain"]]})
            await send({"type": "http.response.body", "body": b"OK"})
            return
        info = {"method": scope["method"], "path": path, "query": scope["query_string"].decode(),
                "length": len(body), "sha": __import__("hashlib").sha256(body).hexdigest(),
                "greeting": self.cfg.get("GREETING"),
                "headers": sorted(k.decode() for k, _ in scope["headers"] if k.startswith(b"x-"))}
        status = int(scope["query_string"].decode().partition("status=")[2] or 200)
        await send({"type": "http.response.start", "status": status,
                    "headers": [[b"content-type", b"application/json"], [b"x-function", b"echo"]]})
        await send({"type": "http.response.body", "body": json.dumps(info).encode()})

    def start(self, cfg):
        self.cfg = cfg
        logging.info("Function starting")

    def stop(self):
        logging.info("Function stopping")

    def alive(self):
        return True, "Alive"

    def ready(self):
        return self.cfg.get("READY", "yes") == "yes", "Ready"
