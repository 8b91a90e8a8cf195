"""Where and when a figure was measured: the commit, whether the tree was dirty, the UTC date.

Every results file (bench/, tests/reliability/, e2e/) carries these three fields at its top level,
so that README and docs, which are generated from those files (scripts/figures.py), can say which
code a figure belongs to, and so that a figure older than the runtime is flagged as stale.
This module is tooling, not part of the shipped package: it only needs git and the stdlib.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]

# Results directories are excluded from the dirty check: a test run that writes one results file
# must not make the next one it writes look measured on a modified tree.
_NOT_CODE = ":(exclude,glob)**/results/**"


def _git(*args: str) -> Optional[str]:
    try:
        proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string, to the second (`2026-11-29T14:05:00Z`)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp() -> dict[str, Any]:
    """``{"commit", "dirty", "date"}`` for a results file written now.

    A dirty tree is recorded (``dirty: true``) rather than refused, so a local experiment still
    leaves its figures; ``scripts/figures.py --stale`` then flags them until a clean re-run.
    Outside a git checkout the commit is ``None`` and the tree counts as dirty.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--", ".", _NOT_CODE)
    return {"commit": commit, "dirty": commit is None or status is None or bool(status), "date": utc_now()}


def destination(path: Path) -> Path:
    """Where a test run writes the results file that belongs at ``path`` (inside the repo).

    The figures in README/docs are generated from the committed results files, so an ordinary test
    run (CI) must not rewrite them: its figures go to the same relative path under
    ``${PYFUNC_CACHE:-~/.cache/pyfunc}/results`` and are printed. A deliberate measurement run sets
    ``PYFUNC_RECORD=1`` and writes the repo's file, to be committed with regenerated docs.
    """
    if os.environ.get("PYFUNC_RECORD", "") not in ("", "0"):
        return path
    cache = Path(os.environ.get("PYFUNC_CACHE") or Path.home() / ".cache" / "pyfunc")
    return cache / "results" / path.resolve().relative_to(REPO)
