#!/usr/bin/env python3
"""pyfunc benchmark suite: one command, see bench/README.md.

    python3 bench/run.py            # full run (~15-20 min on 2 cores)
    python3 bench/run.py --quick    # CI smoke run (< ~2 min once the venvs are cached)

It builds one venv per server (cached, keyed on the pins), starts each server the way its docs
say, checks that it answers correctly, drives it with wrk over loopback (load generator and
server pinned to different cores), and writes bench/results/latest.{md,json}.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "scripts"))
from provenance import stamp  # noqa: E402 - commit/dirty/date of every results file

SERVERS_DIR = BENCH / "servers"
LUA = BENCH / "wrk" / "request.lua"
LUA_UNIQUE = BENCH / "wrk" / "request-unique.lua"
CACHE = Path(os.environ.get("PYFUNC_CACHE", Path.home() / ".cache" / "pyfunc")) / "bench"
VENVS = CACHE / "venvs"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = 1

# Every waitress-based server (raw limit, Flask + SDK, pyfunc) runs with this many threads.
# 4 is waitress' own default. functions-framework and func-python keep their documented
# defaults (gunicorn gthread, 1 worker x 4*cpu_count threads; Hypercorn asyncio, 1 process).
THREADS = 4

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------

# Exact pins, resolved on PyPI when the suite was written (see README). Transitive versions
# actually installed are recorded in latest.json ("versions").
SERVERS = {
    "raw": {
        "label": "raw waitress (limit)",
        "reqs": ["waitress==3.0.2"],
        "replies": True,
        "batch": True,
    },
    "pyfunc": {
        "label": "pyfunc (this repo)",
        "reqs": ["@repo"],
        "replies": True,
        "batch": True,
    },
    "funcpy": {
        "label": "func-python 0.8.1",
        "reqs": ["func-python==0.8.1", "hypercorn==0.17.3", "cloudevents==2.2.0"],
        "replies": True,
        "batch": False,
    },
    "ff": {
        "label": "functions-framework 3.10.2",
        "reqs": ["functions-framework==3.10.2"],
        "replies": False,  # a cloud_event function cannot return a reply event
        "batch": False,
    },
    "flask": {
        "label": "Flask+SDK on waitress",
        "reqs": ["flask==3.1.3", "waitress==3.0.2", "cloudevents==1.13.0"],
        "replies": True,
        "batch": False,
    },
    "pyfunc010": {
        "label": "pyfunc-invoker 0.1.0",
        "reqs": ["pyfunc-invoker==0.1.0", "markupsafe==2.0.1"],
        "replies": True,
        "batch": False,
    },
}
SERVERS["uvicorn"] = {  # only in the workers scenario (bench/workers_bench.py): a bare ASGI app
    "label": "uvicorn 0.55.0",
    "reqs": ["uvicorn==0.55.0"],
    "replies": False,
    "batch": False,
}
PYFUNC_EXTRA_ENV: dict = {}  # --pyfunc-env, for A/B runs of pyfunc settings
ORDER = ["raw", "pyfunc", "funcpy", "ff", "flask", "pyfunc010"]

# --group eventing: the CE echo under pyfunc's delivery features (docs/delivery.md), side by side
# with plain pyfunc. They share pyfunc's venv (installed with the redis and metrics extras) and
# differ only in their environment; "{redis}" is the bench's own redis-server (started on the
# load core for the group, stopped after).
EVENTING = {
    "pyfunc-dedup-memory": {"PYFUNC_DEDUPE": "memory"},
    "pyfunc-dedup-redis": {"PYFUNC_DEDUPE": "{redis}"},
    "pyfunc-metrics": {"PYFUNC_METRICS": "true"},
    "pyfunc-all": {"PYFUNC_DEDUPE": "memory", "PYFUNC_METRICS": "true"},
}
for _name, _env in EVENTING.items():
    SERVERS[_name] = {"label": _name.replace("pyfunc-", "pyfunc + ").replace("-", " "), "reqs": ["@repo"],
                      "venv": "pyfunc", "env": _env, "replies": True, "batch": True}
EVENTING_SERVERS = ["pyfunc", *EVENTING]
# Each request a new event (a fresh id, request-unique.lua), so dedup does its whole work (claim,
# run, store); the plain binary-100B-c8 sends one id again and again: with dedup on, that is the
# replay path of a duplicate.
EVENTING_SCENARIOS = ["binary-100B-c8-new", "binary-100B-c64-new", "batch-100B-c8-new", "binary-100B-c8"]
REDIS_URL = ""


def venv_python(name: str) -> Path:
    return VENVS / SERVERS.get(name, {}).get("venv", name) / "bin" / "python"


# Servers another scenario module adds (asgi_bench.py): name -> command(name, mode, port).
EXTRA_COMMANDS: dict = {}


def server_command(name: str, mode: str, port: int) -> tuple[list[str], dict, Path]:
    """argv, extra env and cwd to start server `name` in `mode` ('hello' or 'ce')."""
    if name in EXTRA_COMMANDS:
        return EXTRA_COMMANDS[name](name, mode, port)
    py = str(venv_python(name))
    env = {"PORT": str(port), "PYTHONUNBUFFERED": "1"}
    if name == "raw":
        env.update(BENCH_MODE="query" if mode == "hello-req" else mode, BENCH_THREADS=str(THREADS))
        return [py, str(SERVERS_DIR / "raw" / "app.py")], env, SERVERS_DIR / "raw"
    if name == "flask":
        env.update(BENCH_MODE="query" if mode == "hello-req" else mode, BENCH_THREADS=str(THREADS))
        return [py, str(SERVERS_DIR / "flask_sdk" / "app.py")], env, SERVERS_DIR / "flask_sdk"
    if name == "pyfunc" or name in EVENTING:
        env.update(PYFUNC_THREADS=str(THREADS))
        env.update(PYFUNC_EXTRA_ENV)
        env.update({k: v.replace("{redis}", REDIS_URL) for k, v in EVENTING.get(name, {}).items()})
        d = SERVERS_DIR / "pyfunc" / mode
        return [py, "-m", "pyfunc", str(d)], env, d
    if name == "pyfunc010":
        d = SERVERS_DIR / "pyfunc010" / mode
        return [py, "-m", "pyfunc", str(d)], env, d
    if name == "ff":
        exe = str(VENVS / name / "bin" / "functions-framework")
        target = {"hello": "hello", "ce": "echo", "io-sync": "sleep", "cpu": "cpu"}[mode]
        d = SERVERS_DIR / "ff"
        argv = [exe, f"--target={target}", f"--source={d / 'main.py'}",
                "--host=127.0.0.1", f"--port={port}"]
        return argv, env, d
    if name == "uvicorn":  # the workers scenario; its process count is WEB_CONCURRENCY (uvicorn's own)
        d = SERVERS_DIR / "uvicorn"
        return [py, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)], env, d
    if name == "funcpy":
        env["LISTEN_ADDRESS"] = f"127.0.0.1:{port}"
        d = SERVERS_DIR / "funcpy" / mode
        return [py, str(d / "main.py")], env, d
    raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------

SIZES = {"100B": 100, "10KB": 10 * 1024, "1MB": 1024 * 1024}


def payload(nbytes: int) -> dict:
    """A JSON object whose serialisation (json.dumps) is `nbytes` long."""
    base = len(json.dumps({"msg": ""}))
    return {"msg": "x" * max(0, nbytes - base)}


def make_event(i: int, data) -> dict:
    return {
        "specversion": "1.0",
        "id": f"bench-{i}",
        "source": "/bench/client",
        "type": "bench.request",
        "datacontenttype": "application/json",
        "data": data,
    }


# The scenarios of functions that read their input (an HTTP function's query string or JSON body):
# their server mode and the path they request. Only pyfunc, the limit and Flask+SDK run them.
READING = {"query": "hello-req", "json": "json"}
READERS = ("raw", "pyfunc", "flask")
PATHS = {"query": "/?name=bench"}


def build_request(kind: str, size: str) -> tuple[str, dict, bytes]:
    if kind in ("hello", "query"):
        return "GET", {}, b""
    data = payload(SIZES[size])
    if kind == "json":
        return "POST", {"Content-Type": "application/json"}, json.dumps(data).encode()
    if kind == "binary":
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "bench-1",
            "ce-source": "/bench/client",
            "ce-type": "bench.request",
            "Content-Type": "application/json",
        }
        return "POST", headers, json.dumps(data).encode()
    if kind == "structured":
        headers = {"Content-Type": "application/cloudevents+json"}
        return "POST", headers, json.dumps(make_event(1, data)).encode()
    if kind == "batch":
        headers = {"Content-Type": "application/cloudevents-batch+json"}
        return "POST", headers, json.dumps([make_event(i, data) for i in range(10)]).encode()
    raise KeyError(kind)


def scenarios(quick: bool, group: str = "") -> list[dict]:
    def sc(kind, size, conc):
        return {"id": f"{kind}-{size}-c{conc}" if size else f"{kind}-c{conc}",
                "kind": kind, "size": size, "conc": conc,
                "mode": "hello" if kind == "hello" else READING.get(kind, "ce")}

    new = [dict(sc(k, z, c), id=f"{k}-{z}-c{c}-new", unique=True)
           for k, z, c in (("binary", "100B", 8), ("binary", "100B", 64), ("batch", "100B", 8))]
    if group == "eventing":
        every = {x["id"]: x for x in new + [sc("binary", "100B", 8)]}
        return [every[name] for name in EVENTING_SCENARIOS]
    if quick:
        return [sc("hello", None, 8), sc("binary", "100B", 8), sc("binary", "10KB", 8),
                sc("structured", "100B", 8), sc("batch", "100B", 8)]
    return [
        sc("hello", None, 8), sc("hello", None, 64),
        sc("binary", "100B", 8), sc("binary", "100B", 64), sc("binary", "100B", 256),
        sc("binary", "10KB", 8), sc("binary", "1MB", 8),
        sc("structured", "100B", 8), sc("structured", "100B", 64),
        sc("batch", "100B", 8), sc("batch", "100B", 64),
        sc("query", None, 8), sc("query", None, 64), sc("json", "100B", 8), sc("json", "100B", 64),
    ]


def applicable(server: str, scn: dict) -> bool:
    if scn["kind"] in READING:
        return server in READERS
    return scn["kind"] != "batch" or SERVERS[server]["batch"]


# ---------------------------------------------------------------------------------------------
# Helpers: processes, /proc, ports
# ---------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def rss_kb(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def core_ticks(core: int) -> tuple[int, int]:
    """(busy, total) jiffies of one core from /proc/stat. Busy counts user+nice+system only:
    the softirq time of our own loopback traffic is not someone else's load."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                return v[0] + v[1] + v[2], sum(v[:8])
    return 0, 0


