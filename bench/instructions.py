#!/usr/bin/env python3
"""Instructions per request under valgrind's callgrind: pyfunc against the raw-waitress limit.

Timings on a shared 2-core VM move by ±10 % from one run to the next; instruction counts do not
(callgrind counts every user-space instruction the process executes, none of the kernel's and
none of the waiting). They tell where pyfunc's distance to the limit is:

- **app**: the WSGI app alone, called in-process with the scenario's request (decoding, binding,
  calling the function, encoding, the access line): pyfunc's ``FunctionApp`` against the
  limit's hand-written app (bench/servers/raw/app.py);
- **server**: the whole process serving real requests over loopback (8 keep-alive clients):
  waitress, and for pyfunc its event loop and thread pool, around the app.

Each figure is the difference of two runs (N requests and none) divided by N, so start-up and
shutdown cancel out. Usage (after ``python3 bench/run.py`` has made its venvs; about 6 min):

    python3 bench/instructions.py            # writes bench/results/instructions.{json,md}
    python3 bench/instructions.py --scenarios binary,batch --out /tmp/x
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "scripts"))
from provenance import stamp  # noqa: E402

import run  # noqa: E402 - bench/run.py: venvs, servers, requests

# scenario -> (bench/run.py kind, size, pyfunc/raw mode)
SCENARIOS = {
    "hello": ("hello", None, "hello"),
    "query": ("query", None, "hello-req"),
    "json": ("json", "100B", "json"),
    "binary": ("binary", "100B", "ce"),
    "structured": ("structured", "100B", "ce"),
    "batch": ("batch", "100B", "ce"),
}
SERVER_SCENARIOS = ("hello", "binary", "batch")
APP_CALLS = 400
SERVER_REQUESTS = 1600
CLIENTS = 8
COLLECTED = re.compile(r"Collected : (\d+)")


def callgrind(argv: list[str]) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv]


def collected(stderr: str) -> int:
    found = COLLECTED.findall(stderr)
    if not found:
        raise RuntimeError(f"no callgrind total in:\n{stderr[-1500:]}")
    return int(found[-1])


# ---- app: the WSGI app in-process --------------------------------------------------------------


def app_worker(scenario: str, calls: int, raw: bool) -> None:
    """Run inside callgrind: build the app, warm it up, call it ``calls`` times."""
    import profile_pyfunc as pp

    kind, size, mode = SCENARIOS[scenario]
    environ, body = pp.environ_for(kind, size)
    path, _, query = run.PATHS.get(kind, "/").partition("?")
    environ.update(PATH_INFO=path, QUERY_STRING=query)
    sys.stderr = open(os.devnull, "w")  # the access lines (formatted, counted, not printed)
    app = pp.load_raw("query" if mode == "hello-req" else mode) if raw else pp.load_pyfunc(mode)
    for _ in range(50):
        pp.call(app, environ, body)
    for _ in range(calls):
        pp.call(app, environ, body)


def app_instructions(python: str, scenario: str, raw: bool) -> float:
    counts = []
    for calls in (0, APP_CALLS):
        argv = [python, __file__, "--app-worker", scenario, str(calls)] + (["--raw"] if raw else [])
        proc = subprocess.run(callgrind(argv), capture_output=True, text=True, timeout=900)
        if proc.returncode:
            raise RuntimeError(f"{scenario} app worker failed:\n{proc.stderr[-2000:]}")
        counts.append(collected(proc.stderr))
    return (counts[1] - counts[0]) / APP_CALLS


# ---- server: the whole process, real requests ---------------------------------------------------


def send(port: int, scenario: str, requests: int) -> None:
    kind, size, _ = SCENARIOS[scenario]
    method, headers, body = run.build_request(kind, size)
    path = run.PATHS.get(kind, "/")
    errors: list[str] = []

    def client(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            for _ in range(count):
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status >= 300:
                    errors.append(f"HTTP {response.status}")
        except OSError as exc:  # a request that never came back: the count would be wrong
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(requests // CLIENTS,)) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{scenario}: {len(errors)} failed requests ({errors[0]})")


def server_instructions(server: str, scenario: str) -> float:
    counts = []
    mode = SCENARIOS[scenario][2]
    for requests in (0, SERVER_REQUESTS):
        port = run.free_port()
        argv, env, cwd = run.server_command(server, mode, port)
        if server == "raw":  # exit on SIGTERM (waitress.serve would die of it) so callgrind reports
            argv = [argv[0], "-c", "import runpy, signal, sys; signal.signal(signal.SIGTERM, lambda *a: "
                    f"sys.exit(0)); runpy.run_path({argv[1]!r}, run_name='__main__')"]
        proc = subprocess.Popen(callgrind(argv), cwd=cwd, env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    conn.request("GET", "/health/readiness")
                    conn.getresponse().read()
                    conn.close()
                    break
                except OSError:
                    time.sleep(0.2)
            else:
                raise RuntimeError(f"{server} did not start under callgrind")
            if requests:
                send(port, scenario, requests)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=300)
        counts.append(collected(stderr))
    return (counts[1] - counts[0]) / SERVER_REQUESTS


# ---- report ---------------------------------------------------------------------------------------


def render(res: dict) -> str:
    lines = [
        "# Instructions per request (callgrind)",
        "",
        f"Made by `python3 bench/instructions.py` on {res['date']} (commit `{(res['commit'] or '?')[:7]}`"
        f"{', dirty tree' if res['dirty'] else ''}). Thousands of user-space instructions per request; "
        "**×ratio** = limit ÷ pyfunc (higher is better, 1.00 = as cheap as the limit). app: the WSGI app "
        f"called in-process ({APP_CALLS} calls); server: the whole process, {SERVER_REQUESTS} requests "
        f"from {CLIENTS} keep-alive clients over loopback.",
        "",
        "| scenario | app: limit | app: pyfunc | server: limit | server: pyfunc |",
        "|---|---|---|---|---|",
    ]
    def cell(row: dict, part: str, who: str) -> str:
        value = row.get(part, {}).get(who)
        if value is None:
            return "–"
        if who == "raw":
            return f"{value / 1000:,.0f}k"
        return f"{value / 1000:,.0f}k **×{row[part]['raw'] / value:.2f}**"

    for name, row in res["scenarios"].items():
        lines.append(f"| {name} | {cell(row, 'app', 'raw')} | {cell(row, 'app', 'pyfunc')} | "
                     f"{cell(row, 'server', 'raw')} | {cell(row, 'server', 'pyfunc')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", help="comma list of " + ",".join(SCENARIOS))
    ap.add_argument("--server-scenarios", default=",".join(SERVER_SCENARIOS),
                    help="of those, the ones also measured as a whole server (default: %(default)s)")
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--app-worker", nargs=2, metavar=("SCENARIO", "CALLS"), help=argparse.SUPPRESS)
    ap.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.app_worker:
        app_worker(args.app_worker[0], int(args.app_worker[1]), args.raw)
        return 0
    if not shutil.which("valgrind"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "valgrind"], check=True)
    provenance = stamp()
    python = run.ensure_venv("pyfunc")["python"]
    run.ensure_venv("raw")
    wanted = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    results: dict = {}
    started = time.time()
    for name in wanted:
        row = results.setdefault(name, {})
        row["app"] = {"raw": app_instructions(python, name, raw=True),
                      "pyfunc": app_instructions(python, name, raw=False)}
        if name in args.server_scenarios.split(","):
            row["server"] = {"raw": server_instructions("raw", name), "pyfunc": server_instructions("pyfunc", name)}
        run.log(f"{name}: {json.dumps({k: {w: round(v) for w, v in p.items()} for k, p in row.items()})}")
    res = {**provenance, "elapsed_s": round(time.time() - started), "app_calls": APP_CALLS,
           "server_requests": SERVER_REQUESTS, "clients": CLIENTS, "scenarios": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "instructions.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "instructions.md").write_text(render(res))
    print(render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
