"""Find the user's function: import its module from the function directory and pick the callable.

Everything here runs once, at startup. Failures raise :class:`HandlerLoadError` naming the
file, the line and what is wrong, so a broken ``handler.py`` is a clear startup error rather
than a 500 on the first request.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass, field
from types import ModuleType

from ._errors import HandlerLoadError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

DEFAULT_TARGET = "handler.handler"
HOOK_NAMES = ("start", "stop", "alive", "ready")


@dataclass
class LoadedFunction:
    """The user's function, the module it lives in and the optional lifecycle hooks."""

    function: Callable[..., Any]
    module: ModuleType
    name: str
    file: Optional[str]
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)

    @property
    def qualname(self) -> str:
        return f"{self.module.__name__}.{self.name}"


def parse_target(target: str) -> tuple[str, Optional[str]]:
    """``module.func``, ``pkg.mod.func`` or ``module:func`` → ``(module, func)``.

    A bare ``module`` means "the one public function in that module". 0.1.0 took only the
    first two dotted parts; a longer dotted path now names a package module.
    """
    target = target.strip()
    if ":" in target:
        module, _, func = target.partition(":")
    elif "." in target:
        module, _, func = target.rpartition(".")
    else:
        module, func = target, ""
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise HandlerLoadError(
            f"invalid handler target {target!r}: expected <module>.<function> or <module>:<function>"
        )
    if func and not func.isidentifier():
        raise HandlerLoadError(f"invalid function name {func!r} in handler target {target!r}")
    return module, func or None


def load_function(directory: os.PathLike[str] | str, target: str = DEFAULT_TARGET) -> LoadedFunction:
    """Import the target's module from ``directory`` and return its function and hooks."""
    # os.path, not pathlib (what Path.resolve() does, without its import in every cold start)
    workspace = os.path.realpath(directory)
    if not os.path.isdir(workspace):
        raise HandlerLoadError(f"function directory {str(directory)!r} does not exist")
    module_name, func_name = parse_target(target)
    module = _import_module(workspace, module_name)
    function, name = _select_function(module, func_name)
    hooks = {
        hook: obj
        for hook in HOOK_NAMES
        if hook != name and callable(obj := getattr(module, hook, None)) and not inspect.isclass(obj)
    }
    return LoadedFunction(function, module, name, getattr(module, "__file__", None), hooks)


def _import_module(workspace: str, module_name: str) -> ModuleType:
    # The directory stays on sys.path for the life of the process: handlers import siblings
    # lazily, inside the function, and 0.1.0's removal of it broke exactly that.
    if workspace not in sys.path:
        sys.path.insert(0, workspace)
    relative = os.path.join(*module_name.split("."))
    candidates = [os.path.join(workspace, relative + ".py"), os.path.join(workspace, relative, "__init__.py")]
    file = next((c for c in candidates if os.path.isfile(c)), None)
    if file is None:
        raise HandlerLoadError(
            f"module {module_name!r} not found: no {relative}.py in {workspace}" + _listing(workspace)
        )
    try:
        if "." in module_name:
            return importlib.import_module(module_name)
        # A top-level module is loaded from its file, so a same-named module that is already
        # imported (a stdlib "handler"? a test's earlier function) cannot shadow it.
        spec = importlib.util.spec_from_file_location(module_name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        # Registered before it runs: dataclasses and pickling look the module up by name.
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        return module
    except SyntaxError as exc:
        raise HandlerLoadError(
            f"SyntaxError: {exc.msg}", exc.filename or file, exc.lineno
        ) from None
    except Exception as exc:
        user_file, line = _innermost_frame_in(workspace, exc) or (file, None)
        raise HandlerLoadError(
            f"error while importing {module_name!r}: {type(exc).__name__}: {exc}{_extra_hint(exc)}", user_file, line
        ) from None
    except SystemExit as exc:
        raise HandlerLoadError(f"module {module_name!r} called exit({exc.code!r}) while importing", file) from None


def _extra_hint(exc: BaseException) -> str:
    """`` (pip install 'pyfunc-invoker[pydantic]')`` when the handler needs what an extra installs."""
    from ._extras import EXTRAS, install_hint

    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if type(exc).__name__ == "PydanticFeatureNotInstalled":  # cloudevents.pydantic without pydantic
        missing = "pydantic"
    if missing and missing.partition(".")[0] in EXTRAS:
        return f" ({install_hint(missing)})"
    return ""


def _innermost_frame_in(workspace: str, exc: BaseException) -> Optional[tuple[str, int]]:
    """The deepest traceback frame inside the function directory: where the user's code failed."""
    from pathlib import Path

    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            inside = Path(frame.filename).resolve().is_relative_to(workspace)
        except (OSError, ValueError):
            inside = False
        if inside:
            found = (frame.filename, frame.lineno or 0)
    return found


def _listing(workspace: str) -> str:
    from pathlib import Path

    names = sorted(p.name for p in Path(workspace).glob("*.py"))
    return f" (Python files there: {', '.join(names)})" if names else " (no .py files there)"


def public_functions(module: ModuleType) -> list[str]:
    """Public functions defined in ``module`` itself (imported ones and hooks do not count)."""
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and name not in HOOK_NAMES
        and inspect.isfunction(obj)
        and obj.__module__ == module.__name__
    ]


