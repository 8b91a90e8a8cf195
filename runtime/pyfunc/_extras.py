"""The optional extras: a feature whose package is missing is one clear start-up error.

Each optional feature imports its package only when a setting turns it on (a cold start pays
for nothing else). When that package is not installed, the server must not start without the
feature, nor die with a traceback: it stops with one ``pyfunc: error:`` line that names the
setting that asked for the feature and the extra that installs it.
"""

from __future__ import annotations

import importlib

from ._config import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Optional

__all__ = ["EXTRAS", "require", "install_hint"]

# Top-level module -> (the pyfunc-invoker extra that installs it, the distribution's name).
EXTRAS: dict[str, tuple[str, str]] = {
    "redis": ("redis", "redis"),
    "prometheus_client": ("metrics", "prometheus-client"),
    "opentelemetry": ("otel", "opentelemetry-sdk"),
    "pydantic": ("pydantic", "pydantic"),
    "watchfiles": ("reload", "watchfiles"),
}


def _extra_of(module: str) -> Optional[tuple[str, str]]:
    return EXTRAS.get(module.partition(".")[0])


def install_hint(module: str) -> str:
    """How to install what provides ``module`` (``pip install 'pyfunc-invoker[redis]'``)."""
    extra = _extra_of(module)
    if extra is None:
        return f"pip install {module.partition('.')[0]}"
    return f"pip install 'pyfunc-invoker[{extra[0]}]'"


def require(module: str, setting: str) -> ModuleType:
    """Import ``module`` for the feature ``setting`` turned on; a :class:`ConfigError` naming
    both, and the extra to install, when it is not installed (or cannot be imported)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _extra_of(module)
        package = extra[1] if extra else module.partition(".")[0]
        missing = getattr(exc, "name", None) or module
        why = "is not installed" if isinstance(exc, ModuleNotFoundError) else f"cannot be imported ({exc})"
        if missing.partition(".")[0] != module.partition(".")[0]:
            why = f"cannot be imported (it needs {missing}, which is not installed)"
        raise ConfigError(f"{setting} needs the {package} package, which {why}: {install_hint(module)}") from None
