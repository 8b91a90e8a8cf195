"""The pool's core from a real CPU quota: a server started inside a v1 (or v2) cgroup with half a
CPU serves with 2 core threads and says what it detected in its start-up line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from cgroups import cpu_quota
from support import Running, free_port, wait_until_up, write_function


def _start_inside(cgroup_procs: Path, directory: Path, env: dict) -> Running:
    """``python -m pyfunc DIR`` that joins the cgroup before it runs (so it reads the quota at start)."""
    port = free_port()
    log_path = directory.parent / "server.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFUNC_", "PYTHON_HANDLER", "K_"))}
    full_env.update({"PORT": str(port), "PYFUNC_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1", **env})

    def join() -> None:
        cgroup_procs.write_text("0\n")  # "0": the writing process, i.e. this child before exec

    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "pyfunc", str(directory)], stdout=log,
                                   stderr=subprocess.STDOUT, env=full_env, preexec_fn=join)
    running = Running(f"http://127.0.0.1:{port}", port, process, log_path, directory)
    wait_until_up(running.url, process, log_path)
    return running


def test_half_a_cpu_gives_a_core_of_two_threads_and_the_log_says_why(tmp_path):
    directory = write_function(tmp_path / "fn", "def handler(body):\n    return body\n")
    with cpu_quota(0.5) as cgroup:
        server = _start_inside(cgroup.path / "cgroup.procs", directory, {})
        try:
            assert server.process.pid in cgroup.pids()
            assert requests.post(server.url, data=b"x", timeout=30).content == b"x"
            log = server.logs()
            source = "cgroup v2" if cgroup.v2 else "cgroup v1"
            assert "(2-256 threads; CPU limit 0.5" in log and source in log, log
        finally:
            server.stop()


def test_an_explicit_pyfunc_threads_wins_over_the_quota(tmp_path):
    directory = write_function(tmp_path / "fn", "def handler(body):\n    return body\n")
    with cpu_quota(0.5) as cgroup:
        server = _start_inside(cgroup.path / "cgroup.procs", directory, {"PYFUNC_THREADS": "5"})
        try:
            assert "(5-256 threads; CPU limit 0.5" in server.logs()
        finally:
            server.stop()
