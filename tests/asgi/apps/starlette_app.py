"""A Starlette service: JSON echo, SSE, lifespan state, its own 404s and error page."""

import asyncio
import contextlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from lifespan"}
    print("starlette lifespan shutdown", flush=True)


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({
        "method": request.method, "path": request.url.path, "query": dict(request.query_params),
        "length": len(body), "json": request.headers.get("content-type") == "application/json" and await request.json(),
        "greeting": request.state.greeting, "header": request.headers.get("x-thing"),
    }, headers={"X-Echo": "1"})


async def sse(request: Request) -> StreamingResponse:
    count = int(request.query_params.get("n", "3"))

    async def events():
        for i in range(count):
            yield f"data: {i}\n\n"
            await asyncio.sleep(0)

    return StreamingResponse(events(), media_type="text/event-stream")


gate = asyncio.Event()


async def gated(request: Request) -> StreamingResponse:
    """The second event is produced only once /open has been called (tests/asgi/test_frameworks.py)."""
    gate.clear()

    async def events():
        yield "data: first\n\n"
        await gate.wait()
        yield "data: second\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def open_gate(request: Request) -> PlainTextResponse:
    gate.set()
    return PlainTextResponse("open")


async def boom(request: Request) -> PlainTextResponse:
    raise RuntimeError("the secret in starlette")


app = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
                        Route("/sse", sse), Route("/boom", boom),
                        Route("/gated", gated), Route("/open", open_gate)], lifespan=lifespan)