def foreign_load(core: int, own_pids: list[int], seconds: float) -> float:
    """Share of `core` used by processes other than `own_pids` over `seconds`."""
    b0, t0 = core_ticks(core)
    c0 = cpu_ticks(own_pids)
    time.sleep(seconds)
    b1, t1 = core_ticks(core)
    c1 = cpu_ticks(own_pids)
    return max(0.0, ((b1 - b0) - (c1 - c0)) / max(1, t1 - t0))


def wait_quiet(args, own_pids: list[int], what: str) -> float:
    """Wait (up to --max-wait s) until both cores are quiet; returns the seconds waited."""
    if args.max_wait <= 0:
        return 0.0
    waited = 0.0
    while True:
        srv = foreign_load(int(args.server_core), own_pids, 0.3)
        if srv <= args.max_foreign:
            return waited
        if waited >= args.max_wait:
            log(f"{what}: server core still {srv:.0%} busy with other processes after "
                f"{waited:.0f} s; measuring anyway (flagged)")
            return waited
        if waited == 0:
            log(f"{what}: server core {srv:.0%} busy with other processes; waiting for quiet")
        time.sleep(1.0)
        waited += 1.3


LIVE: set = set()  # servers running now, stopped on exit or SIGTERM/SIGINT of the runner


def _stop_all(*_):
    for srv in list(LIVE):
        srv.stop()
    if _:
        sys.exit(130)


