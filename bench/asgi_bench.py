"""The ASGI scenario of bench/run.py (``python3 bench/run.py --only asgi``): pyfunc serving ASGI code
against the servers that code runs under today, in one run.

Two apps, each under three servers, with the same wrk load, cores and measurement as the main
bench (bench/run.py's ``measure_cell``: other load on the cores is measured and retried):

* ``starlette-json``: a Starlette JSON echo (``servers/asgi/starlette_echo.py``, POST /echo,
  100 B of JSON) under pyfunc (``PYTHON_HANDLER=starlette_echo:app``), uvicorn 0.35.0 and
  Hypercorn 0.17.3;
* ``func-http``: the func HTTP template's function (``servers/funcpy/hello``, func-python's layout)
  under pyfunc (no configuration), func-python 0.8.1 itself (its middleware on Hypercorn, as
  ``func`` deploys it) and func-python's middleware on uvicorn (``servers/asgi/func_template.py``).

uvicorn and Hypercorn run one process with their defaults (asyncio, h11); pyfunc runs its
defaults with ``PYFUNC_THREADS=4`` as in the main bench. Throughput is given as req/s and as
the ratio of pyfunc's to each other server's (higher is better for pyfunc). Cold start (spawn →
first 200) and idle RSS of each are measured as in the main bench.

Results: ``bench/results/asgi.{json,md}`` (or ``--out``/``--name``), stamped like the others.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from provenance import stamp

import run as bench  # bench/run.py (this file is imported by it, with bench/ on sys.path)

ASGI_DIR = bench.SERVERS_DIR / "asgi"
FUNC_DIR = bench.SERVERS_DIR / "funcpy" / "hello"
PINS = {"starlette": "starlette==0.47.2", "uvicorn": "uvicorn==0.35.0", "hypercorn": "hypercorn==0.17.3",
        "func-python": "func-python==0.8.1", "cloudevents": "cloudevents==2.2.0"}
# Venv names of their own (asgi-*): the bench's venv cache is shared with the other scenarios' servers.
bench.SERVERS.update({
    "asgi-pyfunc": {"label": "pyfunc", "reqs": ["@repo", PINS["starlette"]], "replies": True, "batch": False},
    "asgi-uvicorn": {"label": "uvicorn 0.35.0", "reqs": [PINS["uvicorn"], PINS["starlette"], PINS["func-python"],
                                                   PINS["cloudevents"]], "replies": True, "batch": False},
    "asgi-hypercorn": {"label": "Hypercorn 0.17.3", "reqs": [PINS["hypercorn"], PINS["starlette"], PINS["func-python"],
                                                       PINS["cloudevents"]], "replies": True, "batch": False},
})
APPS = {  # app -> [(server, label)]; the first is pyfunc
    "starlette-json": [("asgi-pyfunc", "pyfunc"), ("asgi-uvicorn", "uvicorn 0.35.0"),
                       ("asgi-hypercorn", "Hypercorn 0.17.3")],
    "func-http": [("asgi-pyfunc", "pyfunc"), ("funcpy", "func-python 0.8.1 (Hypercorn)"),
                  ("asgi-uvicorn", "func-python's middleware on uvicorn 0.35.0")],
}
REQUESTS = {  # app -> (method, path, headers, body, expected reply body)
    "starlette-json": ("POST", "/echo", {"Content-Type": "application/json"},
                       json.dumps(bench.payload(100)).encode(), json.dumps(bench.payload(100)).encode()),
    "func-http": ("GET", "/", {}, b"", b"Hello, World!"),
}
CONCURRENCY = (8, 64)


def command(name: str, app: str, port: int) -> tuple[list[str], dict[str, str], Path]:
    """argv, extra environment and cwd of server ``name`` serving ``app`` (bench.server_command's hook)."""
    py = str(bench.venv_python(name))
    env = {"PORT": str(port), "PYTHONUNBUFFERED": "1"}
    if name == "asgi-pyfunc":
        env["PYFUNC_THREADS"] = str(bench.THREADS)
        if app == "starlette-json":
            env["PYTHON_HANDLER"] = "starlette_echo:app"
            return [py, "-m", "pyfunc", str(ASGI_DIR)], env, ASGI_DIR
        return [py, "-m", "pyfunc", str(FUNC_DIR)], env, FUNC_DIR
    module = "starlette_echo:app" if app == "starlette-json" else "func_template:app"
    if name == "asgi-uvicorn":
        argv = [py, "-m", "uvicorn", module, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        return argv, env, ASGI_DIR
    if name == "asgi-hypercorn":
        return [py, "-m", "hypercorn", module, "--bind", f"127.0.0.1:{port}"], env, ASGI_DIR
    raise KeyError(name)


def request_file(tmp: Path, app: str) -> Path:
    method, _, headers, body, _ = REQUESTS[app]
    path = tmp / f"req-{app}.txt"
    path.write_bytes((method + "\n" + "".join(f"{k}: {v}\n" for k, v in headers.items())).encode() + b"\n" + body)
    return path


def raw_request(app: str) -> bytes:
    method, path, headers, body, _ = REQUESTS[app]
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def verify(server: Any, app: str) -> tuple[bool, str]:
    import http.client

    method, path, headers, body, expected = REQUESTS[app]
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request(method, path, body=body or None, headers=headers)
        reply = connection.getresponse()
        data = reply.read()
        connection.close()
    except Exception as exc:  # noqa: BLE001
        return False, f"request failed: {exc!r}"
    if reply.status != 200:
        return False, f"HTTP {reply.status}: {data[:200]!r}"
    same = json.loads(data) == json.loads(expected) if app == "starlette-json" else data == expected
    return same, "ok" if same else f"body {data[:120]!r}"


def render(res: dict[str, Any]) -> str:
    lines = ["# ASGI: pyfunc against uvicorn, Hypercorn and func-python", "",
             f"*Measured at `{(res.get('commit') or '?')[:7]}`{' (dirty tree)' if res.get('dirty') else ''}, "
             f"{res.get('date')} · `python3 bench/run.py --only asgi` · {res['rounds']} round(s), "
             f"{res['duration']} s per cell*", "",
             "Throughput: req/s, median over rounds; **×** = pyfunc's throughput ÷ that server's in the same "
             "cell (above 1: pyfunc is faster). Cold start: spawn → first HTTP 200; idle RSS 0.3 s after it.", ""]
    for app, servers in APPS.items():
        lines += [f"## {app}", "",
                  "| server | " + " | ".join(f"c={c}" for c in CONCURRENCY) + " | cold start | idle RSS |",
                  "|---|" + "---|" * (len(CONCURRENCY) + 2)]
        ours = res["cells"].get(f"asgi-pyfunc/{app}", {})
        for name, label in servers:
            cells = res["cells"].get(f"{name}/{app}", {})
            row = [label]
            for conc in CONCURRENCY:
                cell, mine = cells.get(str(conc)), ours.get(str(conc))
                if not cell or cell.get("error"):
                    row.append("FAIL" if cell else "n/a")
                    continue
                text = f"{cell['rps']:,.0f}"
                if name != "asgi-pyfunc" and mine and not mine.get("error") and cell["rps"]:
                    text += f" (pyfunc ×{mine['rps'] / cell['rps']:.2f})"
                row.append(text)
            cold = res["cold"].get(f"{name}/{app}", {})
            row.append(f"{cold['cold_ms']:.0f} ms" if cold.get("cold_ms") else "FAIL")
            row.append(f"{cold['rss_mb']:.1f} MB" if cold.get("rss_mb") else "FAIL")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(args: Any) -> int:
    import statistics
    import tempfile

    rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (2 if args.quick else 4)
    args.warmup = args.warmup if args.warmup is not None else 1
    cold_reps = args.cold_reps or (2 if args.quick else 10)
    bench.EXTRA_COMMANDS.update({name: command for name in ("asgi-pyfunc", "asgi-uvicorn", "asgi-hypercorn")})
    provenance = stamp()
    bench.ensure_wrk()
    logdir = bench.CACHE / "logs" / time.strftime("%Y%m%d-%H%M%S-asgi")
    logdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pyfunc-asgi-bench-"))
    names = sorted({name for servers in APPS.values() for name, _ in servers})
    versions = {name: bench.ensure_venv(name) for name in names}
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
    errors: dict[str, str] = {}
    for rnd in range(rounds):
        order = [(app, name) for app, servers in APPS.items() for name, _ in servers]
        random.shuffle(order)
        bench.log(f"asgi round {rnd + 1}/{rounds}")
        for app, name in order:
            mode = "hello" if name == "funcpy" else app
            server = bench.Server(name, mode, args.server_core, logdir)
            try:
                if not server.wait_listening():
                    errors[f"{name}/{app}"] = "did not start: " + server.log_tail(8)
                    continue
                ok, note = verify(server, app)
                if not ok:
                    errors[f"{name}/{app}"] = "reply check failed: " + note
                    continue
                for conc in CONCURRENCY:
                    scn = {"id": f"{app}-c{conc}", "kind": app, "conc": conc}
                    bench.PATHS[app] = REQUESTS[app][1]
                    result = bench.measure_cell(server, request_file(tmp, app), scn, args)
                    samples.setdefault(f"{name}/{app}", {}).setdefault(str(conc), []).append(result)
                    bench.log(f"{name}/{app} c{conc}: {result['rps']:.0f} req/s")
            finally:
                server.stop()
    cells: dict[str, dict[str, Any]] = {}
    for key, by_conc in samples.items():
        cells[key] = {conc: {"rps": statistics.median(r["rps"] for r in runs),
                             "p50_ms": statistics.median(r["p50_ms"] or 0 for r in runs),
                             "p99_ms": statistics.median(r["p99_ms"] or 0 for r in runs),
                             "errors": max(r["errors"] for r in runs), "rounds": runs}
                      for conc, runs in by_conc.items()}
    for key, error in errors.items():
        cells.setdefault(key, {str(c): {"error": error} for c in CONCURRENCY})
    bench.log("asgi cold starts")
    cold: dict[str, dict[str, Any]] = {}
    starts: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {}
    for rep in range(cold_reps + 1):
        order = [(app, name) for app, servers in APPS.items() for name, _ in servers]
        random.shuffle(order)
        for app, name in order:
            bench.wait_quiet(args, [], f"cold start {name} {app}")
            server = bench.Server(name, "hello" if name == "funcpy" else app, args.server_core, logdir)
            seconds = server.first_200(raw_request(app))
            if seconds is not None and rep > 0:  # the first rep warms the page cache and .pyc files
                starts.setdefault(f"{name}/{app}", []).append(seconds * 1000)
                time.sleep(0.3)
                rss.setdefault(f"{name}/{app}", []).append(bench.rss_kb(server.pids()) / 1024)
            server.stop()
    for key in starts:
        cold[key] = {"cold_ms": statistics.median(starts[key]), "rss_mb": statistics.median(rss[key]),
                     "samples_ms": starts[key], "rss_samples_mb": rss[key]}
    res = {**provenance, "rounds": rounds, "duration": args.duration, "cells": cells, "cold": cold,
           "errors": errors, "versions": {name: v["freeze"] for name, v in versions.items()},
           "command": "python3 bench/run.py --only asgi"}
    out = Path(args.out)
    name = args.name if args.name not in (None, "latest", "quick") else "asgi"
    (out / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / f"{name}.md").write_text(render(res))
    bench.log(f"wrote {out / name}.md and .json")
    return 0
