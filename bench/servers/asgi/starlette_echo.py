"""The Starlette JSON echo of the ASGI bench (bench/asgi_bench.py): POST /echo returns the JSON it got."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(await request.json())


app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
