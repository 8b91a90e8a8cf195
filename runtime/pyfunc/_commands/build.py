"""``pyfunc build DIR``: a container image of the function, with ``pack`` and pyfunc's builder.

It is a thin wrapper: ``pack build IMAGE --builder pyfunc/builder --path DIR`` with the flags
that make the build work offline (``--pull-policy never``, ``--trust-builder``: an untrusted
builder makes pack fetch a lifecycle image from a registry). What it adds is checking the
prerequisites first, so a missing ``pack``, a stopped Docker or a missing builder is one
clear line instead of a Go stack of errors, and a next step when the image is built.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

DEFAULT_BUILDER = "pyfunc/builder"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "build", help="build a container image of the function (pack + pyfunc/builder)",
        description="Build a container image of the function in DIR with Cloud Native Buildpacks: "
        f"`pack build IMAGE --builder {DEFAULT_BUILDER} --path DIR`. Needs pack and a running Docker "
        "daemon with the builder image (scripts/install-tools.sh and scripts/build-images.sh make both).",
    )
    parser.add_argument("directory", nargs="?", default=".", metavar="DIR",
                        help="the function's directory (default: the current directory)")
    parser.add_argument("-i", "--image", default=None,
                        help="image name (default: the directory's name, e.g. my-function)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--builder", default=None,
                       help=f"builder image [env PYFUNC_BUILDER, default {DEFAULT_BUILDER}]")
    which.add_argument("--python", default=None, metavar="X.Y",
                       help=f"the Python of the image: the builder {DEFAULT_BUILDER}:X.Y (scripts/build-images.sh "
                            "makes 3.11, the default, 3.13 and 3.14)")
    parser.add_argument("--handler", default=None, metavar="TARGET",
                        help="module.func to serve, baked into the image (BP_PYTHON_HANDLER)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="build-time environment for the buildpack, e.g. BP_PIP_ARGS=... (repeatable)")
    parser.add_argument("--pull-policy", default="never", choices=("never", "if-not-present", "always"),
                        help="pack's image pull policy (default never: the builder is local)")
    parser.add_argument("--pack", default=None, metavar="PATH", help="the pack executable (default: pack on PATH, else "
                        "${PYFUNC_CACHE:-~/.cache/pyfunc}/tools/bin/pack, where scripts/install-tools.sh puts it)")
    parser.set_defaults(func=build)


def tools_bin() -> str:
    """Where scripts/install-tools.sh (scripts/demo.sh runs it) puts pack: ``$PYFUNC_CACHE/tools/bin``,
    ``~/.cache/pyfunc/tools/bin`` by default. Not on the user's PATH: `pyfunc build` looks there itself."""
    cache = os.environ.get("PYFUNC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pyfunc")
    return os.path.join(cache, "tools", "bin")


def find_pack(explicit: Optional[str]) -> Optional[str]:
    """``pack`` on PATH, else where scripts/install-tools.sh puts it (see :func:`tools_bin`)."""
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("pack")
    if found:
        return found
    candidate = os.path.join(tools_bin(), "pack")
    return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None


def build(args: argparse.Namespace) -> int:
    from .._discovery import parse_target
    from .._errors import PyfuncError
    from .init import service_name

    directory = Path(args.directory)
    if not directory.is_dir():
        raise PyfuncError(f"function directory {args.directory!r} does not exist")
    handler = args.handler or os.environ.get("PYTHON_HANDLER") or "handler.handler"
    module, _ = parse_target(handler)
    relative = Path(*module.split("."))
    if not (directory / relative.with_suffix(".py")).is_file() and not (directory / relative / "__init__.py").is_file():
        raise PyfuncError(f"no {relative.with_suffix('.py')} in {directory}: not a function directory "
                          "(create one with `pyfunc init`)")
    image = args.image or service_name(directory.resolve().name)
    build_env = list(args.env)
    for item in build_env:
        if "=" not in item or item.startswith("="):
            raise PyfuncError(f"--env {item!r} should look like NAME=VALUE")
    if args.handler:
        build_env.append(f"BP_PYTHON_HANDLER={args.handler}")
    if args.python is not None and not re.fullmatch(r"3\.\d+", args.python):
        raise PyfuncError(f"--python {args.python!r} should look like 3.13 (a Python minor version)")
    if args.python is not None:
        builder = f"{DEFAULT_BUILDER}:{args.python}"
    else:
        builder = args.builder or os.environ.get("PYFUNC_BUILDER") or DEFAULT_BUILDER
    pack = find_pack(args.pack)
    if pack is None:
        raise PyfuncError(
            ("pack not found at " + repr(args.pack)) if args.pack else
            f"pack (Cloud Native Buildpacks CLI) not found on PATH nor in {tools_bin()}: run "
            "scripts/install-tools.sh from the pyfunc repository (scripts/demo.sh runs it; it also "
            "installs Docker and, with scripts/build-images.sh, the pyfunc/builder image), or install "
            "pack yourself (https://buildpacks.io/docs/for-platform-operators/how-to/integrate-ci/pack/) "
            "and pass --pack PATH"
        )
    env = dict(os.environ)
    # Debian 12's Docker engine speaks API 1.41; a newer client must talk down to it.
    env.setdefault("DOCKER_API_VERSION", "1.41")
    # pack names its build-cache volumes from this key; without it (inside a container) it picks a
    # new one per build and the cached layers (the function's dependencies) are never reused.
    env.setdefault("PACK_VOLUME_KEY", "pyfunc-local")
    check_docker(builder, env)

    command = [pack, "build", image, "--builder", builder, "--path", str(directory),
               "--pull-policy", args.pull_policy, "--trust-builder"]
    for item in build_env:
        command += ["--env", item]
    step(f"Building image {image} from {directory} with {builder}")
    note("$ " + " ".join(shlex.quote(part) for part in command))
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                   text=True, errors="replace", bufsize=1)
    except OSError as exc:
        raise PyfuncError(f"cannot run {pack}: {exc.strerror or exc}") from None
    assert process.stdout is not None
    try:
        for line in process.stdout:
            note(line.rstrip("\n"))
        code = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
        raise
    if code != 0:
        raise PyfuncError(f"pack build failed (exit {code}); the build log is above")
    step(f"Built {image}")
    note(f"run it:    docker run --rm -p 8080:8080 {image}")
    note("invoke it: pyfunc invoke http://localhost:8080")
    return 0


def check_docker(builder: str, env: dict[str, str]) -> None:
    """A reachable Docker daemon that has the builder image, or one clear line saying which is missing."""
    from .._errors import PyfuncError

    docker = shutil.which("docker", path=env.get("PATH"))
    if docker is None:
        if not env.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
            raise PyfuncError("docker not found (no docker command, no DOCKER_HOST, no /var/run/docker.sock): "
                              "pack needs a running Docker daemon")
        return  # pack talks to the daemon itself; nothing more to check without the CLI
    try:
        result = subprocess.run([docker, "image", "inspect", "--format", "{{.Id}}", builder],
                                capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PyfuncError(f"docker did not answer: {exc}") from None
    if result.returncode == 0:
        return
    message = (result.stderr or result.stdout).strip().splitlines()
    text = message[-1] if message else ""
    if "No such image" in text or "No such object" in text:
        raise PyfuncError(f"the builder image {builder!r} is not in Docker: make it with scripts/build-images.sh "
                          "(pyfunc repository) or name another with --builder")
    raise PyfuncError(f"docker is not usable: {text or 'docker image inspect failed'} (is the daemon running?)")


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def note(message: str) -> None:
    print(f"    {message}", file=sys.stdout, flush=True)