class Server:
    def __init__(self, name: str, mode: str, core: str, logdir: Path, extra_env: dict | None = None):
        self.name, self.mode = name, mode
        self.port = free_port()
        argv, env, cwd = server_command(name, mode, self.port)
        full_env = dict(os.environ)
        full_env.pop("PYTHONPATH", None)
        full_env.update(env)
        full_env.update(extra_env or {})  # the workers scenario's process counts
        self.logfile = open(logdir / f"{name}-{mode}.log", "ab")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            ["taskset", "-c", core, *argv], env=full_env, cwd=cwd,
            stdout=self.logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        LIVE.add(self)

    def first_200(self, req: bytes, timeout: float = 30.0) -> float | None:
        """Tight loop of raw connects + requests until an HTTP 200; seconds since spawn."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                return None
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.sendall(req)
                    head = s.recv(64)
                    if head.startswith(b"HTTP/1.") and head[9:12] == b"200":
                        return time.perf_counter() - self.t0
            except OSError:
                pass
            time.sleep(0.0005)
        return None

    def wait_listening(self, timeout: float = 30.0) -> bool:
        """Ready = answers any HTTP request (CE-mode servers may answer GET / with 4xx/5xx)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/health/readiness" if self.name == "funcpy" else "/")
                c.getresponse().read()
                c.close()
                return True
            except OSError:
                time.sleep(0.01)
            except http.client.HTTPException:
                return True
        return False

    def pids(self) -> list[int]:
        return proc_tree(self.proc.pid)

    def stop(self) -> None:
        LIVE.discard(self)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        if not self.logfile.closed:
            self.logfile.close()

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = Path(self.logfile.name).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


# ---------------------------------------------------------------------------------------------
# Verification: a real reply before anything is timed
# ---------------------------------------------------------------------------------------------


def verify(server: Server, scn: dict) -> tuple[bool, str]:
    """Send the scenario's request once; check the reply. Returns (ok, note)."""
    method, headers, body = build_request(scn["kind"], scn["size"])
    try:
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        c.request(method, PATHS.get(scn["kind"], "/"), body=body or None, headers=headers)
        r = c.getresponse()
        rbody = r.read()
        rh = {k.lower(): v for k, v in r.getheaders()}
        c.close()
    except Exception as e:  # noqa: BLE001
        return False, f"request failed: {e!r}"
    if not 200 <= r.status < 300:
        return False, f"HTTP {r.status}: {rbody[:200]!r}"
    kind = scn["kind"]
    if kind == "hello":
        return (b"Hello" in rbody), "" if b"Hello" in rbody else f"body {rbody[:80]!r}"
    if kind == "query":
        return (rbody == b"Hello, bench!"), "" if rbody == b"Hello, bench!" else f"body {rbody[:80]!r}"
    if kind == "json":
        ok = json.loads(rbody) == json.loads(body)
        return ok, "" if ok else f"body {rbody[:80]!r}"
    if not SERVERS[server.name]["replies"]:
        return True, "no reply event (framework cannot send one)"
    sent = json.loads(body)
    ctype = rh.get("content-type", "")
    try:
        if kind == "batch":
            if not ctype.startswith("application/cloudevents-batch+json"):
                return False, f"batch reply content-type {ctype!r}"
            evs = json.loads(rbody)
            ok = (isinstance(evs, list) and len(evs) == len(sent)
                  and all(e.get("type") == "bench.reply" and e.get("data") == s["data"]
                          for e, s in zip(evs, sent)))
            return ok, "batch reply" if ok else f"bad batch reply {rbody[:200]!r}"
        want = sent if kind == "binary" else sent["data"]
        if ctype.startswith("application/cloudevents+json"):
            ev = json.loads(rbody)
            ok = ev.get("type") == "bench.reply" and ev.get("data") == want and "id" in ev
            return ok, "structured reply" if ok else f"bad structured reply {rbody[:200]!r}"
        if rh.get("ce-type") == "bench.reply" and "ce-id" in rh:
            ok = json.loads(rbody) == want
            return ok, "binary reply" if ok else f"bad binary reply data {rbody[:200]!r}"
        return False, f"no reply event: {ctype!r} {rbody[:200]!r}"
    except ValueError as e:
        return False, f"reply not JSON: {e}"


# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------


def write_request_file(tmp: Path, scn: dict) -> Path:
    method, headers, body = build_request(scn["kind"], scn["size"])
    p = tmp / f"req-{scn['kind']}-{scn['size']}.txt"
    if not p.exists():
        head = method + "\n" + "".join(f"{k}: {v}\n" for k, v in headers.items())
        p.write_bytes(head.encode() + b"\n" + body)
    return p


def run_wrk(port: int, reqfile: Path, conc: int, seconds: float, core: str, unique: bool = False,
            path: str = "/") -> dict:
    script = LUA_UNIQUE if unique else LUA
    cmd = ["taskset", "-c", core, "wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s",
           "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}{path}", "--", str(reqfile)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise RuntimeError(f"wrk gave no result: {out.stdout[-500:]} {out.stderr[-500:]}")


def measure_once(server: Server, reqfile: Path, scn: dict, args) -> dict:
    pids = server.pids()
    wait_quiet(args, pids, f"{server.name}/{scn['id']}")
    if args.warmup > 0:
        run_wrk(server.port, reqfile, scn["conc"], args.warmup, args.load_core, scn.get("unique", False),
                PATHS.get(scn["kind"], "/"))
    peak = [rss_kb(pids)]
    stop = threading.Event()

    def sampler():  # the tree is fixed during a cell: no /proc scan per sample
        while not stop.wait(0.25):
            peak[0] = max(peak[0], rss_kb(pids))

    th = threading.Thread(target=sampler, daemon=True)
    score, lcore = int(args.server_core), int(args.load_core)
    b0, t0 = core_ticks(score)
    lb0, lt0 = core_ticks(lcore)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is our only child reaped meanwhile
    rs0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = cpu_ticks(pids)
    th.start()
    w = run_wrk(server.port, reqfile, scn["conc"], args.duration, args.load_core, scn.get("unique", False),
                PATHS.get(scn["kind"], "/"))
    stop.set()
    th.join()
    c1 = cpu_ticks(pids)
    b1, t1 = core_ticks(score)
    lb1, lt1 = core_ticks(lcore)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    rs1 = resource.getrusage(resource.RUSAGE_SELF)
    own_load = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
                + rs1.ru_utime + rs1.ru_stime - rs0.ru_utime - rs0.ru_stime) * CLK_TCK
    n = w["requests"]
    errors = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_status"] + w["err_timeout"]
    dur = w["duration_us"] / 1e6
    ok = n - w["err_status"]
    return {
        "rps": ok / dur if dur else 0.0,
        "requests": n,
        "errors": errors,
        "err_detail": {k[4:]: w[k] for k in w if k.startswith("err_") and w[k]},
        "p50_ms": w["lat_p50_us"] / 1000 if n else None,
        "p99_ms": w["lat_p99_us"] / 1000 if n else None,
        "cpu_us_per_req": ((c1 - c0) / CLK_TCK * 1e6 / n) if n else None,
        "cpu_util": (c1 - c0) / CLK_TCK / dur if dur else None,
        "foreign_load": max(0.0, ((b1 - b0) - (c1 - c0)) / max(1, t1 - t0)),
        "load_core_foreign": max(0.0, ((lb1 - lb0) - own_load) / max(1, lt1 - lt0)),
        "rss_peak_mb": peak[0] / 1024,
    }


