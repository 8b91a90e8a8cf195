"""A private library that is not on any package index."""


def greet(name: str) -> str:
    return f"Hello, {name}!"
