"""The workers scenario of bench/run.py (``python3 bench/run.py --only workers``): a CPU-bound
handler (about 2 ms of pure Python a request) served by 1 and by 2 processes.

The GIL runs one process's Python on one core; a pod with two CPUs serves a CPU-bound function
twice as fast only with two processes. Variants, each at 1 and 2 processes, all in one run:
pyfunc (``PYFUNC_WORKERS``), functions-framework 3.10.2 (gunicorn workers: its ``WORKERS``
variable) and uvicorn 0.55.0 ``--workers`` (``WEB_CONCURRENCY``) serving a bare ASGI app with
the same loop. ``GET /`` → ``200 ok`` from ``servers/{pyfunc/cpu,ff (cpu),uvicorn}``.

Unlike the other scenarios the server is not pinned to one core: it may use every core of the
machine (``--server-cores``, default all), and wrk (1 thread, on ``--load-core``) shares one of
them; at ~2 ms a request wrk's share is small. Per cell: req/s, p50/p99, CPU per request (the
whole process tree), and the ratio to the same framework's 1-process cell of the same round.
Rounds (3; ``--quick`` 1) interleave the variants in a random order.

Results: ``bench/results/workers.{json,md}`` (or ``--out``/``--name``), stamped like the others.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from provenance import stamp

import run as bench  # bench/run.py (this file is imported by it, with bench/ on sys.path)

VARIANTS = [  # (id, server, extra environment, label)
    ("pyfunc-1", "pyfunc", {}, "pyfunc, 1 process"),
    ("pyfunc-2", "pyfunc", {"PYFUNC_WORKERS": "2"}, "pyfunc, PYFUNC_WORKERS=2"),
    ("ff-1", "ff", {"WORKERS": "1"}, "functions-framework 3.10.2 (gunicorn), 1 worker"),
    ("ff-2", "ff", {"WORKERS": "2"}, "functions-framework 3.10.2 (gunicorn), 2 workers"),
    ("uvicorn-1", "uvicorn", {"WEB_CONCURRENCY": "1"}, "uvicorn 0.55.0, 1 process"),
    ("uvicorn-2", "uvicorn", {"WEB_CONCURRENCY": "2"}, "uvicorn 0.55.0, --workers 2"),
]
CONCURRENCY = (8, 64)
REQUEST_FILE = "GET\n\n"


def measure(server: Any, reqfile: Path, conc: int, args: Any) -> dict[str, Any]:
    if args.warmup > 0:
        bench.run_wrk(server.port, reqfile, conc, args.warmup, args.load_core)
    pids = server.pids()
    c0 = bench.cpu_ticks(pids)
    w = bench.run_wrk(server.port, reqfile, conc, args.duration, args.load_core)
    c1 = bench.cpu_ticks(pids)
    n = w["requests"]
    dur = w["duration_us"] / 1e6
    errors = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_status"] + w["err_timeout"]
    return {
        "rps": (n - w["err_status"]) / dur if dur else 0.0,
        "requests": n, "errors": errors,
        "p50_ms": w["lat_p50_us"] / 1000 if n else None,
        "p99_ms": w["lat_p99_us"] / 1000 if n else None,
        "cpu_us_per_req": ((c1 - c0) / bench.CLK_TCK * 1e6 / n) if n else None,
        "processes": len(pids),
    }


def verify(server: Any) -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return "" if response.status == 200 and body == b"ok" else f"HTTP {response.status} {body[:80]!r}"


def render(res: dict[str, Any]) -> str:
    lines = ["# Workers: a CPU-bound handler on 1 and 2 processes", "",
             f"*Measured at `{res['commit'][:7] if res.get('commit') else '?'}`"
             f"{' (dirty tree)' if res.get('dirty') else ''}, {res.get('date')} · "
             f"`python3 bench/run.py --only workers` · {res['rounds']} round(s), "
             f"server on cores {res['server_cores']}, wrk on core {res['load_core']}*", "",
             "req/s (median over rounds), p50 / p99 ms, CPU µs per request; ×N = the median of the "
             "round-by-round ratio to the same framework's 1-process cell.", "",
             "| server | " + " | ".join(f"c={c}" for c in CONCURRENCY) + " |",
             "|---|" + "---|" * len(CONCURRENCY)]
    for variant in res["variants"]:
        cells = []
        for conc in CONCURRENCY:
            rounds = variant["cells"].get(str(conc), [])
            if not rounds:
                cells.append(variant.get("error", "n/a"))
                continue
            rps = statistics.median(r["rps"] for r in rounds)
            text = (f"**{rps:.0f}** ({statistics.median(r['p50_ms'] or 0 for r in rounds):.1f} / "
                    f"{statistics.median(r['p99_ms'] or 0 for r in rounds):.1f}) "
                    f"{statistics.median(r['cpu_us_per_req'] or 0 for r in rounds):.0f} µs")
            ratios = variant.get("ratios", {}).get(str(conc))
            if ratios:
                text += f" ×{statistics.median(ratios):.2f}"
            errors = sum(r["errors"] for r in rounds)
            if errors:
                text += f" ⚠ {errors} errors"
            cells.append(text)
        lines.append(f"| {variant['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(args: Any) -> int:
    rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (2 if args.quick else 4)
    args.warmup = args.warmup if args.warmup is not None else 1
    cores = args.server_cores or ",".join(str(c) for c in range(os.cpu_count() or 1))
    wanted = set(args.servers.split(",")) if args.servers else None
    variants = [v for v in VARIANTS if wanted is None or v[0] in wanted or v[1] in wanted]
    provenance = stamp()
    bench.ensure_wrk()
    logdir = bench.CACHE / "logs" / time.strftime("%Y%m%d-%H%M%S-workers")
    logdir.mkdir(parents=True, exist_ok=True)
    versions = {name: bench.ensure_venv(name) for name in sorted({v[1] for v in variants})}
    reqfile = logdir / "req-get.txt"
    reqfile.write_text(REQUEST_FILE)
    entries = {vid: {"id": vid, "server": name, "env": env, "label": label, "cells": {}, "ratios": {}}
               for vid, name, env, label in variants}
    for rnd in range(rounds):
        order = variants[:]
        random.shuffle(order)
        bench.log(f"workers round {rnd + 1}/{rounds}: {' '.join(v[0] for v in order)}")
        measured: dict[tuple[str, int], float] = {}
        for vid, name, env, label in order:
            entry = entries[vid]
            server = bench.Server(name, "cpu", cores, logdir, extra_env=env)
            try:
                if not server.wait_listening():
                    entry["error"] = "did not start: " + server.log_tail(8)
                    bench.log(f"{label}: {entry['error']}")
                    continue
                time.sleep(0.5)
                problem = verify(server)
                if problem:
                    entry["error"] = "reply check failed: " + problem
                    bench.log(f"{label}: {entry['error']}")
                    continue
                for conc in CONCURRENCY:
                    cell = measure(server, reqfile, conc, args)
                    entry["cells"].setdefault(str(conc), []).append(cell)
                    measured[(vid, conc)] = cell["rps"]
                    bench.log(f"{label} c={conc}: {cell['rps']:.0f} req/s p50 {cell['p50_ms'] or 0:.1f} ms "
                              f"cpu {cell['cpu_us_per_req'] or 0:.0f} µs/req, {cell['processes']} processes, "
                              f"err {cell['errors']}")
            finally:
                server.stop()
        for vid, _, _, _ in variants:
            base = vid.rsplit("-", 1)[0] + "-1"
            for conc in CONCURRENCY:
                if (vid, conc) in measured and measured.get((base, conc)):
                    entries[vid]["ratios"].setdefault(str(conc), []).append(
                        measured[(vid, conc)] / measured[(base, conc)])
    res = {**provenance, "scenario": "workers", "rounds": rounds, "duration": args.duration,
           "server_cores": cores, "load_core": args.load_core, "variants": list(entries.values()),
           "versions": {name: v["freeze"] for name, v in versions.items()}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name if args.name not in (None, "latest", "quick") else ("workers-quick" if args.quick else "workers")
    (out / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / f"{name}.md").write_text(render(res))
    bench.log(f"wrote {out / name}.md")
    return 0
