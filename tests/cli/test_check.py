"""``pyfunc check``: load the handler as the server would and report, or fail in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PYFUNC = str(Path(sys.executable).with_name("pyfunc"))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def pyfunc(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFUNC_", "PYTHON_HANDLER"))}
    full_env.update(env or {})
    return subprocess.run([PYFUNC, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=60)


def test_reports_parameters_and_hooks():
    result = pyfunc("check", str(EXAMPLES / "lifecycle-hooks"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: handler.handler (http function)")
    assert "parameter body:" in result.stdout
    assert "hooks: alive, ready, start, stop" in result.stdout


def test_json_report():
    result = pyfunc("check", str(EXAMPLES / "async-function"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["kind"] == "cloudevent"
    assert report["async"] is True
    assert set(report["parameters"]) == {"data", "attributes"}


def test_current_directory_is_the_default(tmp_path):
    (tmp_path / "handler.py").write_text("def handler(data):\n    return None\n")
    result = pyfunc("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cloudevent function" in result.stdout


def test_handler_flag_and_environment(tmp_path):
    (tmp_path / "main.py").write_text("def one(body):\n    pass\n\ndef two(data):\n    pass\n")
    assert "main.two (cloudevent" in pyfunc("check", str(tmp_path), "--handler", "main.two").stdout
    assert "main.one (http" in pyfunc("check", str(tmp_path), env={"PYTHON_HANDLER": "main.one"}).stdout


def test_a_syntax_error_is_one_line_with_file_and_line(tmp_path):
    (tmp_path / "handler.py").write_text("def handler(data):\n    return (\n")
    result = pyfunc("check", str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("pyfunc: error: ")
    assert f"{tmp_path / 'handler.py'}:2" in line
    assert "SyntaxError" in line


def test_an_import_error_names_the_module(tmp_path):
    (tmp_path / "handler.py").write_text("import json\nimport not_installed_anywhere\n\ndef handler(data):\n    pass\n")
    result = pyfunc("check", str(tmp_path))
    assert result.returncode == 1
    assert "not_installed_anywhere" in result.stderr
    assert ":2:" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_path_is_one_clear_line(tmp_path):
    result = pyfunc("check", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
