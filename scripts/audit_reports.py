"""Judge pip-audit's JSON reports (scripts/audit.sh): exit 1 on a known vulnerability, else 0.

usage: audit_reports.py EXCEPTIONS_FILE REPORT_DIR

A package pip-audit skipped (no per-version data reachable from here) is looked up in PyPI's
project JSON, whose `vulnerabilities` are the latest release's: a verdict for a package locked at
its latest release, and a WARNING (never a failure) for one locked below it or unreachable. So a
release upstream never turns CI red; a vulnerability always does.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

PYPI_PROJECT = "https://pypi.org/pypi/{name}/json"


def read_reasons(path: Path) -> dict[str, str]:
    """`name==version  # why it stays below its latest release` lines, keyed by `name==version`."""
    reasons = {}
    for line in path.read_text().splitlines():
        key = line.split("#")[0].strip()
        if key:
            reasons[key] = line.split("#", 1)[-1].strip()
    return reasons


def pypi_project(name: str) -> dict[str, Any]:
    with urllib.request.urlopen(PYPI_PROJECT.format(name=name), timeout=30) as response:
        project: dict[str, Any] = json.load(response)
    return project


def judge(reports: list[Path], reasons: dict[str, str]) -> tuple[int, int, int]:
    """Print one line per vulnerable or unaudited package; return (audited, vulnerable, unaudited)."""
    audited = vulnerable = unaudited = 0
    for report in reports:
        for dep in json.loads(report.read_text())["dependencies"]:
            name, version = dep["name"], dep.get("version")
            if dep.get("vulns"):
                print(f"    VULNERABLE {name}=={version}: {[v['id'] for v in dep['vulns']]}")
                vulnerable += 1
                continue
            if "skip_reason" not in dep:
                audited += 1
                continue
            version = version or dep["skip_reason"].rsplit("(", 1)[-1].rstrip(")")
            key = f"{name}=={version}"
            try:
                project = pypi_project(name)
            except (OSError, ValueError) as exc:
                print(f"    WARNING not audited: {key}: PyPI's project JSON unreachable ({exc})")
                unaudited += 1
                continue
            latest = project["info"]["version"]
            if version != latest:
                why = f"kept on purpose: {reasons[key]}" if key in reasons else "UPGRADE=1 scripts/lock.sh takes it"
                print(f"    WARNING not audited: {key}: PyPI has vulnerability data only for the latest "
                      f"release ({latest}); {why}")
                unaudited += 1
            elif project.get("vulnerabilities"):
                print(f"    VULNERABLE {key}: {[v['id'] for v in project['vulnerabilities']]}")
                vulnerable += 1
            else:
                audited += 1
    return audited, vulnerable, unaudited


def main(argv: list[str]) -> int:
    reasons = read_reasons(Path(argv[1]))
    audited, vulnerable, unaudited = judge(sorted(Path(argv[2]).glob("*.json")), reasons)
    print(f"    {audited} packages audited, {vulnerable} vulnerable, {unaudited} not audited (warnings above)")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
