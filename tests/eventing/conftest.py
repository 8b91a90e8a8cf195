"""Real Redis and Prometheus processes on loopback for the eventing tests.

Both come from Debian (``redis-server``, ``prometheus``) and are installed here with apt-get
when missing (as root; the tests that need them are skipped otherwise). Each process gets a
free port and a temporary directory, and is stopped (by its own pid) after its tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from support import free_port

_apt_updated = False


def ensure_installed(binary: str, package: str) -> str:
    """The path of ``binary``, installing Debian's ``package`` first if it is missing."""
    global _apt_updated
    found = shutil.which(binary) or (f"/usr/bin/{binary}" if os.path.exists(f"/usr/bin/{binary}") else None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{binary} is not installed and apt-get cannot install {package} here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        _apt_updated = True
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                   check=True, env=env, timeout=900, stdout=subprocess.DEVNULL)
    found = shutil.which(binary)
    if not found:
        pytest.skip(f"{package} installed but {binary} not found")
    return found


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def client(self):  # noqa: ANN201 - a redis.Redis
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)


def _start_redis(binary: str, directory: Path, port: int = 0) -> RedisServer:
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory), "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    wait_for_port(port, process)
    return RedisServer(port, process)


@pytest.fixture(scope="session")
def redis_binary() -> str:
    return ensure_installed("redis-server", "redis-server")


@pytest.fixture
def redis_server(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test (tests kill it, or fill it with their own keys)."""
    server = _start_redis(redis_binary, tmp_path)
    yield server
    server.kill()


@pytest.fixture
def restart_redis(redis_binary: str, tmp_path: Path) -> Callable[[int], RedisServer]:
    """Start a redis-server again on a given port (after a test killed the first one)."""
    started: list[RedisServer] = []

    def start(port: int) -> RedisServer:
        server = _start_redis(redis_binary, tmp_path, port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen


@pytest.fixture
def prometheus(tmp_path: Path) -> Callable[[list[str]], PrometheusServer]:
    """``prometheus([target, ...])``: a Prometheus scraping the targets every second."""
    binary = ensure_installed("prometheus", "prometheus")
    started: list[subprocess.Popen] = []

    def start(targets: list[str]) -> PrometheusServer:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: pyfunc\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
            f"    static_configs:\n      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        started.append(process)
        wait_for_port(port, process, 60)
        return PrometheusServer(f"http://127.0.0.1:{port}", process)

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