def _select_function(module: ModuleType, func_name: Optional[str]) -> tuple[Callable[..., Any], str]:
    file = getattr(module, "__file__", None)
    if func_name is not None:
        obj = getattr(module, func_name, None)
        if obj is not None:
            if not callable(obj) or inspect.isclass(obj):
                raise HandlerLoadError(
                    f"{func_name!r} in module {module.__name__!r} is a {type(obj).__name__}, not a function",
                    file,
                    _source_line_of(obj),
                )
            return obj, func_name
    candidates = public_functions(module)
    if len(candidates) == 1:
        return getattr(module, candidates[0]), candidates[0]
    wanted = f"no function {func_name!r}" if func_name else "no function name given"
    if not candidates:
        raise HandlerLoadError(
            f"{wanted} in module {module.__name__!r}, and it defines no public function", file
        )
    raise HandlerLoadError(
        f"{wanted} in module {module.__name__!r}, and it defines several public functions "
        f"({', '.join(candidates)}): set PYTHON_HANDLER=<module>.<function> to choose one",
        file,
    )


def _source_line_of(obj: Any) -> Optional[int]:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return None


# ---------------------------------------------------------------------- ASGI and WSGI apps (pyfunc._asgi)

ASGI_PARAMETERS = ("scope", "receive", "send")
WSGI_PARAMETERS = ("environ", "start_response")


def func_python_layout(directory: os.PathLike[str] | str, target: str) -> bool:
    """A Knative func Python function (func-python's layout: ``function/__init__.py``), served
    with no configuration: the handler target is the default and there is no ``handler.py``."""
    workspace = os.fspath(directory)
    return (target == DEFAULT_TARGET and not os.path.isfile(os.path.join(workspace, "handler.py"))
            and os.path.isfile(os.path.join(workspace, "function", "__init__.py")))


def app_kind(obj: Any) -> Optional[str]:
    """``"asgi"`` for an ASGI 3 application, ``"wsgi"`` for a WSGI one, None for a function to bind.

    An ASGI app is an object whose ``__call__`` is ``async def`` (Starlette, FastAPI, their
    middleware) or an ``async def`` function taking exactly ``(scope, receive, send)``; a WSGI
    app is a Flask app (``wsgi_app``), or a callable taking exactly ``(environ, start_response)``.
    """
    if inspect.isclass(obj) or not callable(obj):
        return None
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        names = _parameter_names(obj)
        if names == ASGI_PARAMETERS and inspect.iscoroutinefunction(inspect.unwrap(obj)):
            return "asgi"
        return "wsgi" if names == WSGI_PARAMETERS else None
    call = getattr(type(obj), "__call__", None)  # noqa: B004 - the method itself: is it async def?
    if call is not None and inspect.iscoroutinefunction(inspect.unwrap(call)):
        return "asgi"
    if callable(getattr(obj, "wsgi_app", None)) or _parameter_names(obj) == WSGI_PARAMETERS:
        return "wsgi"
    return None


def _parameter_names(obj: Any) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return ()
