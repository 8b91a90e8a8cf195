"""The cluster e2e's HTTP worker: awaits `sleep` seconds (an async handler: the waits overlap on
pyfunc's event loop, as I/O-bound functions do), then says which revision and pod answered."""

import asyncio
import os


async def handler(body: dict):
    await asyncio.sleep(float(body.get("sleep", 0)))
    return {"version": os.environ.get("VERSION", ""), "pod": os.environ.get("HOSTNAME", "")}
