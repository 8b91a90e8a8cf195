"""pyfunc: run a plain Python function as a CloudEvents/HTTP function on Knative.

The public API is this module, :mod:`pyfunc.testing` (call a function in-process through the
server's own code) and the ``pyfunc`` command (:mod:`pyfunc.cli`, ``python -m pyfunc``).
Every other module is private (``pyfunc._*``): its names may change in any release.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:  # for type checkers only: at run time they are lazy (below)
    from typing import Any

    from ._outcomes import Drop, Retry

__version__ = "0.2.0"
__all__ = ["__version__", "find_func", "HandlerLoadError", "Retry", "Drop"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import pyfunc` (and so `pyfunc --help`) does not load the whole runtime.
    if name == "find_func":
        from ._locate import find_func

        return find_func
    if name == "HandlerLoadError":
        from ._errors import HandlerLoadError

        return HandlerLoadError
    if name in ("Retry", "Drop"):
        # Outcomes a handler raises (docs/delivery.md); _outcomes imports nothing else.
        from . import _outcomes

        return getattr(_outcomes, name)
    raise AttributeError(f"module 'pyfunc' has no attribute {name!r}")
