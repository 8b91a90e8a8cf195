"""The ``pyfunc`` console script and ``python -m pyfunc COMMAND``: version, help, dispatch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyfunc

PYFUNC = str(Path(sys.executable).with_name("pyfunc"))
COMMANDS = ("run", "check", "invoke", "init", "build")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFUNC_", "PYTHON_HANDLER"))}
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def test_version_from_the_console_script_and_the_module():
    for command in ([PYFUNC], [sys.executable, "-m", "pyfunc"]):
        result = run(*command, "--version")
        assert result.returncode == 0
        assert result.stdout.strip() == f"pyfunc {pyfunc.__version__}"


def test_help_lists_every_command():
    result = run(PYFUNC, "--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_every_command_has_help():
    for name in COMMANDS:
        result = run(PYFUNC, name, "--help")
        assert result.returncode == 0, result.stderr
        assert f"pyfunc {name}" in result.stdout


def test_no_command_prints_help_and_exits_2():
    result = run(PYFUNC)
    assert result.returncode == 2
    assert "COMMAND" in result.stdout


def test_python_dash_m_dispatches_subcommands(tmp_path):
    result = run(sys.executable, "-m", "pyfunc", "init", str(tmp_path / "fn"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fn" / "handler.py").is_file()


def test_a_directory_named_like_a_command_is_still_served_by_python_dash_m(tmp_path):
    """``python -m pyfunc check`` where ./check is a function directory: 0.1.0 served it."""
    (tmp_path / "check").mkdir()
    (tmp_path / "check" / "handler.py").write_text("def handler(:\n")
    result = run(sys.executable, "-m", "pyfunc", "check", cwd=tmp_path)
    # It was loaded as a function directory (and failed to load), not run as `pyfunc check`.
    assert result.returncode == 1
    assert "SyntaxError" in result.stderr
    assert "ok:" not in result.stdout


def test_unknown_command_is_a_usage_error():
    result = run(PYFUNC, "deploy")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
