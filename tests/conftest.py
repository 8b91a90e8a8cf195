"""Fixtures shared by every test folder; the plain helpers they use live in support.py."""

from __future__ import annotations

import signal
from typing import Callable, Optional

import pytest

from support import Running, make_event, run_pyfunc, send, start_server, write_function

__all__ = ["Running", "make_event", "run_pyfunc", "send", "start_server", "write_function"]


@pytest.fixture
def serve(tmp_path_factory) -> Callable[..., Running]:
    """``serve(source, env=None, args=None, files=None, wait=True)`` → a :class:`Running` server."""
    started: list[Running] = []

    def _serve(source: str, env: Optional[dict] = None, args: Optional[list] = None,
               files: Optional[dict] = None, wait: bool = True) -> Running:
        directory = write_function(tmp_path_factory.mktemp("fn"), source, files)
        running = start_server(directory, env, args, wait)
        started.append(running)
        return running

    yield _serve
    for running in started:
        running.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def serve_module(tmp_path_factory) -> Callable[..., Running]:
    """Like ``serve`` but the servers live for the whole test module (cheaper for many tests)."""
    started: list[Running] = []

    def _serve(source: str, env: Optional[dict] = None, args: Optional[list] = None,
               files: Optional[dict] = None) -> Running:
        directory = write_function(tmp_path_factory.mktemp("fn"), source, files)
        running = start_server(directory, env, args)
        started.append(running)
        return running

    yield _serve
    for running in started:
        running.stop(signal.SIGKILL)
