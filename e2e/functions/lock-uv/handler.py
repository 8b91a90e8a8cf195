"""Answers with the humanize version it runs: the lock pins an older one than pyproject allows."""

from importlib.metadata import version

import humanize


def handler():
    return {"humanize": version("humanize"), "human": humanize.naturalsize(3000)}
