"""``pyfunc init DIR``: a new function folder, ready to run, test, build and deploy.

The files come from ``pyfunc/templates/`` (package data), so a scaffold always matches the
installed runtime. Existing files are never overwritten: a half-written function is worth
more than any template.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path

TEMPLATES = ("cloudevents", "http")
# file written → template file it comes from ("KIND" is replaced by the template name).
FILES = {
    "handler.py": "KIND/handler.py",
    "test_handler.py": "KIND/test_handler.py",
    "README.md": "KIND/README.md",
    "requirements.txt": "common/requirements.txt",
    "service.yaml": "common/service.yaml",
    ".gitignore": "common/gitignore",  # stored without its dot: package-data globs skip dotfiles
}
# Files that a directory often has already (a git checkout); kept rather than refused.
OPTIONAL = (".gitignore",)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "init", help="create a new function (handler, test, README, Knative manifest)",
        description="Create a new function in DIR: handler.py, test_handler.py (using pyfunc.testing), "
        "requirements.txt, README.md and service.yaml (a Knative Service). Never overwrites a file.",
    )
    parser.add_argument("directory", metavar="DIR", help="the new function's directory (created if missing)")
    parser.add_argument("--template", "-t", choices=TEMPLATES, default="cloudevents",
                        help="cloudevents: replies to events (default); http: a JSON API")
    parser.add_argument("--name", default=None,
                        help="the function's name, used for the Knative Service (default: from DIR)")
    parser.add_argument("--image", default=None, help="the image name used in README/service.yaml (default: NAME)")
    parser.set_defaults(func=init)


def service_name(text: str) -> str:
    """A Knative Service name (DNS-1035 label): lower-case letters, digits and '-', 63 at most."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    name = re.sub(r"-{2,}", "-", name)
    name = re.sub(r"^[^a-z]+", "", name)[:63].rstrip("-")
    return name or "function"


def init(args: argparse.Namespace) -> int:
    from importlib.resources import files

    from .._errors import PyfuncError

    target = Path(args.directory)
    if target.exists() and not target.is_dir():
        raise PyfuncError(f"{str(target)!r} exists and is not a directory")
    name = service_name(args.name or target.resolve().name)
    image = args.image or name
    conflicts = [f for f in FILES if (target / f).exists() and f not in OPTIONAL]
    if conflicts:
        raise PyfuncError(
            f"{target} already has {', '.join(conflicts)}; pyfunc init never overwrites files "
            "(choose a new directory or move them away)"
        )
    templates = files("pyfunc") / "templates"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, source in FILES.items():
        destination = target / filename
        if destination.exists():
            continue
        parts = source.replace("KIND", args.template).split("/")
        resource = templates
        for part in parts:
            resource = resource / part
        text = resource.read_text(encoding="utf-8")
        text = text.replace("{{name}}", name).replace("{{image}}", image)
        # "x": create, never truncate, even if the file appeared since the check above.
        with open(destination, "x", encoding="utf-8") as out:
            out.write(text)
        written.append(filename)
    shown = os.path.relpath(target) if not os.path.isabs(args.directory) else str(target)
    print(f"Created the {args.template} function {name!r} in {shown}:")
    for filename in written:
        print(f"  {filename}")
    invoke = ("pyfunc invoke --http --data '{\"name\": \"Ada\"}'" if args.template == "http"
              else "pyfunc invoke --data '{\"message\": \"hello\"}'")
    print("\nNext:")
    if shown != ".":
        print(f"  cd {shlex.quote(shown)}")
    print("  pyfunc run --reload        # serve it on http://localhost:8080, restarting on save")
    print(f"  {invoke}   # from another terminal")
    print("  pytest                     # run test_handler.py")
    print(f"  pyfunc build . --image {shlex.quote(image)}")
    sys.stdout.flush()
    return 0
