"""tests/asgi: ASGI apps and Knative func Python functions, served by pyfunc and by the servers they
run under today (uvicorn; func-python 0.8.1 on hypercorn), in .venv-asgi (scripts/test-asgi.sh,
from scripts/locks/asgi.lock). Elsewhere (.venv has no Starlette, no func-python) they are skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import requests

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
FUNCTIONS = HERE / "functions"

try:
    import fastapi  # noqa: F401
    import func_python  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError:
    collect_ignore_glob = ["test_*.py"]  # run by scripts/test-asgi.sh in .venv-asgi


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    name: str
    url: str
    process: subprocess.Popen
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


def launch(name: str, command: list[str], cwd: Path, log: Path, env: Optional[dict] = None,
           probe: str = "/health/liveness") -> Served:
    port = free_port()
    hermetic = ("PYFUNC_", "PYTHON_HANDLER", "K_", "LISTEN_ADDRESS", "PORT")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(hermetic)}
    full_env.update({"PORT": str(port), "PYFUNC_HOST": "127.0.0.1", "LISTEN_ADDRESS": f"127.0.0.1:{port}",
                     "PYTHONUNBUFFERED": "1", **(env or {})})
    command = [part.replace("{port}", str(port)) for part in command]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    served = Served(name, f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{served.logs()}")
        try:
            requests.get(served.url + probe, timeout=2)
            return served
        except requests.ConnectionError:
            time.sleep(0.05)
    served.stop()
    raise RuntimeError(f"{name} did not come up:\n{served.logs()}")


def pyfunc_server(directory: Path, log: Path, handler: Optional[str] = None, env: Optional[dict] = None) -> Served:
    extra = {"PYTHON_HANDLER": handler} if handler else {}
    return launch("pyfunc", [sys.executable, "-m", "pyfunc", str(directory)], directory, log, {**extra, **(env or {})})


def uvicorn_server(directory: Path, log: Path, app: str) -> Served:
    return launch("uvicorn", [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}",
                              "--app-dir", str(directory), "--lifespan", "auto", "--no-access-log"], directory, log)


# What func's scaffolding (templates/python/scaffolding/instanced-http/service/main.py) runs, in substance.
FUNC_PYTHON_MAIN = """
import sys
sys.path.insert(0, ".")
import func_python.{flavour} as middleware
from function import new
middleware.serve(new)
"""


def func_python_server(directory: Path, log: Path, flavour: str, env: Optional[dict] = None) -> Served:
    return launch("func-python", [sys.executable, "-c", FUNC_PYTHON_MAIN.format(flavour=flavour)], directory, log, env)


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")
