"""The I/O scenario of bench/run.py (``python3 bench/run.py --only io``): handlers that wait 1 s.

Knative sends a pod up to its autoscaling target of requests at once (100 by default), and
most functions wait on something (a database, an HTTP API). Each handler here waits 1 s
(``await asyncio.sleep(1)`` or ``time.sleep(1)``); a *wave* is c clients sending one request
each at the same moment, on fresh connections. A server that serves them all at once answers
the wave in about 1 s; one that serves 8 at a time needs c/8 s. Measured per server variant
and c = 8, 100, 256, 1000: the wall time of a wave (median of the waves), the p50/p99 latency
of its requests, and the server's peak RSS during the waves (and idle before them).

Variants: pyfunc with an ``async def`` and a sync handler (``PYFUNC_THREADS=4`` as in the other
scenarios, everything else default), func-python 0.8.1 (ASGI on Hypercorn: async only, a sync
sleep would stop its one event loop) and functions-framework 3.10.2 (sync only, gunicorn
gthread with its default threads). A variant whose wave takes over ``SLOW_WAVE`` seconds is
not run at the larger c (the table says so): it would only repeat the same division.

Results: ``bench/results/io.{json,md}`` (or ``--out``/``--name``), stamped like the others.
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from provenance import stamp

import run as bench  # bench/run.py (this file is imported by it, with bench/ on sys.path)

VARIANTS = [  # (server, mode, label)
    ("pyfunc", "io-async", "pyfunc, async def"),
    ("pyfunc", "io-sync", "pyfunc, sync"),
    ("funcpy", "io-async", "func-python 0.8.1, async"),
    ("ff", "io-sync", "functions-framework 3.10.2, sync"),
]
CONCURRENCY = (8, 100, 256, 1000)
WAVES = 3
SLOW_WAVE = 30.0  # seconds: larger c is skipped for a variant this slow
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


async def _one(port: int) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        writer.write(REQUEST)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 300)
        writer.close()
    except (OSError, asyncio.TimeoutError):
        return 0, time.perf_counter() - started
    status = int(data[9:12]) if data[9:12].isdigit() else 0
    return status, time.perf_counter() - started


async def _wave(port: int, conc: int) -> tuple[float, list[tuple[int, float]]]:
    started = time.perf_counter()
    answers = await asyncio.gather(*(_one(port) for _ in range(conc)))
    return time.perf_counter() - started, list(answers)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(server: Any, conc: int, waves: int) -> dict[str, Any]:
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], bench.rss_kb(server.pids()))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    walls, latencies, errors = [], [], 0
    try:
        for _ in range(waves):
            wall, answers = asyncio.run(_wave(server.port, conc))
            walls.append(wall)
            latencies += [seconds for status, seconds in answers if status == 200]
            errors += sum(1 for status, _ in answers if status != 200)
            if wall > SLOW_WAVE:
                break
    finally:
        stop.set()
        sampler.join()
    return {"conc": conc, "waves": len(walls), "wave_s": walls, "wave_median_s": statistics.median(walls),
            "p50_s": _pct(latencies, 0.5) if latencies else None,
            "p99_s": _pct(latencies, 0.99) if latencies else None,
            "errors": errors, "rss_peak_mb": peak[0] / 1024}


def render(res: dict[str, Any]) -> str:
    lines = ["# I/O scenario: handlers that wait 1 s", "",
             f"*Measured at `{res['commit'][:7] if res.get('commit') else '?'}`"
             f"{' (dirty tree)' if res.get('dirty') else ''}, {res.get('date')} · "
             f"`python3 bench/run.py --only io` · {res['waves']} waves per cell*", "",
             "Each cell: wall time of a wave of c concurrent requests (median), p50 / p99 latency, "
             "peak server RSS. 1.0 s is the floor.", "",
             "| server | idle RSS | " + " | ".join(f"c={c}" for c in CONCURRENCY) + " |",
             "|---|---|" + "---|" * len(CONCURRENCY)]
    for variant in res["variants"]:
        cells = []
        for conc in CONCURRENCY:
            cell = variant["cells"].get(str(conc))
            if cell is None:
                cells.append(variant.get("skipped", {}).get(str(conc), "n/a"))
                continue
            text = (f"**{cell['wave_median_s']:.2f} s** ({cell['p50_s'] or 0:.2f} / {cell['p99_s'] or 0:.2f}) "
                    f"{cell['rss_peak_mb']:.0f} MB")
            if cell["errors"]:
                text += f", {cell['errors']} errors"
            cells.append(text)
        lines.append(f"| {variant['label']} | {variant.get('idle_rss_mb', 0):.1f} MB | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(args: Any) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    waves = 1 if args.quick else WAVES
    wanted = set(args.servers.split(",")) if args.servers else {server for server, _, _ in VARIANTS}
    variants = [v for v in VARIANTS if v[0] in wanted]
    provenance = stamp()
    logdir = bench.CACHE / "logs" / time.strftime("%Y%m%d-%H%M%S-io")
    logdir.mkdir(parents=True, exist_ok=True)
    versions = {name: bench.ensure_venv(name) for name in sorted({v[0] for v in variants})}
    results = []
    for name, mode, label in variants:
        entry: dict[str, Any] = {"server": name, "mode": mode, "label": label, "cells": {}, "skipped": {}}
        results.append(entry)
        server = bench.Server(name, mode, args.server_core, logdir)
        try:
            if not server.wait_listening():
                entry["error"] = "did not start: " + server.log_tail(8)
                bench.log(f"{label}: {entry['error']}")
                continue
            time.sleep(0.5)
            entry["idle_rss_mb"] = bench.rss_kb(server.pids()) / 1024
            slow = None
            for conc in CONCURRENCY:
                if slow is not None:
                    entry["skipped"][str(conc)] = f"skipped (c={slow[0]}: {slow[1]:.0f} s a wave)"
                    continue
                cell = measure(server, conc, waves)
                entry["cells"][str(conc)] = cell
                bench.log(f"{label} c={conc}: wave {cell['wave_median_s']:.2f} s p50 {cell['p50_s'] or 0:.2f} "
                          f"p99 {cell['p99_s'] or 0:.2f} rss {cell['rss_peak_mb']:.1f} MB err {cell['errors']}")
                if cell["wave_median_s"] > SLOW_WAVE:
                    slow = (conc, cell["wave_median_s"])
        finally:
            server.stop()
    res = {**provenance, "scenario": "io", "waves": waves, "variants": results,
           "versions": {name: v["freeze"] for name, v in versions.items()}}
    out = Path(args.out)
    name = args.name if args.name not in (None, "latest", "quick") else ("io-quick" if args.quick else "io")
    (out / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / f"{name}.md").write_text(render(res))
    bench.log(f"wrote {out / name}.md")
    return 0
