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
