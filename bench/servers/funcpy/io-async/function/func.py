"""Knative func-python function for the I/O scenario (bench/io.py): waits 1 s, then answers."""

import asyncio


def new():
    return Function()


class Function:
    async def handle(self, scope, receive, send):
        await asyncio.sleep(1)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [[b"content-type", b"text/plain"]]})
        await send({"type": "http.response.body", "body": b"done"})
