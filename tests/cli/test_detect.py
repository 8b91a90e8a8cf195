"""buildpack/bin/detect on app directories: what the buildpack takes (exit 0) and what it leaves (100).

The e2e (e2e/test_functions.py) runs it inside `pack build`; here it runs as the lifecycle runs it,
with the app directory as the working directory, on the layouts issue 22 added.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

DETECT = Path(__file__).resolve().parents[2] / "buildpack" / "bin" / "detect"


def detect(directory: Path, handler: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_HANDLER", "BP_PYTHON_HANDLER")}
    if handler:
        env["PYTHON_HANDLER"] = handler
    return subprocess.run(["bash", str(DETECT)], cwd=directory, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("files, handler, passes", [
    ({"handler.py": ""}, "", True),
    ({"function/__init__.py": "", "function/func.py": ""}, "", True),  # func create -l python
    ({"main.py": ""}, "main:app", True),  # an ASGI/WSGI app
    ({"pkg/__init__.py": "", "pkg/web.py": ""}, "pkg.web:app", True),
    ({"main.py": ""}, "other:app", False),
    ({"main.py": ""}, "main:", True),  # the module's one function, as parse_target reads it
    ({"main.py": ""}, "main:not-an-app", False),
    ({"main.py": ""}, "", False),
    ({"function/func.py": ""}, "", False),  # no package: not func's layout
])
def test_detect(tmp_path, files, handler, passes):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = detect(tmp_path, handler)
    assert result.returncode == (0 if passes else 100), result.stderr
    if not passes:
        assert result.stderr.startswith("pyfunc: ")
