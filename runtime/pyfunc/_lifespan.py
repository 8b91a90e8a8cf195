"""The ASGI lifespan protocol, run on pyfunc's event loop through the ``start``/``stop`` hooks.

Startup runs before the port opens and shutdown after the drain (pyfunc._asgi.asgi_loaded wires
them). An app that does not speak it is served without it, as uvicorn's default ("auto") does.
"""

from __future__ import annotations

import logging

from ._asgiscope import ASGI_VERSION
from ._async import settle
from ._errors import HandlerLoadError, InvocationTimeout

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any

    from ._async import AsyncRunner

__all__ = ["LIFESPAN_SHUTDOWN_WAIT", "Lifespan"]

logger = logging.getLogger("pyfunc")

LIFESPAN_SHUTDOWN_WAIT = 30.0


class Lifespan:
    """The ASGI lifespan protocol, run on pyfunc's event loop: startup before the port opens,
    shutdown after the drain (through the ``start``/``stop`` hooks, :func:`asgi_loaded`).

    An app that does not speak it (it raises, or returns, before answering ``lifespan.startup``)
    is served without it, as uvicorn's default ("auto") does; ``lifespan.startup.failed`` is a
    startup error.
    """

    UNSUPPORTED = "unsupported"

    def __init__(self, app: Any, runner: AsyncRunner, name: str) -> None:
        self.app = app
        self.runner = runner
        self.name = name
        self.state: dict[str, Any] = {}
        self.supported = False
        self._queue: Any = None
        self._started: Any = None
        self._stopped: Any = None

    def startup(self) -> None:
        outcome = self.runner.run(self._startup(), None)
        if outcome == self.UNSUPPORTED:
            logger.info("%s does not speak the ASGI lifespan protocol; served without it", self.name)
            return
        if outcome is not None:
            raise HandlerLoadError(f"the app's lifespan startup failed: {outcome}")
        self.supported = True

    def shutdown(self) -> None:
        if not self.supported:
            return
        try:
            outcome = self.runner.run(self._shutdown(), LIFESPAN_SHUTDOWN_WAIT)
        except InvocationTimeout:
            logger.error("the app's lifespan shutdown did not finish within %ss", LIFESPAN_SHUTDOWN_WAIT)
            return
        if outcome is not None:
            logger.error("the app's lifespan shutdown failed: %s", outcome)

    async def _startup(self) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._started, self._stopped = loop.create_future(), loop.create_future()
        scope = {"type": "lifespan", "asgi": dict(ASGI_VERSION), "state": self.state}
        task = loop.create_task(self._main(scope))
        self._queue.put_nowait({"type": "lifespan.startup"})
        task.add_done_callback(lambda _: None)
        return await self._started

    async def _main(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._queue.get, self._send)
        except BaseException as exc:  # noqa: B036 - any way out of the app ends the protocol
            if not self._started.done():
                logger.debug("lifespan: the app raised %s before answering startup", type(exc).__name__)
                self._started.set_result(self.UNSUPPORTED)
            elif not self._stopped.done():
                logger.error("the app raised during its lifespan", exc_info=exc)
                self._stopped.set_result(f"{type(exc).__name__}: {exc}")
            if not isinstance(exc, Exception):
                raise
        finally:
            if not self._started.done():
                self._started.set_result(self.UNSUPPORTED)
            if not self._stopped.done():
                self._stopped.set_result(None)

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            settle(self._started, None)
        elif kind == "lifespan.startup.failed":
            settle(self._started, str(message.get("message") or "lifespan.startup.failed"))
        elif kind == "lifespan.shutdown.complete":
            settle(self._stopped, None)
        elif kind == "lifespan.shutdown.failed":
            settle(self._stopped, str(message.get("message") or "lifespan.shutdown.failed"))

    async def _shutdown(self) -> Any:
        self._queue.put_nowait({"type": "lifespan.shutdown"})
        return await self._stopped
