"""The layering of the architecture step (issue 23): the app never reaches into waitress.

Only the server side (the server, its event loop, its refusal answers) talks to the waitress adapter,
pyfunc._waitress; what serves a request (the app, invocation, binding, codecs, replies, ASGI and
func-python bridges) sees the server only through pyfunc._deferred's protocols. So a waitress upgrade
touches the adapter and the server, never the app.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pyfunc

PACKAGE = Path(pyfunc.__file__).parent
SERVER_SIDE = {"_server.py", "_eventloop.py", "_refusals.py"}


def _imports_waitress(path: Path, root: Path = PACKAGE) -> list[str]:
    """The lines of ``path`` (named relative to ``root``) importing waitress or pyfunc's waitress adapter."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names = [alias.name for alias in node.names]
            if module.lstrip(".").startswith(("_waitress", "waitress")) or "_waitress" in names:
                found.append(f"{path.relative_to(root)}:{node.lineno}")
        elif isinstance(node, ast.Import) and any(alias.name.startswith("waitress") for alias in node.names):
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_only_the_server_side_imports_the_waitress_adapter() -> None:
    app_side = [path for path in PACKAGE.rglob("*.py")
                if "_waitress" not in path.parts and path.name not in SERVER_SIDE and "templates" not in path.parts]
    assert len(app_side) > 30  # the scan found the package
    assert [line for path in app_side for line in _imports_waitress(path)] == []


def test_the_scan_sees_an_import_of_the_adapter(tmp_path: Path) -> None:
    """The check above can fail: the same scan flags each way of importing the adapter."""
    sample = tmp_path / "module.py"
    sample.write_text("from ._waitress import install\nfrom . import _waitress\nimport waitress.task\n"
                      "from waitress.server import create_server\nfrom ._deferred import Deferred\n")
    assert _imports_waitress(sample, tmp_path) == ["module.py:1", "module.py:2", "module.py:3", "module.py:4"]