def measure_cell(server: Server, reqfile: Path, scn: dict, args) -> dict:
    """One measurement; re-measured (up to --retries times) when other processes took more
    than --max-foreign of the server's core during the window. Keeps the least disturbed."""
    best = None
    for attempt in range(args.retries + 1):
        r = measure_once(server, reqfile, scn, args)
        r["attempts"] = attempt + 1
        # Other load on the server's core always skews a cell. Other load on wrk's core only
        # matters when it starved wrk, i.e. when the server was left idle meanwhile.
        starved = (r["cpu_util"] or 0) < 0.9
        r["disturbance"] = max(r["foreign_load"], r["load_core_foreign"] if starved else 0.0)
        if best is None or r["disturbance"] < best["disturbance"]:
            best = r
        if r["disturbance"] <= args.max_foreign:
            break
        log(f"{server.name}/{scn['id']}: other processes took {r['foreign_load']:.0%} of the "
            f"server core, {r['load_core_foreign']:.0%} of wrk's; measuring again")
    best["contended"] = best["disturbance"] > args.max_foreign
    return best


# ---------------------------------------------------------------------------------------------
# Venvs
# ---------------------------------------------------------------------------------------------


def repo_snapshot() -> Path:
    """Copy the repo's working tree (minus .git, bench, caches) so a build leaves no files in
    the lead's tree. pip then installs it non-editable, a real install."""
    dst = Path(tempfile.mkdtemp(prefix="pyfunc-src-"))
    ignore = shutil.ignore_patterns(".git", "bench", "__pycache__", "*.egg-info", "build",
                                    "dist", ".venv", ".cache", "*_cache")
    shutil.copytree(REPO, dst / "src", ignore=ignore)
    return dst / "src"


def pip(py: Path, *args: str) -> None:
    cmd = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{r.stdout[-2000:]}"
                           f"{r.stderr[-3000:]}")


def ensure_venv(name: str) -> dict:
    if "venv" in SERVERS[name]:  # an --group eventing variant: pyfunc's venv, another environment
        name = SERVERS[name]["venv"]
    if name in _ENSURED:
        return _ENSURED[name]
    _ENSURED[name] = _ensure_venv(name)
    return _ENSURED[name]


_ENSURED: dict = {}


def _ensure_venv(name: str) -> dict:
    reqs = SERVERS[name]["reqs"]
    d = VENVS / name
    key_src = [sys.version, reqs]
    if "@repo" in reqs:
        key_src.append((REPO / "pyproject.toml").read_text())
    key = hashlib.sha256(json.dumps(key_src).encode()).hexdigest()[:16]
    stamp = d / ".bench-key"
    if not (stamp.exists() and stamp.read_text() == key and venv_python(name).exists()):
        log(f"creating venv {d}")
        shutil.rmtree(d, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(d)], check=True)
        if "@repo" in reqs:  # with the extras the --group eventing variants (and --only oidc) import (and any pins)
            pip(venv_python(name), f"{repo_snapshot()}[redis,metrics,oidc]", *(r for r in reqs if r != "@repo"))
        else:
            pip(venv_python(name), *reqs)
        stamp.write_text(key)
    if "@repo" in reqs:
        # the runtime changes all the time: reinstall it (not its deps) on every run
        src = repo_snapshot()
        pip(venv_python(name), "--no-deps", "--force-reinstall", str(src))
        shutil.rmtree(src.parent, ignore_errors=True)
    r = subprocess.run([str(venv_python(name)), "-m", "pip", "freeze", "--all"],
                       capture_output=True, text=True)
    return {"python": str(venv_python(name)), "freeze": r.stdout.split()}


def start_bench_redis(args) -> subprocess.Popen:
    """A redis-server for pyfunc-dedup-redis on the load core (Debian's; apt-get when missing)."""
    global REDIS_URL
    if not shutil.which("redis-server"):
        if os.geteuid() != 0:
            sys.exit("redis-server is missing: apt-get install redis-server (needs root)")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", args.load_core, "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tempfile.mkdtemp()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    REDIS_URL = f"redis://127.0.0.1:{port}/0"
    log(f"redis-server for the dedup variants on {REDIS_URL}")
    return proc


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        if os.geteuid() != 0:
            sys.exit("wrk is missing: apt-get install wrk (needs root)")
        log("installing wrk with apt-get")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    r = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return (r.stdout + r.stderr).splitlines()[0].strip() if (r.stdout + r.stderr) else "wrk"


# ---------------------------------------------------------------------------------------------
# Cold start, docker
# ---------------------------------------------------------------------------------------------


def raw_request(kind: str, size: str | None) -> bytes:
    method, headers, body = build_request(kind, size)
    head = f"{method} / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def cold_starts(servers: list[str], reps: int, args, logdir: Path) -> dict:
    """Spawn -> first HTTP 200: GET / of the hello function, and a binary CloudEvent (100 B)
    POSTed to the echo function. Reps interleaved across servers and modes; one discarded
    warm-up rep first (page cache, .pyc). Idle RSS is read 0.3 s after that first 200."""
    reqs = {"hello": raw_request("hello", None), "ce": raw_request("binary", "100B"),
            "hello-req": raw_request("hello", None)}
    prefixes = {"hello": "", "ce": "ce_", "hello-req": "req_"}
    res = {s: {f"{p}{k}": [] for p in prefixes.values() for k in ("samples_ms", "rss_idle_mb")}
           for s in servers}
    for rep in range(reps + 1):
        order = [(s, m) for s in servers for m in ("hello", "ce")]
        if "pyfunc" in servers:  # pyfunc only: an HTTP function that reads its request (req.args)
            order.append(("pyfunc", "hello-req"))
        random.shuffle(order)
        for s, mode in order:
            pre = prefixes[mode]
            wait_quiet(args, [], f"cold start {s} {mode}")
            srv = Server(s, mode, args.server_core, logdir)
            t = srv.first_200(reqs[mode])
            if t is not None and rep > 0:
                res[s][pre + "samples_ms"].append(t * 1000)
                time.sleep(0.3)
                res[s][pre + "rss_idle_mb"].append(rss_kb(srv.pids()) / 1024)
            elif t is None:
                res[s][pre + "error"] = "no HTTP 200 within 30 s: " + srv.log_tail(5)
            srv.stop()
    return res


