"""Answers with the Python it runs on: one function, built on every stack."""

import platform


def handler():
    return {"python": platform.python_version()}
