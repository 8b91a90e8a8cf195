"""The settings table in the docs is the one generated from ``config.SETTINGS``."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyfunc._config import SETTINGS, settings_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_settings_table_lists_every_setting_once():
    table = settings_markdown()
    for setting in SETTINGS:
        assert table.count(f"| `{setting.env}` |") == 1
    assert len(table.splitlines()) == len(SETTINGS) + 2


def test_serving_doc_has_the_generated_settings_table():
    assert settings_markdown() in (ROOT / "docs" / "serving.md").read_text()


def test_readme_settings_table_matches_the_code():
    readme = (ROOT / "README.md").read_text()
    if "| Environment variable |" not in readme:
        pytest.skip("the README has no settings table yet (paste pyfunc._config.settings_markdown())")
    assert settings_markdown() in readme