def docker_figures(args) -> dict:
    """Image sizes and `docker run` -> first 200. Optional: skipped cleanly without an engine or
    without the base image. The function image is built from bench/servers/pyfunc/hello with the
    repo's image/function.Dockerfile (base image + handler.py) unless --docker-fn names one."""
    docker = shutil.which("docker")
    if not docker:
        return {"skipped": "docker client not installed"}
    if subprocess.run([docker, "info"], capture_output=True).returncode:
        return {"skipped": "no Docker engine reachable (docker info failed)"}

    def size_mb(img):
        r = subprocess.run([docker, "image", "inspect", "--format", "{{.Size}}", img],
                           capture_output=True, text=True)
        return int(r.stdout.strip()) / 1e6 if r.returncode == 0 else None

    out: dict = {"images": {}}
    for img in (args.docker_base, args.docker_builder):
        out["images"][img] = size_mb(img)
    if out["images"][args.docker_base] is None:
        out["skipped"] = f"image {args.docker_base} not present"
        return out
    fn = args.docker_fn
    if not fn:
        fn = "pyfunc/bench-hello"
        dockerfile = REPO / "image" / "function.Dockerfile"
        if not dockerfile.exists():
            out["run_skipped"] = f"{dockerfile} missing"
            return out
        r = subprocess.run([docker, "build", "-q", "-f", str(dockerfile), "--build-arg",
                            f"BASE_IMAGE={args.docker_base}", "-t", fn,
                            str(SERVERS_DIR / "pyfunc" / "hello")], capture_output=True, text=True)
        if r.returncode:
            out["run_skipped"] = "docker build failed: " + r.stderr[-300:]
            return out
    out["function_image"] = fn
    out["images"][fn] = size_mb(fn)
    out["run_to_first_200_ms"] = run_to_first_200(docker, fn, [], args, out)
    # The floor under that: the same image and `docker run`, but a bare Python that answers its
    # first request with a 200 (socket, no import of pyfunc or waitress). What pyfunc adds to a
    # container's start is the difference.
    out["floor_run_to_first_200_ms"] = run_to_first_200(docker, fn, ["--entrypoint", "python"], args, out, [
        "-c", "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
              "s.bind(('', 8080)); s.listen()\nwhile True:\n c, _ = s.accept(); c.recv(4096); "
              "c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n'); c.close()"])
    return out


def run_to_first_200(docker: str, image: str, options: list[str], args, out: dict,
                     command: list[str] | None = None) -> list[float]:
    """`docker run -d` IMAGE → its first HTTP 200 on a published port, ms; the first run discarded."""
    samples = []
    for rep in range(args.cold_reps + 1):
        port = free_port()
        name = f"pyfunc-bench-{os.getpid()}-{rep}"
        t0 = time.perf_counter()
        r = subprocess.run([docker, "run", "-d", "--rm", "--name", name,
                            f"--cpuset-cpus={args.server_core}", "-e", "PORT=8080",
                            "-p", f"127.0.0.1:{port}:8080", *options, image, *(command or [])],
                           capture_output=True, text=True)
        t = None
        if r.returncode == 0:
            req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            while time.perf_counter() - t0 < 60:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as sk:
                        sk.sendall(req)
                        if sk.recv(64)[9:12] == b"200":
                            t = time.perf_counter() - t0
                            break
                except OSError:
                    pass
                time.sleep(0.002)
        else:
            out["run_error"] = r.stderr[-300:]
        subprocess.run([docker, "rm", "-f", name], capture_output=True)
        if t is not None and rep > 0:  # first run discarded, as for processes
            samples.append(t * 1000)
    return samples


# ---------------------------------------------------------------------------------------------
# Aggregation and report
# ---------------------------------------------------------------------------------------------

METRICS = ["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "rss_peak_mb", "errors", "foreign_load",
           "load_core_foreign"]


def agg(values: list[float]) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt_num(x: float) -> str:
    if x is None:
        return "–"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def fmt_cell(a: dict | None, ref: dict | None, with_range: bool = True,
             pct: bool = False) -> str:
    if a is None:
        return "–"
    if pct:
        return f"{a['median']:.0%} (max {a['max']:.0%})"
    s = fmt_num(a["median"])
    if with_range and a["n"] > 1:
        s += f" ({fmt_num(a['min'])}–{fmt_num(a['max'])})"
    r = ratio(a["median"], ref["median"] if ref else None)
    if r is not None:
        s += f" **×{r:.2f}**"
    return s


