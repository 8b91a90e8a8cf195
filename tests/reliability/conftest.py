"""Reliability suite plumbing: the short/long switch.

CI runs ``scripts/test.sh`` (plain ``pytest``), so a ``slow`` test would run there too unless
it is skipped here: long forms run only with ``PYFUNC_RELIABILITY_LONG=1`` (see README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import LONG


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this folder's ``slow`` tests unless the long form was asked for."""
    if LONG:
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="long form: set PYFUNC_RELIABILITY_LONG=1 (tests/reliability/README.md)")
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)
