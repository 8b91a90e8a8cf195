"""Lets ``pytest examples/`` run every example's ``test_handler.py`` in one session.

Each example is a standalone function folder (no ``__init__.py``: that is how users lay them
out), so every test module is imported under the same top-level name, ``test_handler``, and
pytest's default import mode refuses the second one. Forgetting the previous one just before
pytest imports the next keeps the examples exactly as a user would write them, whatever
import mode the run uses.
"""

import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent


def pytest_collectstart(collector: pytest.Collector) -> None:
    if isinstance(collector, pytest.Module) and collector.path.resolve().parent.parent == EXAMPLES:
        sys.modules.pop(collector.path.stem, None)
