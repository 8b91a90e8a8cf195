#!/usr/bin/env python3
"""Profile pyfunc's per-request path in-process (no sockets, no waitress).

Run it with a Python that has pyfunc installed (the bench venv does):

    ~/.cache/pyfunc/bench/venvs/pyfunc/bin/python bench/profile_pyfunc.py [--n N] [--scenario S]

For each scenario it builds the same request as bench/run.py, calls pyfunc's WSGI app and the
raw limit's WSGI app (bench/servers/raw/app.py) N times each, prints µs per call of both (the
app's share of a request, without the server), then a cProfile of pyfunc's app: top functions
by own time and by cumulative time. Logging is configured as the server does it, with stderr
sent to /dev/null, so log formatting is counted but the terminal is not.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import os
import pstats
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from run import build_request  # noqa: E402

SCENARIOS = {
    "hello": ("hello", None),
    "binary": ("binary", "100B"),
    "binary-10KB": ("binary", "10KB"),
    "structured": ("structured", "100B"),
    "batch": ("batch", "100B"),
}


def environ_for(kind: str, size: str | None) -> tuple[dict, bytes]:
    method, headers, body = build_request(kind, size)
    env = {
        "REQUEST_METHOD": method, "PATH_INFO": "/", "QUERY_STRING": "", "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False, "HTTP_HOST": "127.0.0.1:8080",
    }
    for k, v in headers.items():
        if k.lower() == "content-type":
            env["CONTENT_TYPE"] = v
        else:
            env["HTTP_" + k.upper().replace("-", "_")] = v
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    return env, body


def call(app, env: dict, body: bytes) -> bytes:
    e = dict(env)
    e["wsgi.input"] = io.BytesIO(body)
    status = []

    def start_response(s, h, exc_info=None):
        status.append(s)

    it = app(e, start_response)
    try:
        out = b"".join(it)
    finally:
        close = getattr(it, "close", None)
        if close:
            close()
    if not status or not status[0].startswith("2"):
        raise SystemExit(f"non-2xx from {app!r}: {status} {out[:200]!r}")
    return out


def load_pyfunc(mode: str, env: dict | None = None):
    from pyfunc import _logs as logs
    from pyfunc._config import Config
    from pyfunc._server import build_app

    cfg = Config.load(environ=env or {}, directory=str(BENCH / "servers" / "pyfunc" / mode),
                      threads=4)
    logs.configure(cfg.log_format, cfg.log_level)
    return build_app(cfg)


def load_raw(mode: str):
    os.environ["BENCH_MODE"] = mode
    spec = importlib.util.spec_from_file_location(f"raw_{mode}", BENCH / "servers" / "raw" / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.app


def per_call_us(app, env, body, n) -> float:
    for _ in range(min(200, n)):
        call(app, env, body)
    t0 = time.perf_counter()
    for _ in range(n):
        call(app, env, body)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--top", type=int, default=22)
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="pyfunc setting for the profiled app, e.g. PYFUNC_ACCESS_LOG=false")
    args = ap.parse_args()
    devnull = open(os.devnull, "w")
    real_stderr = sys.stderr
    for name in args.scenario or list(SCENARIOS):
        kind, size = SCENARIOS[name]
        mode = "hello" if kind == "hello" else "ce"
        env, body = environ_for(kind, size)
        sys.stderr = devnull
        pyf = load_pyfunc(mode, dict(kv.split("=", 1) for kv in args.env))
        raw = load_raw(mode)
        # logs.configure captured sys.stderr (devnull) in its StreamHandler
        t_pyf = per_call_us(pyf, env, body, args.n)
        t_raw = per_call_us(raw, env, body, args.n)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.n):
            call(pyf, env, body)
        prof.disable()
        sys.stderr = real_stderr
        print(f"\n=== {name}: pyfunc app {t_pyf:.1f} µs/call, raw app {t_raw:.1f} µs/call "
              f"(app-only ratio raw/pyfunc {t_raw / t_pyf:.2f}); n={args.n}")
        for key in ("tottime", "cumulative"):
            s = io.StringIO()
            pstats.Stats(prof, stream=s).strip_dirs().sort_stats(key).print_stats(args.top)
            lines = s.getvalue().splitlines()
            start = next(i for i, line in enumerate(lines) if "ncalls" in line)
            print(f"--- by {key}")
            print("\n".join(lines[start:start + args.top + 1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
