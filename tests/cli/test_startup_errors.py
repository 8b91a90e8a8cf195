"""Start-up errors are one line: a missing optional extra, a broken setting, a reader that left.

An extra is made missing with a ``sitecustomize`` that sets ``sys.modules[name] = None``: Python
then raises ``ModuleNotFoundError`` for ``import name`` exactly as when the package is absent,
in this venv, for every extra, without building a venv per extra (the quickstart's fresh venv,
which really lacks redis, prometheus_client, OpenTelemetry and pydantic, is checked in
tests/cli/test_quickstart.py). Real processes: ``python -m pyfunc`` and the ``pyfunc`` script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import free_port, run_pyfunc, start_server, write_function

PYFUNC = str(Path(sys.executable).with_name("pyfunc"))
ECHO = "def handler(body):\n    return body\n"


@pytest.fixture
def function(tmp_path: Path) -> Path:
    return write_function(tmp_path / "fn", ECHO)


def _blocking(tmp_path: Path, *names: str) -> dict[str, str]:
    """An environment whose Python cannot import ``names`` (a sitecustomize on PYTHONPATH)."""
    site = tmp_path / "block"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in names))
    return {"PYTHONPATH": str(site)}


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("pyfunc: error: "), lines
    return lines[0]


EXTRAS = [
    # (blocked module, environment turning the feature on, the setting named, the install line)
    ("redis", {"PYFUNC_DEDUPE": "redis://127.0.0.1:1/0"}, "PYFUNC_DEDUPE=redis://", "pyfunc-invoker[redis]"),
    ("prometheus_client", {"PYFUNC_METRICS": "true"}, "PYFUNC_METRICS=true", "pyfunc-invoker[metrics]"),
    ("opentelemetry", {"OTEL_TRACES_EXPORTER": "console"}, "OTEL_TRACES_EXPORTER=console", "pyfunc-invoker[otel]"),
    ("opentelemetry", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT",
     "pyfunc-invoker[otel]"),
]


@pytest.mark.parametrize(("module", "env", "setting", "extra"), EXTRAS, ids=[e[2] for e in EXTRAS])
def test_a_feature_whose_extra_is_missing_is_one_error_line(function, tmp_path, module, env, setting, extra):
    result = run_pyfunc(str(function), env={**_blocking(tmp_path, module), **env, "PORT": str(free_port())})
    line = _one_error_line(result)
    assert setting in line and f"pip install '{extra}'" in line and "not installed" in line, line


def test_otlp_without_its_exporter_package_is_one_error_line(function):
    """The SDK is there (the otel extra), opentelemetry-exporter-otlp is not: the spans would go nowhere."""
    result = run_pyfunc(str(function), env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                                             "PORT": str(free_port())})
    line = _one_error_line(result)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in line and "pip install opentelemetry-exporter-otlp" in line, line


def test_reload_without_watchfiles_names_the_extra(function, tmp_path):
    result = subprocess.run([PYFUNC, "run", str(function), "--reload"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **_blocking(tmp_path, "watchfiles")})
    line = _one_error_line(result)
    assert "--reload" in line and "pip install 'pyfunc-invoker[reload]'" in line, line


@pytest.mark.parametrize("source", [
    "from pydantic import BaseModel\n\ndef handler(body):\n    return body\n",
    "from cloudevents.pydantic import CloudEvent\n\ndef handler(event: CloudEvent):\n    return event\n",
])
def test_a_handler_that_needs_pydantic_is_told_which_extra_installs_it(tmp_path, source):
    directory = write_function(tmp_path / "fn", source)
    result = run_pyfunc(str(directory), env=_blocking(tmp_path, "pydantic"))
    line = _one_error_line(result)
    assert "pip install 'pyfunc-invoker[pydantic]'" in line, line


BROKEN = [
    ("PYFUNC_THREADS", "abc", "must be a whole number"),
    ("PYFUNC_THREADS", "99999999999", "must be at most 10000"),
    ("PYFUNC_MAX_THREADS", "0", "must be at least 1"),
    ("PORT", "70000", "must be at most 65535"),
    ("PYFUNC_MAX_CONCURRENCY", "-5", "must not be negative"),
    ("PYFUNC_MAX_BODY_SIZE", "1e400", "must be a number of bytes"),
    ("PYFUNC_MAX_BODY_SIZE", "12Q", "must be a number of bytes"),
    ("PYFUNC_TIMEOUT", "nan", "must be a finite number"),
    ("PYFUNC_RECEIVE_TIMEOUT", "soon", "must be a number"),
    ("REVISION_TIMEOUT_SECONDS", "inf", "must be a finite number"),
    ("PYFUNC_DEDUPE_TTL", "0", "must be positive"),
    ("PYFUNC_METRICS", "maybe", "must be true or false"),
    ("PYFUNC_LOG_LEVEL", "loud", "must be one of"),
    ("PYFUNC_DEDUPE", "mongodb://x", "must be off, memory or a redis"),
    ("PYFUNC_HOST", "999.1.1.1", "cannot listen on 999.1.1.1"),
]


@pytest.mark.parametrize(("name", "value", "message"), BROKEN, ids=[f"{n}={v}" for n, v, _ in BROKEN])
def test_a_broken_setting_is_one_error_line_naming_it(function, name, value, message):
    line = _one_error_line(run_pyfunc(str(function), env={name: value}))
    assert (name in line or name == "PYFUNC_HOST") and message in line, line
    assert "invalid literal" not in line and "could not convert" not in line and "Error:" not in line, line


def test_invoke_ends_quietly_when_its_reader_goes_away(tmp_path):
    """``pyfunc invoke … | head -5`` once the reader left: no BrokenPipeError traceback.

    The pipe's read end is closed before pyfunc writes, so its first write fails every time."""
    server = start_server(write_function(tmp_path / "fn", "def handler(data):\n    return {'rows': list(range(9))}\n"))
    try:
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            result = subprocess.run([PYFUNC, "invoke", "--mode", "batch", "-d", '{"a": 1}', "-d", '{"b": 2}',
                                     server.url], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(write_end)
        assert result.stderr == "", result.stderr
        assert result.returncode == 141
    finally:
        server.stop()


def test_the_bash_pipeline_with_head_prints_no_traceback(tmp_path):
    """The line from the issue, as a user types it (a large reply, so pyfunc is still writing)."""
    source = "def handler(data):\n    return {'rows': [{'n': n, 'pad': 'x' * 200} for n in range(5000)]}\n"
    server = start_server(write_function(tmp_path / "fn", source))
    try:
        result = subprocess.run(["bash", "-c", f"set -o pipefail; {PYFUNC} invoke --http -d '{{}}' {server.url}"
                                 " 2>&1 | head -5"], capture_output=True, text=True, timeout=60)
        assert "Traceback" not in result.stdout + result.stderr and "BrokenPipe" not in result.stdout + result.stderr
        assert len(result.stdout.splitlines()) == 5, result.stdout
    finally:
        server.stop()


