"""Real CPU cgroups for tests: a quota like a Kubernetes CPU limit, on this machine's kernel.

cgroup v1's ``cpu`` controller (what this machine mounts) or a v2 unified hierarchy; a test that
needs one and finds neither (or no right to write it) is skipped with the reason. Every cgroup is
made under the root with a unique name and removed afterwards, its processes moved back first.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

V1_CPU = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")


class CpuCgroup:
    """One cgroup with a CPU quota; :meth:`add` moves a process (every thread of it) in."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path = path
        self.v2 = v2

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def pids(self) -> list[int]:
        return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]

    def throttled_periods(self) -> int:
        """How many quota periods throttled the cgroup so far (the quota did bite)."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "nr_throttled":
                return int(value)
        raise AssertionError(f"no nr_throttled in {self.path}/cpu.stat")


def _writable_root() -> Optional[tuple[Path, bool]]:
    if (V1_CPU / "cpu.cfs_quota_us").exists() and os.access(V1_CPU / "cgroup.procs", os.W_OK):
        return V1_CPU, False
    if ((V2_ROOT / "cgroup.controllers").exists() and os.access(V2_ROOT / "cgroup.procs", os.W_OK)
            and "cpu" in (V2_ROOT / "cgroup.subtree_control").read_text().split()):
        return V2_ROOT, True
    return None


@contextlib.contextmanager
def cpu_quota(cpus: float, period_us: int = 100_000) -> Iterator[CpuCgroup]:
    """A fresh cgroup allowed ``cpus`` CPUs (quota/period), removed on exit."""
    found = _writable_root()
    if found is None:
        pytest.skip("no writable cpu cgroup (v1 cpu controller or v2 with cpu enabled) on this machine")
    root, v2 = found
    path = root / f"pyfunc-test-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir()
    group = CpuCgroup(path, v2)
    try:
        quota = int(cpus * period_us)
        if v2:
            (path / "cpu.max").write_text(f"{quota} {period_us}\n")
        else:
            (path / "cpu.cfs_period_us").write_text(f"{period_us}\n")
            (path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        yield group
    finally:
        for _ in range(50):  # move whatever is left (a process still running) back to the root
            pids = group.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    (root / "cgroup.procs").write_text(f"{pid}\n")
            time.sleep(0.02)
        for _ in range(50):
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.05)
