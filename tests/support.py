"""Shared test helpers: real pyfunc server processes on loopback ports, and SDK-built events.

Imported as ``from support import ...`` (a module named ``conftest`` would collide with the
conftest.py files of sub-folders).

``serve(source)`` writes ``source`` as ``handler.py`` into a fresh directory, starts
``python -m pyfunc DIR`` on a free loopback port and waits until it answers. Every test
talks to it over real HTTP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import requests

try:
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent, from_http  # noqa: F401 - the tests' decoder, either major

    LEGACY = "cloudevents"
except ImportError:  # cloudevents 2.x (scripts/test-sdk2.sh): the same 1.x API, under cloudevents.v1
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent, from_http  # noqa: F401

    LEGACY = "cloudevents.v1"

import socket
from typing import Any

# The top of a handler.py whose spans a test reads back: ``start()`` installs an SDK tracer provider
# with an in-memory exporter (pyfunc then traces into it), ``stop()`` writes the finished spans to
# spans.json beside the handler, so a real server process and a real SIGTERM are all it takes.
SPANS_TO_FILE = """
import json, pathlib
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

HERE = pathlib.Path(__file__).parent
EXPORTER = InMemorySpanExporter()

def start(cfg):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)

def stop():
    spans = [json.loads(span.to_json()) for span in EXPORTER.get_finished_spans()]
    (HERE / "spans.json").write_text(json.dumps(spans))
"""


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def socket_map(server: Any) -> dict[int, Any]:
    """A waitress server's dispatchers by fd: what its loop watches."""
    return server._map  # type: ignore[no-any-return]


def pool_size(server: Any) -> int:
    """Threads a waitress server's pool has now."""
    dispatcher = server.task_dispatcher
    with dispatcher.lock:
        return int(len(dispatcher.threads) - dispatcher.stop_count)


def legacy(source: str) -> str:
    """A handler's source with 1.x's module paths (``from cloudevents.http import ...``) moved
    under ``cloudevents.v1`` when 2.x is installed: the same handler tests both majors."""
    return source.replace("from cloudevents.", f"from {LEGACY}.")


@dataclass
class Running:
    """A running function server."""

    url: str
    port: int
    process: subprocess.Popen
    log_path: Path
    directory: Path
    _log_offset: int = field(default=0)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the server and wait for it; SIGKILL (the fixtures' teardown) takes its workers
        (PYFUNC_WORKERS) too. The kernel tells a worker its supervisor died with a SIGTERM, and
        a worker drains that without a limit by default (Knative's SIGKILL bounds it): one left
        with a handler stuck in a failed test would outlive the run and load the machine."""
        if self.process.poll() is None:
            workers = children(self.process.pid) if sig == signal.SIGKILL else set()
            self.process.send_signal(sig)
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


def children(pid: int) -> set[int]:
    """The live child processes of ``pid``, from /proc (empty where there is no /proc)."""
    found = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            requests.get(url + "/health/liveness", timeout=1)
            return
        except (requests.ConnectionError, requests.Timeout):  # a slow answer on a busy machine: ask again
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server did not come up in {timeout}s:\n{log_path.read_text()}")


def start_server(
    directory: Path,
    env: Optional[dict] = None,
    args: Optional[list] = None,
    wait: bool = True,
) -> Running:
    port = free_port()
    log_path = directory.parent / f"{directory.name}-server.log"
    hermetic = ("PYFUNC_", "PYTHON_HANDLER", "K_", "REVISION_TIMEOUT")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(hermetic)}
    full_env.update({"PORT": str(port), "PYFUNC_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"})
    full_env.update(env or {})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pyfunc", str(directory), *(args or [])],
            stdout=log, stderr=subprocess.STDOUT, env=full_env,
        )
    running = Running(f"http://127.0.0.1:{port}", port, process, log_path, directory)
    if wait:
        wait_until_up(running.url, process, log_path)
    return running


def write_function(directory: Path, source: str, files: Optional[dict] = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "handler.py").write_text(textwrap.dedent(source))
    for name, content in (files or {}).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
    return directory


def run_pyfunc(*args: str, cwd: Optional[Path] = None, env: Optional[dict] = None,
               timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``python -m pyfunc ARGS`` to completion (for startup errors, --help, check)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFUNC_", "PYTHON_HANDLER"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "pyfunc", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def make_event(data=None, **attrs) -> CloudEvent:
    """A CloudEvent built by the real SDK (which adds a `time`, as real senders' SDKs do)."""
    base = {"type": "com.example.test", "source": "/tests", "id": "evt-1"}
    base.update(attrs)
    return CloudEvent(base, data)


def send(url: str, event: CloudEvent, structured: bool = False, **kwargs) -> requests.Response:
    """POST ``event`` in binary (default) or structured mode, encoded by the SDK."""
    headers, body = (to_structured if structured else to_binary)(event)
    headers = {**headers, **kwargs.pop("headers", {})}
    return requests.post(url, headers=headers, data=body, timeout=kwargs.pop("timeout", 10), **kwargs)
