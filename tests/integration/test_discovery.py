"""Finding the handler: names, fallbacks, dotted targets and clear startup errors."""

from __future__ import annotations

import requests

from support import run_pyfunc, write_function


def test_configured_name_is_used(serve):
    server = serve("""
        def other():
            return "other"
        def handler():
            return "handler"
    """)
    assert requests.get(server.url, timeout=5).text == "handler"


def test_python_handler_env_selects_module_and_function(serve):
    server = serve("def handler():\n    return 'wrong'\n",
                   files={"myhandler.py": "def func():\n    return 'right'\n"},
                   env={"PYTHON_HANDLER": "myhandler.func"})
    assert requests.get(server.url, timeout=5).text == "right"


def test_single_public_function_is_found_whatever_its_name(serve):
    """The seed README promised this; 0.1.0 only ever found a function named `handler`."""
    server = serve("""
        from os.path import join      # imported functions do not count
        def _helper():
            return "helper"
        def main():
            return "main " + _helper()
    """)
    assert requests.get(server.url, timeout=5).text == "main helper"


def test_hooks_are_not_candidates(serve):
    server = serve("""
        def start(cfg):
            pass
        def ready():
            return True
        def main():
            return "main"
    """)
    assert requests.get(server.url, timeout=5).text == "main"


def test_package_module_and_colon_targets(serve):
    files = {"pkg/__init__.py": "", "pkg/fn.py": "def go():\n    return 'dotted'\n"}
    dotted = serve("def handler():\n    return 'x'\n", files=files, env={"PYTHON_HANDLER": "pkg.fn.go"})
    assert requests.get(dotted.url, timeout=5).text == "dotted"
    colon = serve("def handler():\n    return 'x'\n", files=files, env={"PYTHON_HANDLER": "pkg.fn:go"})
    assert requests.get(colon.url, timeout=5).text == "dotted"


def test_several_public_functions_is_a_startup_error_listing_them(tmp_path):
    write_function(tmp_path, """
        def alpha():
            pass
        def beta():
            pass
    """)
    result = run_pyfunc(str(tmp_path))
    assert result.returncode == 1
    assert "handler.py" in result.stderr and "alpha, beta" in result.stderr and "PYTHON_HANDLER" in result.stderr
    assert "Traceback" not in result.stderr


def test_syntax_error_names_file_and_line(tmp_path):
    write_function(tmp_path, "import os\n\ndef handler(:\n    pass\n")
    result = run_pyfunc(str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path}/handler.py:3: SyntaxError" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_error_names_file_and_line(tmp_path):
    write_function(tmp_path, "x = 1\nimport does_not_exist_anywhere\n\ndef handler():\n    pass\n")
    result = run_pyfunc(str(tmp_path))
    assert result.returncode == 1
    assert "handler.py:2" in result.stderr and "does_not_exist_anywhere" in result.stderr
    assert "ModuleNotFoundError" in result.stderr


def test_error_in_sibling_module_names_the_sibling(tmp_path):
    write_function(tmp_path, "import util\n\ndef handler():\n    pass\n", files={"util.py": "a = 1\nb = 1 / 0\n"})
    result = run_pyfunc(str(tmp_path))
    assert result.returncode == 1
    assert "util.py:2" in result.stderr and "ZeroDivisionError" in result.stderr


def test_missing_module_and_directory(tmp_path):
    result = run_pyfunc(str(tmp_path))
    assert result.returncode == 1 and "module 'handler' not found" in result.stderr
    result = run_pyfunc(str(tmp_path / "nope"))
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_invalid_target_and_setting(tmp_path):
    write_function(tmp_path, "def handler():\n    pass\n")
    result = run_pyfunc(str(tmp_path), env={"PYTHON_HANDLER": "bad-name.func"})
    assert result.returncode == 1 and "invalid handler target" in result.stderr
    result = run_pyfunc(str(tmp_path), env={"PYFUNC_THREADS": "many"})
    assert result.returncode == 1 and "PYFUNC_THREADS='many' is invalid" in result.stderr


def test_help_and_version():
    result = run_pyfunc("--help")
    assert result.returncode == 0
    assert "usage: python -m pyfunc" in result.stdout and "PYTHON_HANDLER" in result.stdout
    assert "--port" in result.stdout and "PYFUNC_MAX_BODY_SIZE" in result.stdout
    result = run_pyfunc("--version")
    assert result.returncode == 0 and result.stdout.startswith("pyfunc ")


def test_too_many_arguments_is_a_usage_error(tmp_path):
    result = run_pyfunc(str(tmp_path), str(tmp_path))
    assert result.returncode != 0 and "usage:" in result.stderr


def test_port_in_use_is_a_clear_error(serve):
    server = serve("def handler():\n    return 'x'\n")
    result = run_pyfunc(str(server.directory), env={"PORT": str(server.port), "PYFUNC_HOST": "127.0.0.1"})
    assert result.returncode == 1 and "cannot listen" in result.stderr


def test_check_command_reports_and_fails_like_the_server(tmp_path):
    write_function(tmp_path, """
        def handler(data, req, flag=1):
            pass
        def ready():
            return True
    """)
    result = run_pyfunc("check", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "cloudevent function" in result.stdout and "parameter data: event data" in result.stdout
    assert "hooks: ready" in result.stdout
    (tmp_path / "handler.py").write_text("def handler(:\n")
    result = run_pyfunc("check", str(tmp_path))
    assert result.returncode == 1 and "handler.py:1: SyntaxError" in result.stderr


def test_find_func_compat_api(tmp_path, monkeypatch):
    """0.1.0 exported `pyfunc.find_func`; it still returns the configured function."""
    import pyfunc

    write_function(tmp_path, "def handler():\n    return 'found'\n", files={"other.py": "def f():\n    return 'f'\n"})
    monkeypatch.delenv("PYTHON_HANDLER", raising=False)
    assert pyfunc.find_func(str(tmp_path))() == "found"
    monkeypatch.setenv("PYTHON_HANDLER", "other.f")
    assert pyfunc.find_func(str(tmp_path))() == "f"
