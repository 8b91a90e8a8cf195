"""pyfunc: run a plain Python function as a CloudEvents/HTTP function on Knative."""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"
__all__ = ["__version__", "find_func"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import pyfunc` (and so `pyfunc --help`) does not load the whole runtime.
    if name == "find_func":
        from .locate import find_func

        return find_func
    raise AttributeError(f"module 'pyfunc' has no attribute {name!r}")
