"""``pyfunc check [DIR]``: load the handler exactly as the server would, and report."""

from __future__ import annotations

import argparse
import json
import sys

from .._config import Config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check", help="load the handler as the server would and report what it binds",
        description="Load DIR's handler exactly as the server would; exit 1 on any error.",
    )
    parser.add_argument("directory", nargs="?", default=".", metavar="DIR")
    parser.add_argument("--handler", default=None, metavar="TARGET",
                        help="module.func to check [env PYTHON_HANDLER, default handler.handler]")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    from .._server import build_app

    config = Config.load(args=args)
    app = build_app(config)
    binder = getattr(app, "binder", None)  # none for an ASGI/WSGI app or a func-python function (issue 22)
    parameters: dict[str, str] = binder.bound if binder is not None else {}
    hooks: list[str] = sorted(app.loaded.hooks)
    kind = getattr(app, "kind", None) or ("cloudevent" if binder is not None and binder.needs_event else "http")
    report = {
        "function": app.loaded.qualname,
        "file": app.loaded.file,
        "kind": kind,
        "async": app.is_async,
        "parameters": parameters,
        "hooks": hooks,
    }
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print(f"ok: {report['function']} ({report['kind']} function{', async' if report['async'] else ''})")
    print(f"  file: {report['file']}")
    for name, what in parameters.items():
        print(f"  parameter {name}: {what}")
    if not parameters and binder is not None:
        print("  no parameters")
    print(f"  hooks: {', '.join(hooks) or 'none'}")
    return 0
