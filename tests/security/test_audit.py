"""pip-audit over the locked packages of the images (scripts/audit.sh): fails on a known
vulnerability and on a package it could not audit (never a silent pass). Needs PyPI; pip-audit
itself is installed once into ${PYFUNC_CACHE:-~/.cache/pyfunc}/tools/py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_locked_packages_have_no_known_vulnerabilities():
    proc = subprocess.run([str(REPO / "scripts" / "audit.sh")], capture_output=True, text=True, timeout=600)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert "No known vulnerabilities in the locked packages" in report
    assert " 0 problems" in report
