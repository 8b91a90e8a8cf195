"""Command line: ``pyfunc <command>`` and ``python -m pyfunc [DIR]``.

Each subcommand lives in ``pyfunc._commands.<name>`` and exposes ``register(subparsers)``; this
module only assembles them and turns expected failures into one clear line and exit code 1.
"""

from __future__ import annotations

import os
import sys

from . import __version__
from ._config import ConfigError
from ._errors import PyfuncError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    import argparse
    from typing import Optional, Sequence

COMMANDS = ("run", "check", "invoke", "init", "build")


def build_parser() -> argparse.ArgumentParser:
    import argparse
    import importlib

    parser = argparse.ArgumentParser(
        prog="pyfunc",
        description="Run a plain Python function as a CloudEvents/HTTP function (Knative-ready).",
    )
    parser.add_argument("--version", action="version", version=f"pyfunc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"pyfunc._commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pyfunc._commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``pyfunc`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except (PyfuncError, ConfigError) as exc:
        print(f"pyfunc: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """stdout's reader went away (``pyfunc invoke … | head -5``): end quietly, like a tool killed by
    SIGPIPE, instead of a traceback. stdout is pointed at /dev/null first, or flushing what is left
    of it at exit would raise again (and print "Exception ignored ...")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE: what a shell reports for a writer its reader left


def module_parser() -> argparse.ArgumentParser:
    import argparse

    from ._config import add_arguments

    parser = argparse.ArgumentParser(
        prog="python -m pyfunc",
        description="Serve the function in DIR (module 'handler', function 'handler' unless "
        "PYTHON_HANDLER or --handler says otherwise). Every flag has an environment variable; "
        "the flag wins. Subcommands: " + ", ".join(COMMANDS) + " (see `pyfunc --help`).",
    )
    parser.add_argument("directory", nargs="?", default=".", metavar="DIR",
                        help="the function's directory (default: the current directory)")
    parser.add_argument("--version", action="version", version=f"pyfunc {__version__}")
    add_arguments(parser)
    return parser


def main_module(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pyfunc [DIR] [flags]``; ``python -m pyfunc COMMAND …`` runs a subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS and not os.path.isdir(argv[0]):
        return main(argv)
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        args: Optional[argparse.Namespace] = module_parser().parse_args(argv)
        overrides = {}
    else:
        # `python -m pyfunc [DIR]`, no flags (how every function image starts): what the parser
        # would give, without building it (argparse, with its gettext, shutil and help formatting,
        # is several ms of a cold start).
        args, overrides = None, ({"directory": argv[0]} if argv and argv[0] else {})
    from ._commands.run import serve_from_args

    try:
        return serve_from_args(args, **overrides)
    except (PyfuncError, ConfigError) as exc:
        print(f"pyfunc: error: {exc}", file=sys.stderr)
        return 1