def render_md(res: dict) -> str:
    servers = res["servers"]
    labels = {s: SERVERS[s]["label"] for s in servers}
    cells = res["cells"]
    L = []
    m = res["meta"]
    L.append("# pyfunc benchmark results\n")
    L.append(f"Made by `{m['command']}` on {res['date']} (repo commit `{(res['commit'] or 'unknown')[:7]}`"
             f"{', dirty tree' if res['dirty'] else ''}). Machine: {m['cpu']}, {m['nproc']} cores, "
             f"{m['python']}, {m['wrk']}. Load generator (wrk, 1 thread) pinned to core "
             f"{m['load_core']}, server to core {m['server_core']}. {m['rounds']} round(s) "
             f"interleaved across servers, {m['warmup']} s warm-up + {m['duration']} s measured "
             f"per cell. Waitress-based servers run {THREADS} threads. "
             "Figures are the median over rounds, (min–max) when more than one, and "
             "**×ratio** to the raw-waitress limit in the same row (for req/s higher is better; "
             "for latency, CPU and memory lower is better). See bench/README.md.\n")

    def table(title, metric, note=""):
        L.append(f"## {title}\n")
        if note:
            L.append(note + "\n")
        L.append("| scenario | " + " | ".join(labels[s] for s in servers) + " |")
        L.append("|---|" + "---|" * len(servers))
        for scn in res["scenarios"]:
            row = [scn["id"]]
            ref = cells.get(f"raw/{scn['id']}", {}).get("agg", {}).get(metric)
            for s in servers:
                c = cells.get(f"{s}/{scn['id']}")
                if c is None:
                    row.append("n/a")
                elif c.get("error"):
                    row.append("FAIL")
                else:
                    pct = metric == "foreign_load"
                    txt = fmt_cell(c["agg"].get(metric), None if pct else ref, pct=pct)
                    errs = c["agg"].get("errors")
                    if metric == "rps" and errs and errs["median"]:
                        txt += f" ⚠{errs['median']:.0f} err"
                    if metric == "rps" and not SERVERS[s]["replies"] and scn["mode"] == "ce":
                        txt += " †"
                    if metric == "rps" and any(r.get("contended") for r in c.get("rounds", [])):
                        txt += " ~"
                    row.append(txt)
            L.append("| " + " | ".join(row) + " |")
        L.append("")

    table("Throughput (requests/s)", "rps",
          "† functions-framework answers 200 \"OK\" and sends no reply event (it cannot). "
          "⚠ = median count of errors (socket errors, timeouts, non-2xx) in the measured "
          "window. ~ = at least one round was disturbed by other processes on the server core "
          "(more than --max-foreign after the retries). batch = 10 events of 100 B per request.")
    table("Latency p50 (ms)", "p50_ms")
    table("Latency p99 (ms)", "p99_ms")
    table("Server CPU per request (µs, whole process tree)", "cpu_us_per_req")
    table("Peak RSS under load (MB, whole process tree)", "rss_peak_mb")
    table("Other processes' share of the server core during the window", "foreign_load",
          "A check on the measurement, not a property of the server: the share of the server's "
          "core that other processes (not the server, not our loopback softirq) used. The same "
          "for wrk's core is in latest.json (load_core_foreign).")

    L.append("## Cold start and idle memory\n")
    L.append("Cold start: process spawn → first HTTP 200: `GET /` of the hello function, and "
             "a binary CloudEvent (100 B) POSTed to the echo function; "
             f"{m['cold_reps']} repetitions after one discarded warm-up. RSS idle: process tree "
             "0.3 s after that first 200.\n")
    L.append("| server | cold start ms, hello | cold start ms, CE echo | RSS idle MB, hello | "
             "RSS idle MB, CE echo |")
    L.append("|---|---|---|---|---|")
    cs = res["cold_start"]
    raw_cs = cs.get("raw", {})
    for s in servers:
        c = cs.get(s, {})
        row = [labels[s]]
        for key in ("samples_ms", "ce_samples_ms", "rss_idle_mb", "ce_rss_idle_mb"):
            a = agg(c.get(key, []))
            row.append(fmt_cell(a, agg(raw_cs.get(key, []))) if a else "FAIL")
        L.append("| " + " | ".join(row) + " |")
    c = cs.get("pyfunc", {})
    if c.get("req_samples_ms"):
        row = ["pyfunc, HTTP function reading `req.args`",
               fmt_cell(agg(c["req_samples_ms"]), agg(raw_cs.get("samples_ms", []))), "",
               fmt_cell(agg(c["req_rss_idle_mb"]), agg(raw_cs.get("rss_idle_mb", []))), ""]
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("The hello function (`def handler(req): return \"Hello, World!\"`) never reads `req`, so "
             "pyfunc never builds a request for it; the last row is a hello that does "
             "(`req.args.get(\"name\")`): pyfunc's own request, which imports neither Flask nor werkzeug.\n")

    if "pyfunc" in servers:
        L.append("## pyfunc against the issue #5 targets\n")
        L.append("Throughput ratio = pyfunc req/s ÷ limit req/s (medians). CPU ratio = limit CPU "
                 "per request ÷ pyfunc CPU per request: the same figure for a CPU-bound server "
                 "on one core, but much less sensitive to other load on the machine.\n")
        L.append("| target | throughput ratio | CPU ratio | met |")
        L.append("|---|---|---|---|")
        for scn in res["scenarios"]:
            if scn["kind"] in ("hello", "binary", "structured") and scn["conc"] in (8, 64) \
                    and scn["size"] in (None, "100B"):
                c = cells.get(f"pyfunc/{scn['id']}")
                r = cells.get(f"raw/{scn['id']}")
                if not c or c.get("error") or not r or r.get("error"):
                    L.append(f"| {scn['id']} ≥ 0.75 of limit | FAIL | FAIL | no |")
                    continue
                q = c["agg"]["rps"]["median"] / r["agg"]["rps"]["median"]
                e = r["agg"]["cpu_us_per_req"]["median"] / c["agg"]["cpu_us_per_req"]["median"]
                L.append(f"| {scn['id']} ≥ 0.75 of limit | ×{q:.2f} | ×{e:.2f} | "
                         f"{'yes' if q >= 0.75 else 'no'} |")
        for key, what in (("samples_ms", "hello"), ("ce_samples_ms", "CloudEvent function"),
                          ("req_samples_ms", "HTTP function reading req")):
            c = agg(cs.get("pyfunc", {}).get(key, []))
            if c:
                L.append(f"| cold start ≤ 100 ms ({what}) | {c['median']:.0f} ms | | "
                         f"{'yes' if c['median'] <= 100 else 'no'} |")
        r = agg(cs.get("pyfunc", {}).get("rss_idle_mb", []))
        if r:
            L.append(f"| RSS idle ≤ 25 MB (hello) | {r['median']:.1f} MB | | "
                     f"{'yes' if r['median'] <= 25 else 'no'} |")
        for key, what in (("ce_rss_idle_mb", "CloudEvent function"), ("req_rss_idle_mb", "HTTP function reading req")):
            r = agg(cs.get("pyfunc", {}).get(key, []))
            if r:
                L.append(f"| RSS idle ≤ 25 MB ({what}) | {r['median']:.1f} MB | | "
                         f"{'yes' if r['median'] <= 25 else 'no'} |")
        L.append("")

        L.append("## Cost against payload and batch size (CPU µs per request, c=8)\n")
        L.append("Linear cost means: CPU per request grows with bytes, per-event cost of a "
                 "batch ≈ single-event cost.\n")
        L.append("| server | 100 B | 10 KB | 1 MB | batch of 10 (per event) |")
        L.append("|---|---|---|---|---|")
        for s in servers:
            row = [labels[s]]
            for scid in ("binary-100B-c8", "binary-10KB-c8", "binary-1MB-c8"):
                c = cells.get(f"{s}/{scid}")
                v = c["agg"].get("cpu_us_per_req") if c and not c.get("error") else None
                row.append(fmt_num(v["median"]) if v else "–")
            c = cells.get(f"{s}/batch-100B-c8")
            v = c["agg"].get("cpu_us_per_req") if c and not c.get("error") else None
            row.append(f"{fmt_num(v['median'] / 10)}" if v else "n/a")
            L.append("| " + " | ".join(row) + " |")
        L.append("")

    d = res.get("docker", {})
    L.append("## Containers\n")
    if d.get("skipped") and not d.get("images"):
        L.append(f"Skipped: {d['skipped']}.\n")
    else:
        if d.get("skipped"):
            L.append(f"Skipped: {d['skipped']}.\n")
        for img, size in d.get("images", {}).items():
            L.append(f"- image `{img}`: " + (f"{size:.1f} MB" if size else "absent"))
        if d.get("run_skipped"):
            L.append(f"- docker run → first 200: skipped ({d['run_skipped']})")
        elif d.get("run_to_first_200_ms"):
            a = agg(d["run_to_first_200_ms"])
            L.append(f"- `docker run` ({d.get('function_image')}) → first HTTP 200: {a['median']:.0f} ms "
                     f"({a['min']:.0f}–{a['max']:.0f}, n={a['n']})")
            floor = agg(d.get("floor_run_to_first_200_ms") or [])
            if floor:
                L.append(f"- the floor, the same `docker run` of a bare Python answering 200: {floor['median']:.0f} ms "
                         f"({floor['min']:.0f}–{floor['max']:.0f}, n={floor['n']})")
        L.append("")

    notes = []
    for key, c in sorted(cells.items()):
        if c.get("error"):
            notes.append(f"- {key}: {c['error']}")
    for s, c in res["cold_start"].items():
        for k in ("error", "ce_error", "req_error"):
            if c.get(k):
                what = {"error": "hello", "ce_error": "ce", "req_error": "hello reading req"}[k]
                notes.append(f"- cold start {s} ({what}): {c[k]}")
    for s, e in res.get("server_errors", {}).items():
        notes.append(f"- {s}: {e}")
    if notes:
        L.append("## Failures\n")
        L.extend(n.replace("\n", " ⏎ ")[:600] for n in notes)
        L.append("")
    L.append("## Reply checks (one request per scenario before timing)\n")
    for key, c in sorted(cells.items()):
        if c.get("verify"):
            L.append(f"- {key}: {c['verify']}")
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke: 1 round, 2 s cells, 5 scenarios, 2 cold starts")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=float, help="measured seconds per cell")
    ap.add_argument("--warmup", type=float, help="warm-up seconds per cell")
    ap.add_argument("--cold-reps", type=int)
    ap.add_argument("--servers", help="comma list, default: " + ",".join(ORDER))
    ap.add_argument("--group", choices=["eventing"],
                    help="eventing: plain pyfunc against dedup memory/redis and metrics on, CE echo "
                         "with a new event per request (and one duplicate scenario); writes NAME=eventing")
    ap.add_argument("--scenarios", help="comma list of scenario ids (default: all)")
    ap.add_argument("--load-core", default="0")
    ap.add_argument("--server-core", default="1")
    ap.add_argument("--server-cores", default="",
                    help="--only workers: the cores its servers may use (default: every core)")
    ap.add_argument("--out", default=str(BENCH / "results"), help="directory for latest.*")
    ap.add_argument("--name", help="basename of the result files (default: latest; quick "
                                   "with --quick, so a smoke run leaves the full results alone)")
    ap.add_argument("--docker-base", default="pyfunc/base")
    ap.add_argument("--docker-builder", default="pyfunc/builder")
    ap.add_argument("--docker-fn", default="",
                    help="a function image serving GET / -> 200 (default: build one from "
                         "bench/servers/pyfunc/hello with image/function.Dockerfile)")
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--pyfunc-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the pyfunc server (A/B runs of its settings)")
    ap.add_argument("--max-foreign", type=float, default=0.10,
                    help="share of the server core other processes may use (default 0.10)")
    ap.add_argument("--max-wait", type=float, default=20,
                    help="seconds to wait for a quiet server core before each cell (0: never)")
    ap.add_argument("--retries", type=int, default=2,
                    help="re-measure a cell disturbed by other processes up to N times")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite NAME.md from an existing NAME.json (no measuring)")
    ap.add_argument("--only", choices=["io", "oidc", "asgi", "workers"],
                    help="io: only the I/O scenario (handlers that wait 1 s, bench/io_bench.py), "
                         "written to io.{md,json}; oidc: token verification on vs off "
                         "(bench/oidc_bench.py), written to oidc.{md,json}; "
                         "asgi: only the ASGI scenario (Starlette and func-python apps under pyfunc, uvicorn and "
                         "Hypercorn, bench/asgi_bench.py), written to asgi.{md,json}; "
                         "workers: a CPU-bound handler on 1 and 2 processes "
                         "(bench/workers_bench.py), written to workers.{md,json}")
    args = ap.parse_args()
    if args.only == "io":
        import io_bench

        os.sched_setaffinity(0, {int(args.load_core)})
        return io_bench.main(args)
    if args.only == "oidc":
        import oidc_bench

        os.sched_setaffinity(0, {int(args.load_core)})
        return oidc_bench.main(args)
    if args.only == "asgi":
        import asgi_bench

        os.sched_setaffinity(0, {int(args.load_core)})
        return asgi_bench.main(args)
    if args.only == "workers":
        import workers_bench

        os.sched_setaffinity(0, {int(args.load_core)})
        return workers_bench.main(args)
    args.name = args.name or (args.group or ("quick" if args.quick else "latest"))
    if args.render_only:
        out = Path(args.out)
        res = json.loads((out / f"{args.name}.json").read_text())
        (out / f"{args.name}.md").write_text(render_md(res))
        return 0

    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (2 if args.quick else 4)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 1)
    args.cold_reps = args.cold_reps or (2 if args.quick else 10)
    servers = args.servers.split(",") if args.servers else (EVENTING_SERVERS[:] if args.group else ORDER[:])
    if "raw" not in servers:
        servers.insert(0, "raw")  # every ratio needs the limit
    scns = scenarios(args.quick, args.group or "")
    if args.scenarios:
        want = set(args.scenarios.split(","))
        scns = [s for s in scns if s["id"] in want]

    PYFUNC_EXTRA_ENV.update(kv.split("=", 1) for kv in args.pyfunc_env)
    signal.signal(signal.SIGTERM, _stop_all)
    signal.signal(signal.SIGINT, _stop_all)
    # the runner itself stays on the load generator's core
    os.sched_setaffinity(0, {int(args.load_core)})
    started = time.time()
    wrk_version = ensure_wrk()
    redis_proc = start_bench_redis(args) if any("{redis}" in str(SERVERS[s].get("env")) for s in servers) else None
    CACHE.mkdir(parents=True, exist_ok=True)
    logdir = CACHE / "logs" / time.strftime("%Y%m%d-%H%M%S")
    logdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pyfunc-bench-"))

    # The tree measured is the one at the start (pyfunc is installed from a copy of it now).
    provenance = stamp()
    if provenance["dirty"]:
        log("warning: the working tree is dirty; the results will say so (dirty: true)")
    versions, server_errors = {}, {}
    for s in list(servers):
        try:
            versions[s] = ensure_venv(s)
        except Exception as e:  # noqa: BLE001
            log(f"{s}: venv failed, skipping it: {e}")
            server_errors[s] = f"venv: {e}"
            servers.remove(s)

    results: dict = {"cells": {}}
    raw_cells: dict[str, list[dict]] = {}
    verify_notes: dict[str, str] = {}
    failed: dict[str, str] = {}
    for rnd in range(args.rounds):
        order = servers[:]
        random.shuffle(order)
        log(f"round {rnd + 1}/{args.rounds}: {' '.join(order)}")
        for s in order:
            for mode in dict.fromkeys(x["mode"] for x in scns):
                mine = [x for x in scns if x["mode"] == mode and applicable(s, x)]
                mine = [x for x in mine if f"{s}/{x['id']}" not in failed]
                if not mine:
                    continue
                srv = Server(s, mode, args.server_core, logdir)
                try:
                    if not srv.wait_listening():
                        msg = "did not start: " + srv.log_tail(8)
                        log(f"{s} [{mode}] {msg}")
                        for x in mine:
                            failed[f"{s}/{x['id']}"] = msg
                        continue
                    time.sleep(0.2)
                    if rnd == 0:
                        verify_notes.setdefault(f"{s}/idle-{mode}",
                                                f"{rss_kb(srv.pids()) / 1024:.1f} MB")
                    for x in mine:
                        key = f"{s}/{x['id']}"
                        ok, note = verify(srv, x)
                        verify_notes.setdefault(key, note or "ok")
                        if not ok:
                            log(f"{key}: reply check FAILED: {note}")
                            failed[key] = "reply check failed: " + note
                            continue
                        reqfile = write_request_file(tmp, x)
                        try:
                            r = measure_cell(srv, reqfile, x, args)
                        except Exception as e:  # noqa: BLE001
                            log(f"{key}: load failed: {e}")
                            failed[key] = f"load failed: {e}"
                            continue
                        raw_cells.setdefault(key, []).append(r)
                        log(f"{key}: {r['rps']:.0f} req/s p50 {r['p50_ms'] or 0:.2f} ms "
                            f"p99 {r['p99_ms'] or 0:.2f} ms cpu {r['cpu_us_per_req'] or 0:.0f} µs/req "
                            f"rss {r['rss_peak_mb']:.1f} MB err {r['errors']} "
                            f"other {r['foreign_load']:.0%}/{r['load_core_foreign']:.0%}")
                finally:
                    srv.stop()

    log("cold starts")
    cold = cold_starts(servers, args.cold_reps, args, logdir)
    for s, c in cold.items():
        a, b = agg(c["samples_ms"]), agg(c["ce_samples_ms"])
        if a and b:
            log(f"cold {s}: hello {a['median']:.0f} ms, ce {b['median']:.0f} ms; idle "
                f"{statistics.median(c['rss_idle_mb']):.1f} / "
                f"{statistics.median(c['ce_rss_idle_mb']):.1f} MB")

    docker = {"skipped": "--no-docker"} if args.no_docker else docker_figures(args)

    for s in servers:
        for x in scns:
            if not applicable(s, x):
                continue
            key = f"{s}/{x['id']}"
            c: dict = {"server": s, "scenario": x["id"], "verify": verify_notes.get(key)}
            if key in failed and key not in raw_cells:
                c["error"] = failed[key]
            rounds_ = raw_cells.get(key, [])
            if rounds_:
                c["rounds"] = rounds_
                c["agg"] = {mname: agg([r[mname] for r in rounds_]) for mname in METRICS}
            elif "error" not in c:
                c["error"] = "not measured"
            results["cells"][key] = c

    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    results = {**provenance, **results}
    results.update({
        "meta": {
            "command": "python3 bench/run.py " + " ".join(sys.argv[1:]),
            "cpu": cpu, "nproc": os.cpu_count(),
            "python": "Python " + platform.python_version(), "wrk": wrk_version,
            "rounds": args.rounds, "duration": args.duration, "warmup": args.warmup,
            "cold_reps": args.cold_reps, "threads": THREADS,
            "load_core": args.load_core, "server_core": args.server_core,
            "pyfunc_env": PYFUNC_EXTRA_ENV,
            "elapsed_s": round(time.time() - started),
        },
        "servers": servers,
        "scenarios": scns,
        "cold_start": cold,
        "idle_rss_by_mode": {k: v for k, v in verify_notes.items() if "/idle-" in k},
        "docker": docker,
        "versions": {s: v["freeze"] for s, v in versions.items()},
        "server_errors": server_errors,
    })
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / f"{args.name}.md").write_text(render_md(results))
    shutil.rmtree(tmp, ignore_errors=True)
    if redis_proc is not None:
        redis_proc.terminate()
        redis_proc.wait(10)
    log(f"wrote {out / (args.name + '.md')} and .json in {time.time() - started:.0f} s "
        f"(server logs: {logdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
