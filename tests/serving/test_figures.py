"""The figures in README.md and docs/ are the ones the results files hold (scripts/figures.py).

Why a test: a hand-edited number, or a results file re-measured without regenerating the docs,
would otherwise quote figures no run produced. Fix a failure with ``python3 scripts/figures.py``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


figures = _load("figures")
provenance = _load("provenance")


@pytest.mark.parametrize("doc", figures.DOCS)
def test_generated_blocks_agree_with_the_results_files(doc: str) -> None:
    text = (ROOT / doc).read_text()
    assert figures.render(text) == text, f"{doc}: figures out of date; run python3 scripts/figures.py"


def test_every_block_is_used_and_every_renderer_has_a_block() -> None:
    assert set(figures.blocks()) == set(figures.RENDERERS)


@pytest.mark.parametrize("path", figures.results_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_results_file_says_where_and_when_it_was_measured(path: Path) -> None:
    data = json.loads(path.read_text())
    assert all(key in data for key in figures.PROVENANCE), f"{path.name} lacks commit/dirty/date"
    if data["commit"] is None:
        # Only results written before provenance existed, and they must say so.
        assert data.get("provenance_note"), f"{path.name}: commit null without a provenance_note"
        return
    assert re.fullmatch(r"[0-9a-f]{40}", data["commit"]), data["commit"]
    assert isinstance(data["dirty"], bool)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["date"]), data["date"]


def test_a_block_shows_the_commit_and_date_of_its_results() -> None:
    data = {"commit": "7afbd5998f7d26cbabf1629ec54d9e0146b465a3", "dirty": True, "date": "2026-11-25T01:11:10Z"}
    assert figures.measured(data) == "`7afbd59` (dirty tree), 2026-11-25"
    assert figures.measured({"commit": None, "dirty": None, "date": None}) == (
        "no commit recorded, no date recorded")


def test_an_unknown_block_is_an_error() -> None:
    with pytest.raises(SystemExit, match="unknown figures block"):
        figures.render("<!-- figures:no-such-block -->\n<!-- /figures -->")


def test_stale_results_are_named() -> None:
    head = figures.git("rev-parse", "HEAD").stdout.strip()
    runtime = figures.git("log", "-1", "--format=%H", "--", "runtime/").stdout.strip()
    assert figures.stale_reasons({"commit": None}, runtime) == ["no commit recorded"]
    assert figures.stale_reasons({"commit": head, "dirty": False}, runtime) == []
    assert figures.stale_reasons({"commit": head, "dirty": True}, runtime) == ["measured on a dirty tree"]
    assert "not in this branch's history" in figures.stale_reasons({"commit": "0" * 40}, runtime)[0]
    parent = figures.git("rev-parse", f"{runtime}^").stdout.strip()
    assert "before the last runtime/ change" in figures.stale_reasons({"commit": parent}, runtime)[0]


def test_stamp_records_the_full_commit_and_a_utc_date() -> None:
    stamp = provenance.stamp()
    assert re.fullmatch(r"[0-9a-f]{40}", stamp["commit"])
    assert isinstance(stamp["dirty"], bool)
    assert stamp["date"].endswith("Z")


def test_stale_results_warn_and_unreachable_or_dirty_ones_fail() -> None:
    """CI (scripts/test.sh, ``figures.py --stale``) fails on figures no commit can reproduce."""
    head = figures.git("rev-parse", "HEAD").stdout.strip()
    runtime = figures.git("log", "-1", "--format=%H", "--", "runtime/").stdout.strip()
    assert figures.classify({"commit": head, "dirty": False}, runtime) == ([], [])
    assert figures.classify({"commit": head, "dirty": True}, runtime) == (["measured on a dirty tree"], [])
    errors, warnings = figures.classify({"commit": "0" * 40, "dirty": False}, runtime)
    assert "not in this branch's history" in errors[0] and warnings == []
    parent = figures.git("rev-parse", f"{runtime}^").stdout.strip()
    errors, warnings = figures.classify({"commit": parent, "dirty": False}, runtime)
    assert errors == [] and "before the last runtime/ change" in warnings[0]
    assert figures.classify({"commit": None}, runtime) == ([], ["no commit recorded"])


def test_the_results_files_as_committed_pass_the_stale_check() -> None:
    errors, _ = figures.stale()
    assert errors == [], errors


# A number with a unit a measurement would have, in prose (not in a generated block or a code block).
MEASURE = re.compile(r"(?<![\w.])~?\d[\d,.]*(?:\s?[–-]\s?\d[\d,.]*)?\s?(?:ms|µs|MB|MiB|KB|KiB|GB|req/s|%|×)(?!\w)")
FENCE = re.compile(r"```.*?```", re.S)
PROSE = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")), "bench/README.md"]
# The numbers with such a unit that are no measurement: settings and limits, test and bench
# parameters, targets. Each is listed with the phrase it appears in; anything else is a figure,
# and belongs in a generated block (scripts/figures.py) or nowhere.
NOT_MEASURED = {
    "README.md": ["`héllo wörld`, `100%`", "At 1 MB the payload", "body in 8 KB reads", "up to 64 KB that fits",
                  "At 1 MB both servers", "receiving 1 MB", "in 8 KB reads and", "batch, 1 % malformed",
                  "the cgroup memory limit above 48 MiB"],
    "docs/asgi.md": ["hands the body over in 64 KiB"],
    "docs/delivery.md": ["time out after 250 ms"],
    "docs/reliability.md": ["(64 KiB) is a 431", "100 MB upload is cut off after ~10 MB", "the 100 MB upload",
                            "200 KB values", "A 50 MB reply", "(20 % health GETs, 40 % binary, 20 % structured, "
                            "19 % batch of 3, 1 %", "below 16 KiB per 10,000", "≥ 160 KB per 10,000"],
    "docs/serving.md": ["two 10 ms ticks", "under 5% of those ticks",
                        # pyfunc._memory.BASELINE; waitress's inbuf_overflow; an example start-up line
                        "the cgroup memory limit above 48 MiB", "limit above 48 MiB; without a limit",
                        "up to 512 KiB in", "memory limit 128 MiB (cgroup v1)"],
    "bench/README.md": ["binary-10KB-c8", "binary-1MB-c8", "10 KiB and 1 MiB bodies", "(0.5 ms apart)",
                        "`--max-foreign`, 10 %", "cold start ≤ 100 ms; RSS idle ≤ 25 MB",
                        "2 workers ≥ 1.6× one worker"],
}


@pytest.mark.parametrize("doc", PROSE)
def test_no_figure_outside_a_generated_block(doc: str) -> None:
    """A hand-written measurement drifts from the results; it fails here until it is generated."""
    text = figures.BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), (ROOT / doc).read_text())
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    allowed = NOT_MEASURED.get(doc, [])
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in MEASURE.finditer(line):
            if not any(match.group(0) in phrase and phrase in " ".join(line.split()) for phrase in allowed):
                found.append(f"{doc}:{number}: {match.group(0)!r} in {line.strip()[:120]!r}")
    assert found == [], "figures outside a generated block (generate them in scripts/figures.py, or " \
                        "list a setting/parameter in NOT_MEASURED):\n" + "\n".join(found)
