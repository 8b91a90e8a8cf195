"""Every host tool (scripts/lib.sh's `py_tool`) installs from its hashed lock into a brand-new venv made
with the machine's own python3, as on a fresh machine: a warm ~/.cache/pyfunc once hid that pip 23.2 (the
one Python 3.11 bundles) refuses pip-audit's lock, and the audit then ran on nothing. Here each tool gets an
empty cache of its own, so nothing installed before can stand in for the install. Needs PyPI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSIONS = dict(re.findall(r"^([A-Z_]+)=(\S+)", (REPO / "scripts" / "versions.env").read_text(), re.M))
# Each tool py_tool installs: (its command, the versions.env entry that pins it).
TOOLS = {"uv": "UV_VERSION", "pip-audit": "PIP_AUDIT_VERSION"}


def machine_env(cache: Path) -> dict[str, str]:
    """The environment of a script run by hand: this test's venv off PATH, so `python3` is the machine's."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
    return {**env, "PATH": path, "PYFUNC_CACHE": str(cache)}


def py_tool(name: str, cache: Path) -> subprocess.CompletedProcess[str]:
    script = f'source scripts/lib.sh && py_tool {name} "${TOOLS[name]}"'
    return subprocess.run(["bash", "-c", script], cwd=REPO, env=machine_env(cache),
                          capture_output=True, text=True, timeout=600)


def test_the_machine_python_is_the_one_a_fresh_machine_has():
    """The check below is only worth something if python3 there is not this test's venv."""
    env = machine_env(Path("/nonexistent"))
    python3 = shutil.which("python3", path=env["PATH"])
    assert python3 and Path(python3).resolve().parent != Path(sys.executable).resolve().parent


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(TOOLS))
def test_each_tool_lock_installs_into_a_brand_new_venv(tmp_path, name):
    proc = py_tool(name, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bin_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert bin_dir.is_relative_to(tmp_path), bin_dir
    version = subprocess.run([str(bin_dir / name), "--version"], capture_output=True, text=True, timeout=60)
    assert VERSIONS[TOOLS[name]] in version.stdout, version.stdout + version.stderr
    # The venv's pip is a locked one, not the machine's: pip.lock's, or the tool lock's own where it pins pip
    # (pip-audit depends on pip).
    own = re.search(r"^pip==(\S+)", (REPO / "scripts" / "locks" / f"{name}.lock").read_text(), re.M)
    pip = subprocess.run([str(bin_dir / "python"), "-m", "pip", "--version"], capture_output=True, text=True)
    assert pip.stdout.startswith(f"pip {own[1] if own else VERSIONS['PIP_VERSION']} "), pip.stdout
    # A second call finds the finished install and installs nothing.
    again = py_tool(name, tmp_path)
    assert again.returncode == 0 and "Installing" not in again.stderr, again.stderr


def test_a_broken_install_stops_the_caller_with_the_reason(tmp_path):
    """A lock pip cannot install must fail the script that asked for the tool, not hand it an empty venv."""
    locks = tmp_path / "repo" / "scripts" / "locks"
    shutil.copytree(REPO / "scripts", tmp_path / "repo" / "scripts")
    (locks / "uv.lock").write_text("uv==0.13.8 --hash=sha256:" + "0" * 64 + "\n")
    script = 'source scripts/lib.sh && bin="$(py_tool uv "$UV_VERSION")" && echo "got $bin"'
    proc = subprocess.run(["bash", "-c", script],
                          cwd=tmp_path / "repo", env=machine_env(tmp_path / "cache"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "got " not in proc.stdout, proc.stdout + proc.stderr
    assert "installing uv from scripts/locks/uv.lock failed" in proc.stderr, proc.stderr
    assert not (tmp_path / "cache" / "tools" / "py" / "uv-0.13.8").exists()
