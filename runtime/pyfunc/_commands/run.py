"""``pyfunc run [DIR]``: serve the function (``--reload`` restarts it on file changes)."""

from __future__ import annotations

from .._config import Config, add_arguments

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    import argparse
    from typing import Any, Optional


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="serve the function in DIR",
                                   description="Serve the function in DIR on PORT.")
    parser.add_argument("directory", nargs="?", default=".", metavar="DIR")
    parser.add_argument("--reload", action="store_true",
                        help="restart when files in DIR change; a broken edit is served as a 500")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "reload", False):
        from .._reload import run_with_reload

        return run_with_reload(args)
    return serve_from_args(args)


def serve_from_args(args: Optional[argparse.Namespace], **overrides: Any) -> int:
    from .._server import serve

    return serve(Config.load(args=args, **overrides))
