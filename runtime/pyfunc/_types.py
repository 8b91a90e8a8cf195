"""Type aliases shared by the serving modules; imported only under ``TYPE_CHECKING``.

Nothing imports this module at run time (typing is kept out of a cold start): write
``if TYPE_CHECKING: from ._types import Environ`` next to ``from __future__ import annotations``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

__all__ = ["Environ", "StartResponse", "WSGIApp"]

# A WSGI environ (PEP 3333): CGI keys, the ``wsgi.*`` keys and pyfunc's own (``pyfunc.resumed``).
Environ = dict[str, Any]
# PEP 3333's start_response(status, headers, exc_info=None) -> write(data).
StartResponse = Callable[..., Callable[[bytes], Any]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
