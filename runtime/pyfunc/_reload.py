"""``pyfunc run --reload``: restart the server when the function's files change.

The server runs as a child process (``python -m pyfunc DIR --serve-load-errors``) and the
parent only watches files, so every restart is a fresh interpreter: no stale modules, no
half-reloaded globals, and the same startup path as production. A child that cannot load the
handler does not exit; it answers every request with a 500 naming the file, line and message
(:class:`ErrorApp`), so a syntax error in an edit is visible in the browser or in
``pyfunc invoke`` and the next save fixes it. This is the gap other function frameworks leave
open: their reloaders die on the first broken save.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from ._config import SETTINGS, Config, _boolean
from ._errors import HandlerLoadError, PyfuncError
from ._responses import problem

if TYPE_CHECKING:
    from ._types import Environ, StartResponse

logger = logging.getLogger("pyfunc")

# What a change to means "restart": code, and the files that say which dependencies to use.
WATCHED_SUFFIXES = (".py",)
WATCHED_NAMES = ("pyproject.toml", ".env")
# How long a stopping child may drain before it is killed: a developer waiting for a reload
# should not sit through the production grace period.
MAX_RESTART_WAIT = 10.0


class ErrorApp:
    """Answers every request with a 500 naming the load error (file, line, message)."""

    loaded = None
    draining = False

    def __init__(self, error: HandlerLoadError, config: Config) -> None:
        self.error = error
        self.config = config
        # The terminal is where the developer looks first; the 500 is for the client.
        logger.error("the function failed to load: %s", error)
        logger.error("serving this error as a 500 until the file is fixed")

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        response = problem(
            500, "handler-load-error", str(self.error),
            file=self.error.file, line=self.error.line, message=self.error.message,
        )
        start_response(response.status_line, response.headers)
        return [response.body]  # type: ignore[list-item]


def is_watched(path: str) -> bool:
    """True for files whose change should restart the server (``*.py``, requirements, pyproject)."""
    name = os.path.basename(path)
    if name.endswith(WATCHED_SUFFIXES) or name in WATCHED_NAMES:
        return True
    return name.startswith("requirements") and name.endswith(".txt")


def child_command(args: argparse.Namespace) -> list[str]:
    """``python -m pyfunc DIR`` with every flag the user gave, plus ``--serve-load-errors``.

    Flags are forwarded as flags (not turned into environment variables) so that the child
    resolves precedence exactly as a plain ``pyfunc run`` would.
    """
    command = [sys.executable, "-m", "pyfunc", str(args.directory)]
    for setting in SETTINGS:
        if setting.name == "serve_load_errors":
            continue
        value = getattr(args, setting.name, None)
        if value is None:
            continue
        if setting.parse is _boolean:
            command.append(setting.flag if value else "--no-" + setting.flag[2:])
        else:
            command += [setting.flag, str(value)]
    command.append("--serve-load-errors")
    return command


class Reloader:
    """Runs the server child, restarts it on changes, and forwards SIGTERM/SIGINT to it."""

    def __init__(self, args: argparse.Namespace, config: Config) -> None:
        self.args = args
        self.config = config
        self.directory = Path(config.directory).resolve()
        self.command = child_command(args)
        self.child: Optional[subprocess.Popen[bytes]] = None
        self.stopping = threading.Event()
        self.exit_code = 0

    # ------------------------------------------------------------------ child process

    def start_child(self) -> None:
        self.child = subprocess.Popen(self.command)

    def stop_child(self, sig: int = signal.SIGTERM) -> int:
        child = self.child
        if child is None:
            return 0
        if child.poll() is None:
            try:
                child.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                child.wait(min(self.config.shutdown_timeout or MAX_RESTART_WAIT, MAX_RESTART_WAIT) + 2)
            except subprocess.TimeoutExpired:
                say("the server did not stop in time; killing it")
                child.kill()
                child.wait()
        return int(child.returncode or 0)

    # ------------------------------------------------------------------ signals

    def on_signal(self, signum: int, _frame: Any) -> None:
        """Stop watching, and pass the signal on: the child drains as it would in production."""
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        from watchfiles import DefaultFilter, watch

        class Filter(DefaultFilter):
            def __call__(self, change: Any, path: str) -> bool:
                return super().__call__(change, path) and is_watched(path)

        previous = {s: signal.signal(s, self.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            say(f"watching {self.directory} for changes (*.py, requirements*.txt, pyproject.toml)")
            self.start_child()
            changed_once = False
            for changes in watch(self.directory, watch_filter=Filter(), stop_event=self.stopping,
                                 rust_timeout=500, yield_on_timeout=True, raise_interrupt=False):
                if self.stopping.is_set():
                    break
                if not changes:
                    if self._child_exited(changed_once):
                        return self.exit_code
                    continue
                changed_once = True
                self._restart(sorted({path for _, path in changes}))
            if self.child is not None:
                # The signal was forwarded already; wait for the drain to finish.
                self.exit_code = self.stop_child()
            return self.exit_code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.child is not None and self.child.poll() is None:
                self.child.kill()
                self.child.wait()

    def _child_exited(self, changed_once: bool) -> bool:
        """Notice a server that ended on its own; True when the reloader should give up too.

        The very first server failing before any edit (port taken, bad setting) ends the
        reloader with its exit code: waiting for a file change would not fix that. Later, a
        server that died waits for the next save.
        """
        child = self.child
        if child is None or child.poll() is None:
            return False
        code = child.returncode
        self.child = None
        if not changed_once:
            self.exit_code = code or 1
            return True
        say(f"the server exited with code {code}; waiting for a change to restart it")
        return False

    def _restart(self, paths: list[str]) -> None:
        names = ", ".join(_relative(p, self.directory) for p in paths)
        say(f"change detected in {names}: restarting")
        if any(os.path.basename(p).startswith("requirements") for p in paths):
            say("requirements changed: install them into this environment "
                "(pip install -r requirements.txt) if the new ones are missing")
        self.stop_child()
        if not self.stopping.is_set():
            self.start_child()


def _relative(path: str, directory: Path) -> str:
    try:
        return str(Path(path).relative_to(directory))
    except ValueError:
        return path


def say(message: str) -> None:
    print(f"pyfunc: {message}", file=sys.stderr, flush=True)


def run_with_reload(args: argparse.Namespace) -> int:
    """Entry point of ``pyfunc run --reload``."""
    from ._extras import require

    require("watchfiles", "--reload")
    config = Config.load(args=args)  # bad flags are reported here, once, not by every child
    if not os.path.isdir(config.directory):
        raise PyfuncError(f"function directory {config.directory!r} does not exist")
    return Reloader(args, config).run()
