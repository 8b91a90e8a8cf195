"""A pod's limits, with real containers of pyfunc/base: a CPU quota (``docker run --cpus``) and a
memory limit (``--memory``, read-only root, ``/tmp`` a tmpfs counted in the limit, as a Knative pod
with an ``emptyDir: {medium: Memory}`` has it).

- Computing workers under ``--cpus=0.5`` do not grow the pool, and the start-up line names the quota.
- A flood of 10 MiB bodies into a 128 MiB container: every request is answered (200, 413, 429 or
  503) and the container is still running, not OOM-killed (pyfunc._memory's budget, auto).
- The measurements behind docs/serving.md's "Sizing a pod": memory and ``/tmp`` per body in flight
  (100 KiB, 1 MiB, 10 MiB) and the most 1 MiB bodies held at once in 128 and 256 MiB without the
  budget. Written to e2e/results/pod_sizing.json (with PYFUNC_RECORD=1; else to the cache) and
  rendered by scripts/figures.py.

The function directory is mounted at /workspace (the base image's entry point serves it), so no
``pack build`` is needed: what is measured is the runtime in the base image.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import pytest
import requests

from pyfunc_e2e import BASE, REPO, running, sh

sys.path.insert(0, str(REPO / "scripts"))
from provenance import destination, stamp  # noqa: E402

pytestmark = pytest.mark.e2e

RESULTS = REPO / "e2e" / "results" / "pod_sizing.json"
# The image run: pyfunc/base (the default stack's), or another stack's tag (PYFUNC_E2E_BASE=pyfunc/base:3.13).
IMAGE = os.environ.get("PYFUNC_E2E_BASE", BASE)
MiB = 1 << 20

COMPUTE = """
import time

def handler(body: bytes):
    start = time.thread_time()
    while time.thread_time() - start < 0.01:
        sum(range(1000))
    return b"done"
"""

# Holds each request in the handler until /tmp/release exists: bodies stay in flight, measurable.
HELD = """
import os, time, uuid

def handler(body: bytes):
    if body == b"warm":  # the first request, answered at once: what a first request loads is loaded
        return "warm"
    open("/tmp/started-" + uuid.uuid4().hex, "w").close()
    while not os.path.exists("/tmp/release"):
        time.sleep(0.02)
    return str(len(body))
"""

LENGTH = """
import time

def handler(body: bytes):
    time.sleep(0.2)
    return str(len(body))
"""


def _function(tmp_path: Path, source: str) -> Path:
    directory = tmp_path / "fn"
    directory.mkdir(exist_ok=True)
    (directory / "handler.py").write_text(source)
    directory.chmod(0o755)
    (directory / "handler.py").chmod(0o644)
    return directory


def _limited(directory: Path, memory: Optional[str] = None, *extra: str) -> list[str]:
    args = ["-v", f"{directory}:/workspace:ro", "--read-only", "--tmpfs", "/tmp:rw,exec,mode=1777", *extra]
    if memory:
        args += [f"--memory={memory}", f"--memory-swap={memory}"]
    return args


# The container is read from the host, through its main process's /proc entry (its status, and its
# /tmp through /proc/PID/root), never by `docker exec`: an exec'd process is charged to the
# container's memory cgroup, and at the limit it blocks in reclaim with the bodies it should count.


def _proc(name: str) -> Optional[Path]:
    """/proc/PID of the container's main process (pyfunc); None once it is gone."""
    pid = sh("docker", "inspect", "-f", "{{.State.Pid}}", name, check=False).stdout.strip()
    return Path(f"/proc/{pid}") if pid.isdigit() and pid != "0" and Path(f"/proc/{pid}").exists() else None


def _running(name: str) -> Path:
    proc = _proc(name)
    assert proc is not None, f"container {name} is not running"
    return proc


def _status(proc: Path, field: str) -> int:
    return int(next(line.split()[1] for line in (proc / "status").read_text().splitlines()
                    if line.startswith(field + ":")))


