"""0.1.0's public API: ``pyfunc.find_func`` / ``pyfunc._locate.find_func``, kept for compatibility."""

from __future__ import annotations

import os

from ._discovery import DEFAULT_TARGET, load_function

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable


def find_func(search_path: str = ".") -> Callable[..., Any]:
    """The function ``PYTHON_HANDLER`` (default ``handler.handler``) names in ``search_path``."""
    return load_function(search_path, os.environ.get("PYTHON_HANDLER") or DEFAULT_TARGET).function
