# The I/O scenario (bench/io.py): an async handler that waits 1 s, as for a slow backend.
import asyncio


async def handler(req):
    await asyncio.sleep(1)
    return "done"
