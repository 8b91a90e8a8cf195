"""The CPUs and memory a container may use, read from its cgroup (v2 or v1) at start.

A Kubernetes CPU limit is a CFS quota on the pod's cgroup, not fewer visible cores: ``os.cpu_count()``
says 2 (or 64) on a node where the pod may use half a CPU. The pool's core (``PYFUNC_THREADS``) is
sized from what the pod may really use, and the start-up log line says what was found, so an
operator can see the limit pyfunc saw. A memory limit is read the same way (see pyfunc._memory).

cgroup v2: ``/proc/self/cgroup`` has ``0::/path``; ``cpu.max`` (``quota period`` or ``max period``)
and ``memory.max`` (bytes or ``max``) in ``<root>/<path>`` and each ancestor, the smallest wins.
cgroup v1: a line ``N:...cpu...:/path`` (``memory`` likewise); ``cpu.cfs_quota_us`` (``-1``: none) /
``cpu.cfs_period_us`` and ``memory.limit_in_bytes`` (a huge number: none) under the controller's
mount. In a container both paths are usually ``/`` (the container's own cgroup is the root it sees).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import NamedTuple, Optional
else:
    import collections

__all__ = ["Limits", "read_limits", "limits", "default_threads", "describe"]

ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
# v1 reports "no memory limit" as the largest page-aligned 64-bit number; anything this big is none.
_NO_MEMORY_LIMIT = 1 << 60

if TYPE_CHECKING:
    class Limits(NamedTuple):
        cpus: Optional[float]      # CPUs the quota allows (0.5: half a CPU), None: no quota
        memory: Optional[int]      # bytes, None: no limit
        source: str                # "cgroup v2", "cgroup v1" or "" (none found)
else:
    Limits = collections.namedtuple("Limits", "cpus memory source")


def _read(path: str) -> Optional[str]:
    # Bytes, decoded here: open(encoding="ascii") would import encodings.ascii at every start.
    try:
        with open(path, "rb") as file:
            return file.read().decode("ascii").strip()
    except (OSError, ValueError):  # ValueError: not ASCII, so no number or path this reads
        return None


def _ancestry(root: str, path: str) -> list[str]:
    """``root/path`` and every directory above it up to ``root``: a limit anywhere above applies."""
    parts = [part for part in path.split("/") if part and part not in (".", "..")]
    return [os.path.join(root, *parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2(root: str, path: str) -> Limits:
    cpus: Optional[float] = None
    memory: Optional[int] = None
    for directory in _ancestry(root, path):
        fields = (_read(os.path.join(directory, "cpu.max")) or "").split()
        if len(fields) == 2 and fields[0] != "max":
            try:
                quota, period = int(fields[0]), int(fields[1])
            except ValueError:
                quota = period = 0
            if quota > 0 and period > 0:
                cpus = quota / period if cpus is None else min(cpus, quota / period)
        value = _read(os.path.join(directory, "memory.max"))
        if value and value != "max" and value.isdigit():
            memory = int(value) if memory is None else min(memory, int(value))
    return Limits(cpus, memory, "cgroup v2")


def _v1_mount(root: str, controller: str) -> Optional[str]:
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        if controller in name.split(","):
            return os.path.join(root, name)
    return None


def _v1(root: str, paths: dict[str, str]) -> Limits:
    cpus: Optional[float] = None
    memory: Optional[int] = None
    mount = _v1_mount(root, "cpu")
    if mount and "cpu" in paths:
        for directory in _ancestry(mount, paths["cpu"]):
            quota = _read(os.path.join(directory, "cpu.cfs_quota_us"))
            period = _read(os.path.join(directory, "cpu.cfs_period_us"))
            try:
                q, p = int(quota or "-1"), int(period or "0")
            except ValueError:
                continue
            if q > 0 and p > 0:
                cpus = q / p if cpus is None else min(cpus, q / p)
    mount = _v1_mount(root, "memory")
    if mount and "memory" in paths:
        for directory in _ancestry(mount, paths["memory"]):
            value = _read(os.path.join(directory, "memory.limit_in_bytes"))
            if value and value.isdigit() and int(value) < _NO_MEMORY_LIMIT:
                memory = int(value) if memory is None else min(memory, int(value))
    return Limits(cpus, memory, "cgroup v1")


def read_limits(root: str = ROOT, proc_cgroup: str = PROC_CGROUP) -> Limits:
    """The CPU quota and memory limit of this process's cgroup (``root`` and ``proc_cgroup`` are
    parameters so tests can give a tree of real files)."""
    text = _read(proc_cgroup)
    if not text:
        return Limits(None, None, "")
    v1_paths: dict[str, str] = {}
    unified: Optional[str] = None
    for line in text.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            unified = path
        for controller in controllers.split(","):
            if controller:
                v1_paths[controller] = path
    if ("cpu" in v1_paths or "memory" in v1_paths) and not os.path.exists(os.path.join(root, "cgroup.controllers")):
        return _v1(root, v1_paths)
    if unified is not None and os.path.exists(os.path.join(root, "cgroup.controllers")):
        return _v2(root, unified)
    return Limits(None, None, "")


_limits: Optional[Limits] = None


def limits() -> Limits:
    """:func:`read_limits` of this process, read once."""
    global _limits
    if _limits is None:
        _limits = read_limits()
    return _limits


def usable_cpus(found: Optional[Limits] = None) -> float:
    """CPUs the process may use: the quota, else the cores it may run on."""
    found = limits() if found is None else found
    try:
        cores = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = float(os.cpu_count() or 1)
    return min(cores, found.cpus) if found.cpus else cores


# The default pool core: 4 threads per usable CPU, from 2 up to PYFUNC_THREADS's default in
# pyfunc._config.SETTINGS (8: enough for CPU-bound handlers on a 2-core machine); a half-CPU pod
# gets 2, a 1-CPU pod 4. More would only share the same fraction of a core under the GIL, each
# costing memory; blocked workers still get threads from the elastic pool, up to
# PYFUNC_MAX_THREADS, whatever the core is.
THREADS_PER_CPU = 4
MIN_THREADS = 2


def default_threads(found: Optional[Limits] = None) -> int:
    """``PYFUNC_THREADS`` when it is not set: from the CPUs the pod may use, at most its default."""
    import math

    from ._config import SETTINGS

    highest: int = next(setting.default for setting in SETTINGS if setting.name == "threads")
    return max(MIN_THREADS, min(highest, math.ceil(THREADS_PER_CPU * usable_cpus(found))))


def describe(found: Optional[Limits] = None) -> str:
    """What the start-up log line says was detected: ``CPU limit 0.5 (cgroup v1)``."""
    found = limits() if found is None else found
    parts = []
    if found.cpus:
        parts.append(f"CPU limit {found.cpus:g}")
    if found.memory:
        parts.append(f"memory limit {found.memory / (1 << 20):.0f} MiB")
    if not parts:
        return f"no CPU or memory limit, {usable_cpus(found):g} CPUs"
    return ", ".join(parts) + f" ({found.source})"
