"""buildpack/bin/detect takes the handler targets the runtime takes (pyfunc._discovery.parse_target).

A target the runtime would serve must not be turned away at build time, and one it refuses must
not pass detection only to fail in the container. Each case runs the real script under bash.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pyfunc._discovery import parse_target
from pyfunc._errors import HandlerLoadError

DETECT = Path(__file__).resolve().parents[2] / "buildpack" / "bin" / "detect"

TARGETS = ["handler.handler", "func.main", "func:main", " func:main ", "func", "pkg.mod.main", "pkg.mod:main",
           "pkg:main", "func.", ".main", "func:", ":main", "fu-nc.main", "func.ma-in", "func:ma:in", "1func.main",
           "func..main", "missing.main", "missing:main"]


def _detect(app: Path, target: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BP_PYTHON_HANDLER": target}
    return subprocess.run(["bash", str(DETECT)], cwd=app, env=env, capture_output=True, text=True, timeout=30)


def _runtime_accepts(target: str) -> bool:
    try:
        parse_target(target)
    except HandlerLoadError:
        return False
    return True


@pytest.mark.parametrize("target", TARGETS)
def test_detect_agrees_with_the_runtime(tmp_path: Path, target: str) -> None:
    (tmp_path / "func.py").write_text("def main(req):\n    return 'hi'\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text("def main(req):\n    return 'hi'\n")
    done = _detect(tmp_path, target)
    module = parse_target(target)[0] if _runtime_accepts(target) else None
    paths = [tmp_path / m.replace(".", "/") for m in ((module, module.split(".")[0]) if module else ())]
    exists = any(path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() for path in paths)
    if exists:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 100, (target, done.stderr)
        assert done.stderr.startswith("pyfunc: ") and done.stderr.count("\n") == 1, done.stderr


def test_the_default_handler_py_is_detected_and_its_absence_explained(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BP_PYTHON_HANDLER", "PYTHON_HANDLER")}
    missing = subprocess.run(["bash", str(DETECT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 100 and "pyfunc: no handler.py in the app directory" in missing.stderr
    (tmp_path / "handler.py").write_text("def handler(req):\n    return 'hi'\n")
    found = subprocess.run(["bash", str(DETECT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert found.returncode == 0, found.stderr
