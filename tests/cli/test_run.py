"""``pyfunc run`` and ``pyfunc run --reload``: real servers, real edits, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from support import free_port

PYFUNC = str(Path(sys.executable).with_name("pyfunc"))

V1 = 'def handler(body):\n    return "v1"\n'


@dataclass
class Run:
    process: subprocess.Popen
    url: str
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start(directory: Path, *args: str, env: dict | None = None, wait: bool = True) -> Run:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFUNC_", "PYTHON_HANDLER", "K_"))}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    log_path = directory.parent / f"{directory.name}-run.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([PYFUNC, "run", str(directory), "--port", str(port), "--host", "127.0.0.1", *args],
                                   stdout=log, stderr=subprocess.STDOUT, env=full_env)
    run = Run(process, f"http://127.0.0.1:{port}", port, log_path)
    if wait:
        until(lambda: answers(run), what=f"the server to answer\n{run.log()}")
    return run


def answers(run: Run) -> bool:
    if run.process.poll() is not None:
        raise AssertionError(f"pyfunc run exited with {run.process.returncode}:\n{run.log()}")
    try:
        requests.get(run.url + "/health/liveness", timeout=2)
        return True
    except requests.ConnectionError:
        return False


def until(check: Callable[[], Any], what: str = "the condition", timeout: float = 60) -> Any:
    """Poll ``check`` until it returns something truthy (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def get(run: Run) -> requests.Response | None:
    try:
        return requests.post(run.url, data=b"{}", timeout=5)
    except requests.ConnectionError:
        return None  # between two servers while restarting


def reply_text(run: Run, text: str) -> Callable[[], bool]:
    def check() -> bool:
        if run.process.poll() is not None:
            raise AssertionError(f"pyfunc run --reload exited:\n{run.log()}")
        response = get(run)
        return response is not None and response.status_code == 200 and response.text == text

    return check


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == pid:
                found.append(int(entry.name))
    return found


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def function(tmp_path) -> Path:
    directory = tmp_path / "fn"
    directory.mkdir()
    (directory / "handler.py").write_text(V1)
    return directory


@pytest.fixture
def runs():
    started: list[Run] = []
    yield started
    for run in started:
        if run.process.poll() is None:
            for child in children_of(run.process.pid):
                os.kill(child, signal.SIGKILL)
            run.process.kill()
            run.process.wait()


# --------------------------------------------------------------------------- without --reload


def test_run_serves_and_stops_on_sigterm(function, runs):
    run = start(function)
    runs.append(run)
    assert get(run).text == "v1"
    run.process.send_signal(signal.SIGTERM)
    assert run.process.wait(60) == 0


def test_run_without_reload_exits_on_a_load_error(function):
    (function / "handler.py").write_text("def handler(body):\n    return (\n")
    result = subprocess.run([PYFUNC, "run", str(function), "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "SyntaxError" in result.stderr


# --------------------------------------------------------------------------- --reload


def test_reload_picks_up_an_edit(function, runs):
    run = start(function, "--reload")
    runs.append(run)
    assert get(run).text == "v1"
    (function / "handler.py").write_text('def handler(body):\n    return "v2"\n')
    until(reply_text(run, "v2"), "the edited handler to be served")
    assert "change detected in handler.py: restarting" in run.log()


def test_reload_survives_a_syntax_error_and_its_fix(function, runs):
    run = start(function, "--reload")
    runs.append(run)
    (function / "handler.py").write_text('def handler(body):\n    return "v2"\n  oops(\n')

    def load_error() -> Any:
        response = get(run)
        return response is not None and response.status_code == 500 and response.json()

    problem = until(load_error, "the syntax error to be served as a 500")
    assert problem["reason"] == "handler-load-error"
    assert problem["file"] == str(function / "handler.py")
    assert problem["line"] == 3
    assert problem["message"].startswith("SyntaxError")
    assert run.process.poll() is None
    assert "the function failed to load" in run.log()

    (function / "handler.py").write_text('def handler(body):\n    return "fixed"\n')
    until(reply_text(run, "fixed"), "the fixed handler to be served")


def test_reload_starts_even_when_the_handler_is_broken(function, runs):
    (function / "handler.py").write_text("import not_installed_anywhere\n\ndef handler(body):\n    return 'x'\n")
    run = start(function, "--reload")
    runs.append(run)
    response = get(run)
    assert response.status_code == 500
    assert "not_installed_anywhere" in response.json()["message"]
    (function / "handler.py").write_text(V1)
    until(reply_text(run, "v1"), "the repaired handler to be served")


def test_reload_watches_sibling_modules_but_not_other_files(function, runs):
    (function / "words.py").write_text('WORD = "one"\n')
    (function / "handler.py").write_text("import words\n\ndef handler(body):\n    return words.WORD\n")
    run = start(function, "--reload")
    runs.append(run)
    assert get(run).text == "one"
    (function / "notes.txt").write_text("not code\n")
    (function / "words.py").write_text('WORD = "two"\n')
    until(reply_text(run, "two"), "the edited sibling module to be served")
    assert "words.py" in run.log()
    assert "notes.txt" not in run.log()


def test_reload_restarts_on_requirements_changes(function, runs):
    run = start(function, "--reload")
    runs.append(run)
    (function / "requirements.txt").write_text("requests\n")
    until(lambda: "change detected in requirements.txt" in run.log(), "the requirements change to be noticed")
    until(lambda: "pip install -r requirements.txt" in run.log(), "the install hint")
    until(reply_text(run, "v1"), "the server to be back")


def test_reload_forwards_the_server_flags(function, runs):
    (function / "handler.py").write_text('def handler(data):\n    return {"type": "t"}, data\n')
    run = start(function, "--reload", "--reply-mode", "structured", "--no-access-log")
    runs.append(run)
    response = requests.post(run.url, json={"a": 1}, timeout=5, headers={
        "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"})
    assert response.headers["Content-Type"].startswith("application/cloudevents+json")
    assert response.json()["data"] == {"a": 1}
    assert "pyfunc.access" not in run.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_reload_forwards_signals_and_leaves_no_server_behind(function, runs, sig):
    run = start(function, "--reload")
    runs.append(run)
    [child] = until(lambda: children_of(run.process.pid), "the server child process")
    run.process.send_signal(sig)
    assert run.process.wait(60) == 0
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
    assert refused(run.port)


def test_reload_gives_up_when_the_first_server_cannot_start(function):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([PYFUNC, "run", str(function), "--reload", "--host", "127.0.0.1", "--port", str(port)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--reload"], "does not exist"),
        (["{fn}", "--reload", "--threads", "0"], "--threads='0' is invalid"),
    ],
)
def test_reload_errors_are_one_line(function, args, message):
    args = [a.replace("{missing}", str(function / "missing")).replace("{fn}", str(function)) for a in args]
    result = subprocess.run([PYFUNC, "run", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("pyfunc: error:") and message in line


def test_reload_without_watchfiles_says_how_to_install_it(function, tmp_path):
    shadow = tmp_path / "shadow" / "watchfiles"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('watchfiles is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    result = subprocess.run([PYFUNC, "run", str(function), "--reload"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "pyfunc: error: --reload needs the watchfiles package, which cannot be imported (watchfiles is "
        "not installed here): pip install 'pyfunc-invoker[reload]'"
    )
