"""The public API is `pyfunc`, `pyfunc.testing` and the CLI; every other module is private."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyfunc
import pyfunc.testing

PACKAGE = Path(pyfunc.__file__).parent
PUBLIC_MODULES = {"__init__.py", "__main__.py", "cli.py", "testing.py"}


def test_every_other_module_is_private():
    modules = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert modules >= PUBLIC_MODULES
    assert {m for m in modules - PUBLIC_MODULES if not m.startswith("_")} == set()


def test_public_names_resolve():
    for name in pyfunc.__all__:
        assert getattr(pyfunc, name) is not None
    for name in pyfunc.testing.__all__:
        assert getattr(pyfunc.testing, name) is not None
    assert pyfunc.HandlerLoadError is pyfunc.testing.HandlerLoadError


def test_importing_pyfunc_loads_no_runtime_module():
    code = "import sys, pyfunc; print(sorted(m for m in sys.modules if m.startswith('pyfunc.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
