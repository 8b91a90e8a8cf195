"""``python -m pyfunc DIR``, how every image starts: what it loads before its first answer.

A cold start is mostly imports, so serving a plain function must not load what only other paths
need: argparse (only with flags), typing (only for an annotated parameter), pathlib (only for
load errors), base64 (binary event data), Flask, werkzeug and the CloudEvents SDK (only when a
handler reaches for them), asyncio (async handlers). Each function below reports, from inside
the real server process, which of them are loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

from pyfunc._config import Config

NOT_AT_START = ("argparse", "shutil", "typing", "pathlib", "base64", "flask", "werkzeug", "cloudevents", "asyncio")

LOADED = f"""
import sys

def loaded():
    return sorted(name for name in {NOT_AT_START!r} if name in sys.modules)
"""

KINDS = {
    # HTTP, the request never read (the bench's hello)
    "hello": LOADED + "\ndef handler(req):\n    return {'loaded': loaded()}\n",
    # HTTP, the query string read (the bench's hello-req)
    "hello-req": LOADED + "\ndef handler(req):\n    return {'name': req.args.get('name'), 'loaded': loaded()}\n",
    # CloudEvent, data and attributes (the bench's CE echo)
    "ce": LOADED + "\ndef handler(data, attributes):\n"
                   "    return {'type': 'reply', 'source': '/t'}, {'type': attributes['type'], 'loaded': loaded()}\n",
}

EVENT_HEADERS = {"ce-specversion": "1.0", "ce-id": "cold-1", "ce-source": "/tests", "ce-type": "t.cold",
                 "Content-Type": "application/json"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_serving_a_plain_function_loads_none_of_the_rest(serve, kind: str) -> None:
    server = serve(KINDS[kind])
    if kind == "ce":
        reply = requests.post(server.url + "/", data=b'{"n": 1}', headers=EVENT_HEADERS, timeout=5)
    else:
        reply = requests.get(server.url + "/?name=Ada", timeout=5)
    assert reply.status_code == 200, reply.text
    assert reply.json()["loaded"] == []
    if kind == "hello-req":
        assert reply.json()["name"] == "Ada"
    if kind == "ce":
        assert reply.json()["type"] == "t.cold"


def test_an_annotated_parameter_is_still_converted(serve) -> None:
    """typing comes back when a handler's annotations need it: ``data: dict[str, int]`` converts."""
    server = serve("def handler(data: dict[str, int]):\n    return {'type': 'reply', 'source': '/t'}, data\n")
    reply = requests.post(server.url + "/", data=b'{"n": 1}', headers=EVENT_HEADERS, timeout=5)
    assert reply.status_code == 200 and reply.json() == {"n": 1}, reply.text
    bad = requests.post(server.url + "/", data=b'{"n": "x"}', headers=EVENT_HEADERS, timeout=5)
    assert bad.status_code == 400, bad.text


@pytest.mark.parametrize("argv", [[], [""], ["fn"], ["some dir"]])
def test_no_flags_give_the_config_the_parser_gives(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    """Without flags ``python -m pyfunc [DIR]`` skips argparse: the settings must be the parser's."""
    from pyfunc import cli
    from pyfunc._commands import run

    monkeypatch.setenv("PYFUNC_THREADS", "3")
    served: list[Config] = []
    monkeypatch.setattr(run, "serve_from_args",
                        lambda args, **overrides: served.append(Config.load(args=args, **overrides)) or 0)
    assert cli.main_module(argv) == 0
    parsed = Config.load(args=cli.module_parser().parse_args(argv))
    assert served == [parsed]
    assert parsed.threads == 3 and parsed.directory == (argv[0] if argv and argv[0] else ".")
    assert "argparse" in sys.modules  # the parser above; main_module itself is checked in a real process


def test_python_dash_m_without_flags_parses_none(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "handler.py").write_text("def handler(req):\n    return 'hi'\n")
    code = ("import sys, pyfunc._commands.run as run, pyfunc.cli as cli\n"
            "run.serve_from_args = lambda args, **o: print(args, o, 'argparse' in sys.modules) or 0\n"
            f"sys.exit(cli.main_module([{str(tmp_path)!r}]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"None {{'directory': {str(tmp_path)!r}}} False"
