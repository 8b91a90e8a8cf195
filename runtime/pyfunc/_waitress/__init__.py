"""Every use of waitress's internals in pyfunc, in one package, under one contract (contract.py).

waitress's public API (``create_server``, adjustments, ``run()``) cannot do what pyfunc needs:
an epoll loop (_eventloop.py), a drain that finishes in-flight requests, a receive deadline,
413/431 refusals written as problem+json with an access line, and async handlers that hold no
worker while they await. So this package reaches inside waitress, and nothing else in pyfunc
does; the app (pyfunc._app) does not import it: it sees only pyfunc._deferred's protocols.

- contract.py: what is relied on, checked at start-up (a part that does not hold is left out,
  after one warning, and waitress's own behaviour stays);
- loop.py: the event loop installed in a server; heads.py: quicker request and response heads;
- refusals.py: 413/431 answers and the receive deadline; drain.py: the graceful stop;
- deferral.py: parked requests and streams sent from the event loop; pool.py: the elastic pool.

:func:`install` wires everything a server gets at once; :func:`thread_pool` is given to
``create_server`` before.
"""

from __future__ import annotations

from .contract import (
    CHANNEL_STATE,
    TESTED_VERSIONS,
    deferral_contract_problems,
    drain_contract_problems,
    loop_contract_problems,
    refusal_contract_problems,
    waitress_version,
)
from .deferral import StreamSink, install_deferral
from .drain import answer_with_close, close_everything, finish_tasks, listener, port, run_on_loop, stop_accepting, sweep
from .heads import ONE_SEND_MAX, QuickParser, QuickTask
from .loop import fileno, install_loop, is_connection, readwrite, worker_owns_output
from .pool import ElasticDispatcher, pool_contract_problems, thread_pool
from .refusals import Refusal, enforce_receive_deadline, install_refusals

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from .loop import Loop
    from .refusals import Answer

__all__ = [
    "CHANNEL_STATE", "ONE_SEND_MAX", "TESTED_VERSIONS", "ElasticDispatcher", "Installed", "QuickParser", "QuickTask",
    "Refusal", "StreamSink", "answer_with_close", "close_everything", "deferral_contract_problems",
    "drain_contract_problems", "enforce_receive_deadline", "fileno", "finish_tasks", "install", "install_deferral",
    "install_loop", "install_refusals", "is_connection", "listener", "loop_contract_problems", "pool_contract_problems",
    "port", "readwrite", "refusal_contract_problems", "run_on_loop", "stop_accepting", "sweep", "thread_pool",
    "waitress_version", "worker_owns_output",
]


class Installed:
    """What :func:`install` could put in place (each part falls back on its own)."""

    __slots__ = ("loop", "refusals", "defers")

    def __init__(self, loop: Any, refusals: bool, defers: bool) -> None:
        self.loop = loop  # the installed loop, or None: waitress's own select loop
        self.refusals = refusals  # 413/431/503 as problem+json (else waitress's plain-text pages)
        self.defers = defers  # requests can be parked (else async handlers hold their worker)


def install(server: Any, *, make_loop: Optional[Callable[[dict[int, Any]], Loop]], answer: Answer,
            defer: bool, receive_timeout: float, body_budget: Any = None) -> Installed:
    """Everything pyfunc adds to a waitress ``server``, in the one order that works.

    The loop first (it installs the channel class the others subclass); then the refusals (with
    the memory budget, a pyfunc._memory.BodyBudget, when there is one), the deferral (only when
    ``defer``: an async handler) and the receive deadline (when not 0).
    """
    loop = install_loop(server, make_loop) if make_loop is not None else None
    refusals = install_refusals(server, answer, body_budget)
    defers = defer and install_deferral(server)
    if receive_timeout:
        enforce_receive_deadline(server, receive_timeout)
    return Installed(loop, refusals, defers)