def _threads(name: str) -> int:
    return _status(_running(name), "Threads")


def _release(name: str) -> None:
    """Let every held handler return (they wait for /tmp/release)."""
    proc = _proc(name)
    if proc is not None:
        (proc / "root" / "tmp" / "release").touch()


def _cgroup_bytes(name: str) -> int:
    """The container's memory use as its limit counts it (RSS, page cache, tmpfs), from the host's v1 cgroup."""
    cid = sh("docker", "inspect", "-f", "{{.Id}}", name).stdout.strip()
    for path in (Path(f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes"),
                 Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.current")):
        if path.exists():
            return int(path.read_text())
    pytest.skip("cannot find the container's memory cgroup on the host")


def _rss_and_tmp(name: str) -> tuple[int, int]:
    """pyfunc's resident memory and the bytes used on the container's /tmp tmpfs."""
    proc = _running(name)
    tmp = os.statvfs(proc / "root" / "tmp")
    return _status(proc, "VmRSS") * 1024, (tmp.f_blocks - tmp.f_bfree) * tmp.f_frsize


def _started(name: str) -> int:
    """Requests held in the handler now; -1 when the container cannot be asked (killed, going)."""
    proc = _proc(name)
    try:
        return -1 if proc is None else sum(f.startswith("started-") for f in os.listdir(proc / "root" / "tmp"))
    except OSError:  # it went between the two looks
        return -1


def _post(url: str, size: int, answers: list, timeout: float = 120) -> None:
    try:
        answers.append(requests.post(url, data=b"x" * size, timeout=timeout).status_code)
    except requests.RequestException as exc:
        answers.append(type(exc).__name__)


def _hold(url: str, name: str, size: int, count: int, answers: list, already: int = 0,
          wait: float = 90) -> list[threading.Thread]:
    """``count`` more requests of ``size`` bytes, held in the handler; returns their client threads."""
    clients = [threading.Thread(target=_post, args=(url, size, answers)) for _ in range(count)]
    for client in clients:
        client.start()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if sh("docker", "inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip() != "true":
            break
        found = _started(name)
        if found < 0 or found >= already + count:
            break
        time.sleep(0.1)
    return clients


# ---- CPU quota -----------------------------------------------------------------------------------


def test_computing_workers_under_half_a_cpu_do_not_grow_the_pool(tmp_path):
    directory = _function(tmp_path, COMPUTE)
    with running(IMAGE, *_limited(directory, None, "--cpus=0.5", "-e", "PYFUNC_MAX_THREADS=64")) as container:
        assert "(2-64 threads; CPU limit 0.5" in container.logs(), container.logs()
        baseline = _threads(container.name)
        stop, answers, peak = threading.Event(), [], [baseline]

        def client() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    answers.append(session.post(container.url, data=b"x", timeout=60).status_code)

        clients = [threading.Thread(target=client) for _ in range(16)]
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            peak[0] = max(peak[0], _threads(container.name))
            time.sleep(0.1)
        stop.set()
        for thread in clients:
            thread.join(90)
        assert set(answers) == {200} and len(answers) >= 20, (len(answers), set(answers))
        assert peak[0] <= baseline + 2, f"the pool grew from {baseline} to {peak[0]} threads for computing workers"


# ---- memory limit --------------------------------------------------------------------------------


def test_a_flood_of_10_mib_bodies_into_128_mib_is_all_answered_and_the_container_lives(tmp_path):
    directory = _function(tmp_path, LENGTH)
    with running(IMAGE, *_limited(directory, "128m", "-e", "PYFUNC_THREADS=16")) as container:
        assert "memory limit 128 MiB" in container.logs(), container.logs()
        answers: list = []
        clients = [threading.Thread(target=_post, args=(container.url, 10 * MiB, answers)) for _ in range(40)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(300)
        counts = Counter(answers)
        assert sh("docker", "inspect", "-f", "{{.State.OOMKilled}}", container.name).stdout.strip() == "false"
        assert container.state("Running") == "true", container.logs()[-3000:]
        assert len(answers) == 40 and set(counts) <= {200, 413, 429, 503}, counts
        assert counts[200] >= 1, counts
        assert requests.post(container.url, data=b"x" * (10 * MiB), timeout=120).status_code == 200
        _record({"flood_10MiB_x40_in_128MiB": dict(sorted((str(k), v) for k, v in counts.items()))})


# Five containers, and in two of them up to a hundred steps of 4 held bodies each: minutes on a busy
# machine (it once passed the default 300 s, when it still counted through `docker exec`). Bounded.
@pytest.mark.timeout(900)
def test_measure_memory_per_body_and_the_most_1_mib_bodies_that_fit(tmp_path):
    """Not an assertion of figures (they depend on the Python and the image): the measurement, with
    sanity checks that it measured something."""
    directory = _function(tmp_path, HELD)
    figures: dict = {"per_body": {}, "most_1MiB_bodies_held": {}}
    held = 8
    for label, size in (("100KiB", 100 << 10), ("1MiB", MiB), ("10MiB", 10 * MiB)):
        with running(IMAGE, *_limited(directory, "1g", "-e", "PYFUNC_MAX_BODY_BYTES_IN_FLIGHT=0",
                                     "-e", "PYFUNC_THREADS=16", "-e", "PYFUNC_MAX_BODY_SIZE=20M")) as container:
            requests.post(container.url, data=b"warm", timeout=30)  # imports done, as after a first request
            (rss0, tmp0), cg0 = _rss_and_tmp(container.name), _cgroup_bytes(container.name)
            answers: list = []
            clients = _hold(container.url, container.name, size, held, answers)
            assert _started(container.name) == held, "the bodies did not all reach the handler"
            time.sleep(0.5)
            (rss1, tmp1), cg1 = _rss_and_tmp(container.name), _cgroup_bytes(container.name)
            _release(container.name)
            for client in clients:
                client.join(120)
            assert answers == [200] * held, answers
            figures["per_body"][label] = {
                "body_bytes": size, "rss_bytes": round((rss1 - rss0) / held),
                "tmp_bytes": round((tmp1 - tmp0) / held), "cgroup_bytes": round((cg1 - cg0) / held),
                "idle_cgroup_bytes": cg0, "idle_rss_bytes": rss0,
            }
    assert figures["per_body"]["10MiB"]["cgroup_bytes"] > 10 * MiB  # the body, at least, was counted
    for limit in (128, 256):
        with running(IMAGE, *_limited(directory, f"{limit}m", "-e", "PYFUNC_MAX_BODY_BYTES_IN_FLIGHT=0",
                                     "-e", "PYFUNC_THREADS=16", "-e", "PYFUNC_MAX_THREADS=512")) as container:
            answers, clients, alive, step = [], [], 0, 4
            while True:
                clients += _hold(container.url, container.name, MiB, step, answers, already=alive)
                running_now = container.state("Running") == "true"
                if not running_now or _started(container.name) < alive + step:
                    break
                alive += step
                if alive >= 400:
                    break
            figures["most_1MiB_bodies_held"][f"{limit}MiB"] = {
                "held": alive, "oom_killed": sh("docker", "inspect", "-f", "{{.State.OOMKilled}}",
                                                 container.name).stdout.strip() == "true"}
            _release(container.name)
            for client in clients:
                client.join(120)
    assert figures["most_1MiB_bodies_held"]["128MiB"]["held"] >= 4
    from pyfunc._memory import default_budget

    figures["default_budget_bytes"] = {f"{limit}MiB": default_budget(limit * MiB) for limit in (128, 256)}
    _record(figures)


_RECORDED: dict = {}


def _record(figures: dict) -> None:
    """Merge into the results file (each test adds its part), stamped with commit, dirty, date."""
    path = destination(RESULTS)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(figures)
    data.update(stamp())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(json.dumps(figures, indent=2))
