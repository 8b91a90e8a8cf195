"""pyfunc._cgroup over cgroup trees of real files (v2 is not mounted on the CI machine; v1's real
cgroup is tested in tests/serving/test_cpu_limits.py): the layouts Kubernetes and docker make."""

from __future__ import annotations

from pathlib import Path

from pyfunc import _cgroup


def _tree(root: Path, files: dict[str, str], proc: str) -> tuple[str, str]:
    for name, text in files.items():
        path = root / "fs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    (root / "cgroup").write_text(proc + "\n")
    return str(root / "fs"), str(root / "cgroup")


def test_v2_a_container_at_the_root_of_its_namespace(tmp_path):
    """docker run --cpus=0.5 --memory=128m: the container sees its own cgroup as the root."""
    found = _cgroup.read_limits(*_tree(tmp_path, {
        "cgroup.controllers": "cpuset cpu io memory pids", "cpu.max": "50000 100000", "memory.max": "134217728",
    }, "0::/"))
    assert found == _cgroup.Limits(0.5, 128 << 20, "cgroup v2")
    assert _cgroup.default_threads(found) == 2
    assert _cgroup.describe(found) == "CPU limit 0.5, memory limit 128 MiB (cgroup v2)"


def test_v2_the_smallest_limit_on_the_path_wins(tmp_path):
    """A pod's limit on its pod cgroup, none on the container's below it (and the other way round)."""
    found = _cgroup.read_limits(*_tree(tmp_path, {
        "cgroup.controllers": "cpu memory",
        "kubepods/pod1/cpu.max": "150000 100000", "kubepods/pod1/memory.max": "max",
        "kubepods/pod1/c1/cpu.max": "max 100000", "kubepods/pod1/c1/memory.max": "268435456",
    }, "0::/kubepods/pod1/c1"))
    assert found == _cgroup.Limits(1.5, 256 << 20, "cgroup v2")
    # 4 per usable CPU: 1.5 CPUs on a machine of 2 cores or more, the one core of a 1-core one.
    assert _cgroup.default_threads(found) == (6 if _cgroup.usable_cpus(found) == 1.5 else 4)


def test_v2_no_limit(tmp_path):
    found = _cgroup.read_limits(*_tree(tmp_path, {
        "cgroup.controllers": "cpu memory", "cpu.max": "max 100000", "memory.max": "max"}, "0::/"))
    assert found == _cgroup.Limits(None, None, "cgroup v2")
    assert _cgroup.describe(found).startswith("no CPU or memory limit")


def test_v1_controllers_mounted_together_and_a_nested_path(tmp_path):
    found = _cgroup.read_limits(*_tree(tmp_path, {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000",
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "25000", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
        "memory/memory.limit_in_bytes": "9223372036854771712",
        "memory/docker/abc/memory.limit_in_bytes": "536870912",
    }, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/"))
    assert found == _cgroup.Limits(0.25, 512 << 20, "cgroup v1")
    assert _cgroup.default_threads(found) == 2


def test_garbage_and_missing_files_are_no_limit(tmp_path):
    found = _cgroup.read_limits(*_tree(tmp_path, {
        "cgroup.controllers": "cpu", "cpu.max": "lots 0", "memory.max": "-3"}, "0::/"))
    assert found == _cgroup.Limits(None, None, "cgroup v2")
    assert _cgroup.read_limits(str(tmp_path / "none"), str(tmp_path / "none")) == _cgroup.Limits(None, None, "")
