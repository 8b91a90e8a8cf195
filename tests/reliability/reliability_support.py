"""Helpers shared by the reliability tests and tools (a module of its own: ``conftest`` is ambiguous to import).

Why a results folder: the figures measured here (fuzz examples tried, soak RSS slope, overload
shed rate) are cited by README.md and docs/reliability.md, which scripts/figures.py generates
from results/*.json; each file carries the commit, dirty flag and date it was measured at.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import rawhttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from provenance import destination, stamp  # noqa: E402 - tooling shared with bench/ and e2e/, not shipped

RESULTS = Path(__file__).parent / "results"
LONG = os.environ.get("PYFUNC_RELIABILITY_LONG", "") not in ("", "0")

# An echo CloudEvent handler: replies with the same data, type suffixed; the base of most tests.
ECHO = """
def handler(event):
    if event is None:
        return None
    return {"type": event["type"] + ".reply", "source": "/echo"}, event.data
"""


def record(name: str, figures: dict[str, Any]) -> Path:
    """Write measured figures, stamped with commit/dirty/date, to results/NAME.json (short and long
    forms go to separate files); only with PYFUNC_RECORD=1, else to the cache (provenance.destination)."""
    path = destination(RESULTS / f"{name}{'-long' if LONG else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = {**stamp(), **json.loads(json.dumps(figures, sort_keys=True))}  # provenance first
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{name}: {json.dumps(figures, sort_keys=True)}")
    return path


def assert_serving(port: int, attempts: int = 1) -> None:
    """A good CloudEvent gets its 200 echo on a fresh connection, on the first try."""
    responses = rawhttp.exchange(port, rawhttp.good_event_request(), timeout=30)
    assert len(responses) == 1, responses
    response = responses[0]
    assert response.status == 200, (response.status, response.body)
    assert response.body == b'{"n": 1}' or response.json() == {"n": 1}


def assert_no_traceback(body: bytes) -> None:
    """A response body never carries a Python traceback or internal file paths."""
    assert b"Traceback" not in body, body[:500]
    assert b'File "' not in body, body[:500]
