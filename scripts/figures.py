#!/usr/bin/env python3
"""Render the figures quoted by README.md and docs/ from the results files, so they are never older
than the measurement behind them.

Every figures block in the docs sits between markers; this script owns what is in between:

    <!-- figures:bench-throughput -->
    ...generated, with the commit and date of the results file it came from...
    <!-- /figures -->

    python3 scripts/figures.py           rewrite every block from bench/, tests/reliability/, e2e/ results
    python3 scripts/figures.py --check   exit 1 if a block differs from what the results say (CI: tests/test_figures.py)
    python3 scripts/figures.py --stale   fail on results measured on a dirty tree or at a commit not in
                                         this branch's history; warn about ones measured before the last
                                         runtime/ change, or with no commit (exit 0 for warnings alone)

Stdlib only, so it runs with any python3 and without the project's venv.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
BENCH = "bench/results/latest.json"
BENCH_IO = "bench/results/io.json"
BENCH_EVENTING = "bench/results/eventing.json"
BENCH_OIDC = "bench/results/oidc.json"
BENCH_INSTRUCTIONS = "bench/results/instructions.json"
BENCH_ASGI = "bench/results/asgi.json"
CONTAINERS = "e2e/results/containers.json"
CLUSTER = "e2e/results/cluster.json"
POD_SIZING = "e2e/results/pod_sizing.json"
RELIABILITY = "tests/reliability/results"
RESULTS_GLOBS = ["bench/results/*.json", "bench/results/*/*.json", f"{RELIABILITY}/*.json", "e2e/results/*.json"]
# Files whose figures are generated. docs/quickstart.md (and the README's Quickstart) quote none.
DOCS = ["README.md", "docs/reliability.md", "docs/security.md", "bench/README.md", "docs/delivery.md",
        "docs/serving.md"]
BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)
PROVENANCE = ("commit", "dirty", "date")

# bench/run.py's server keys, in the README's column order, and the pip name that gives the version.
SERVERS = {"raw": ("raw waitress", None), "pyfunc": ("**pyfunc**", None),
           "funcpy": ("func-python", "func-python"), "ff": ("functions-framework", "functions-framework"),
           "flask": ("Flask + SDK", None), "pyfunc010": ("pyfunc-invoker 0.1.0", None)}
KINDS = {"hello": "HTTP hello", "binary": "binary CloudEvent echo", "structured": "structured CloudEvent echo",
         "batch": "batch of 10 events", "query": "HTTP function reading `req.args`",
         "json": "HTTP JSON echo, `req.get_json()`"}


# ---- reading results --------------------------------------------------------------------------------


def load(rel: str) -> Optional[dict[str, Any]]:
    """A results file, or None when it was never written (its block then says how to produce it)."""
    path = REPO / rel
    return json.loads(path.read_text()) if path.exists() else None


def measured(data: dict[str, Any]) -> str:
    """`7afbd59` (dirty tree), 2026-11-25: what every figure is shown next to."""
    commit = f"`{data['commit'][:7]}`" if data.get("commit") else "no commit recorded"
    dirty = " (dirty tree)" if data.get("dirty") else ""
    return f"{commit}{dirty}, {data['date'][:10] if data.get('date') else 'no date recorded'}"


def source_line(rel: str, data: dict[str, Any]) -> str:
    return f"*Measured at {measured(data)} · `{rel}`*"


def missing(rel: str, how: str) -> str:
    return f"*Not measured yet: `{rel}` is written by {how}; then run `python3 scripts/figures.py`.*\n"


# ---- bench ------------------------------------------------------------------------------------------


def median(values: list[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def server_label(res: dict[str, Any], server: str) -> str:
    """The column title, with the version pip actually installed for that run."""
    label, package = SERVERS[server]
    for line in res.get("versions", {}).get(server, []) if package else []:
        if line.lower().startswith(package + "=="):
            return f"{label} {line.split('==')[1]}"
    return label


def rps(res: dict[str, Any], server: str, scenario: str) -> Optional[float]:
    cell = res["cells"].get(f"{server}/{scenario}")
    return None if not cell or cell.get("error") else cell["agg"]["rps"]["median"]


def cpu(res: dict[str, Any], server: str, scenario: str) -> Optional[float]:
    cell = res["cells"].get(f"{server}/{scenario}")
    return None if not cell or cell.get("error") else cell["agg"]["cpu_us_per_req"]["median"]


def ratio(res: dict[str, Any], server: str, scenario: str) -> str:
    """Throughput of a server ÷ the raw-waitress limit, in the same scenario and run."""
    mine, limit = rps(res, server, scenario), rps(res, "raw", scenario)
    if f"{server}/{scenario}" not in res["cells"]:
        return "n/a"
    if mine is None or not limit:
        return "FAIL"
    dagger = " †" if server == "ff" and not scenario.startswith("hello") else ""
    return f"{mine / limit:.2f}{dagger}"


def bench_throughput() -> str:
    res = load(BENCH)
    if res is None:
        return missing(BENCH, "`python3 bench/run.py`")
    servers = [s for s in SERVERS if s in res["servers"]]
    rows = ["| scenario | " + " | ".join(server_label(res, s) for s in servers) + " |",
            "|---|" + "---|" * len(servers)]
    for scn in res["scenarios"]:
        size = ", " + re.sub(r"(\d+)", r"\1 ", scn["size"]) if scn["size"] else ""
        cells = [f"{rps(res, 'raw', scn['id']) or 0:,.0f} req/s"]
        cells += [f"**{ratio(res, s, scn['id'])}**" if s == "pyfunc" else ratio(res, s, scn["id"])
                  for s in servers[1:]]
        rows.append(f"| {KINDS[scn['kind']]}{size}, c{scn['conc']} | " + " | ".join(cells) + " |")
    targets = [scn["id"] for scn in res["scenarios"]
               if scn["kind"] in ("hello", "binary", "structured") and scn["conc"] in (8, 64) and scn["size"] in
               (None, "100B")]
    cpu_ratios = [cpu(res, "raw", t) / cpu(res, "pyfunc", t) for t in targets
                  if cpu(res, "raw", t) and cpu(res, "pyfunc", t)]
    note = (f"CPU per request, limit ÷ pyfunc, over the target rows: {min(cpu_ratios):.2f}–{max(cpu_ratios):.2f}."
            if cpu_ratios else "")
    return "\n".join(rows) + f"\n\n{note}\n{source_line(BENCH, res)}\n"


def bench_cold_start() -> str:
    res = load(BENCH)
    if res is None:
        return missing(BENCH, "`python3 bench/run.py`")
    rows = ["| server | cold start, HTTP hello | cold start, CloudEvent function | RSS idle, HTTP hello | "
            "RSS idle, CloudEvent function |", "|---|---|---|---|---|"]

    def fmt(values: list[float], unit: str) -> str:
        m = median(values)
        return "–" if m is None else (f"{m:.0f} ms" if unit == "ms" else f"{m:.1f} MB")

    for server in (s for s in SERVERS if s in res["cold_start"]):
        c = res["cold_start"][server]
        name = server_label(res, server)
        rows.append(f"| {name} | {fmt(c['samples_ms'], 'ms')} | {fmt(c['ce_samples_ms'], 'ms')} | "
                    f"{fmt(c['rss_idle_mb'], 'MB')} | {fmt(c['ce_rss_idle_mb'], 'MB')} |")
        if c.get("req_samples_ms"):
            rows.append(f"| {name.strip('*')}, HTTP function that reads `req.args` | "
                        f"{fmt(c['req_samples_ms'], 'ms')} | | {fmt(c['req_rss_idle_mb'], 'MB')} | |")
    reps = res["meta"].get("cold_reps")
    return ("\n".join(rows) + f"\n\nProcess spawn → first HTTP 200, median of {reps}; RSS of the process tree "
            f"0.3 s later.\n{source_line(BENCH, res)}\n")


def bench_cost() -> str:
    res = load(BENCH)
    if res is None:
        return missing(BENCH, "`python3 bench/run.py`")

    def us(server: str, scenario: str, per: int = 1) -> str:
        value = cpu(res, server, scenario)
        return "–" if value is None else (f"{value / per / 1000:.1f} ms" if value / per >= 1000
                                          else f"{value / per:.0f} µs")

    scns = ("binary-100B-c8", "binary-10KB-c8", "binary-1MB-c8")
    mine, limit = [us("pyfunc", s) for s in scns], [us("raw", s) for s in scns]
    return (f"CPU per request (c8): {mine[0]} at 100 B, {mine[1]} at 10 KB, {mine[2]} at 1 MB "
            f"(the limit: {', '.join(limit)}); a batch of 10 costs {us('pyfunc', 'batch-100B-c8', 10)} per event "
            f"(the limit: {us('raw', 'batch-100B-c8', 10)}).\n{source_line(BENCH, res)}\n")


def bench_compare() -> str:
    res = load(BENCH)
    if res is None:
        return missing(BENCH, "`python3 bench/run.py`")
    servers = [s for s in ("pyfunc", "ff", "funcpy", "pyfunc010") if s in res["servers"]]
    cold = res["cold_start"]

    def pair(server: str, a: str, b: str) -> str:
        return f"{ratio(res, server, a)} / {ratio(res, server, b)}".replace(" †", "") + (
            " (no reply)" if server == "ff" and not a.startswith("hello") else "")

    def cold_ms(server: str) -> str:
        m = median(cold.get(server, {}).get("ce_samples_ms", []))
        return "–" if m is None else f"{m:.0f} ms"

    def rss(server: str) -> str:
        m = median(cold.get(server, {}).get("ce_rss_idle_mb", []))
        return "–" if m is None else f"{m:.1f} MB"

    rows = [("CE echo throughput, ratio to the limit (c8 / c64)",
             lambda s: pair(s, "binary-100B-c8", "binary-100B-c64")),
            ("HTTP hello throughput, ratio to the limit (c8 / c64)", lambda s: pair(s, "hello-c8", "hello-c64")),
            ("cold start, CloudEvent function", cold_ms), ("idle RSS, CloudEvent function", rss)]
    lines = ["| measured | " + " | ".join(server_label(res, s) for s in servers) + " |",
             "|---|" + "---|" * len(servers)]
    lines += [f"| {what} | " + " | ".join(f(s) for s in servers) + " |" for what, f in rows]
    return "\n".join(lines) + f"\n\n{source_line(BENCH, res)}\n"


def bench_run_time() -> str:
    res = load(BENCH)
    if res is None:
        return missing(BENCH, "`python3 bench/run.py`")
    m = res["meta"]
    return (f"The last full run (`{m['command'].strip()}`: {m['rounds']} rounds, {len(res['servers'])} servers, "
            f"{len(res['scenarios'])} scenarios) took {m['elapsed_s'] / 60:.0f} min on {m['nproc']} cores.\n"
            f"{source_line(BENCH, res)}\n")


def bench_io() -> str:
    """Waves of c concurrent requests to handlers that wait 1 s: wall time per wave (1.0 s is the floor)."""
    res = load(BENCH_IO)
    if res is None:
        return missing(BENCH_IO, "`python3 bench/run.py --only io`")
    concurrency = sorted({int(c) for v in res["variants"] for c in v["cells"]} |
                         {int(c) for v in res["variants"] for c in v.get("skipped", {})})
    rows = ["| server | idle RSS | " + " | ".join(f"c={c}" for c in concurrency) + " |",
            "|---|---|" + "---|" * len(concurrency)]
    for variant in res["variants"]:
        cells = []
        for conc in concurrency:
            cell = variant["cells"].get(str(conc))
            if cell is None:
                cells.append("not run" if str(conc) not in variant.get("skipped", {}) else "skipped (too slow)")
                continue
            errors = f", {cell['errors']} errors" if cell["errors"] else ""
            cells.append(f"**{cell['wave_median_s']:.2f} s** (p99 {cell['p99_s'] or 0:.2f} s, "
                         f"{cell['rss_peak_mb']:.0f} MB){errors}")
        idle = f"{variant['idle_rss_mb']:.1f} MB" if variant.get("idle_rss_mb") else "n/a"
        rows.append(f"| {variant['label']} | {idle} | " + " | ".join(cells) + " |")
    return ("\n".join(rows) + f"\n\nWall time of a wave of c concurrent requests (median of {res['waves']} waves), "
            f"p99 latency, peak RSS of the server.\n{source_line(BENCH_IO, res)}\n")


def bench_asgi() -> str:
    """ASGI code under pyfunc and under uvicorn, Hypercorn, func-python (bench/asgi_bench.py): a row per app."""
    res = load(BENCH_ASGI)
    if res is None:
        return missing(BENCH_ASGI, "`python3 bench/run.py --only asgi`")
    apps = {"starlette-json": ("ASGI app (Starlette JSON echo, 100 B)",
                               [("asgi-pyfunc", "**pyfunc**"), ("asgi-uvicorn", "uvicorn 0.35.0"),
                                ("asgi-hypercorn", "Hypercorn 0.17.3")]),
            "func-http": ("func-python function (func's HTTP template)",
                          [("asgi-pyfunc", "**pyfunc**"), ("funcpy", "func-python 0.8.1 (Hypercorn)"),
                           ("asgi-uvicorn", "func-python's middleware on uvicorn 0.35.0")])}
    rows = ["| app | server | req/s c=8 | req/s c=64 | pyfunc ÷ it (c=8 / c=64) | cold start | idle RSS |",
            "|---|---|---|---|---|---|---|"]
    for app, (title, servers) in apps.items():
        ours = res["cells"].get(f"asgi-pyfunc/{app}", {})
        for name, label in servers:
            cells = res["cells"].get(f"{name}/{app}", {})
            figures, ratios = [], []
            for conc in ("8", "64"):
                cell, mine = cells.get(conc) or {}, ours.get(conc) or {}
                disturbed = any(r.get("contended") for r in cell.get("rounds", []))
                figures.append(f"{cell['rps']:,.0f}{' ~' if disturbed else ''}" if cell.get("rps") else "FAIL")
                ratios.append(f"{mine['rps'] / cell['rps']:.2f}" if cell.get("rps") and mine.get("rps") else "–")
            cold = res["cold"].get(f"{name}/{app}", {})
            rows.append(f"| {title} | {label} | {figures[0]} | {figures[1]} | "
                        f"{'–' if name == 'asgi-pyfunc' else ' / '.join(ratios)} | "
                        f"{cold['cold_ms']:.0f} ms | {cold['rss_mb']:.1f} MB |" if cold.get("cold_ms") else
                        f"| {title} | {label} | {figures[0]} | {figures[1]} | – | FAIL | FAIL |")
    return ("\n".join(rows) + "\n\nThe same app, the same wrk load and cores; ~ = at least one round was disturbed "
            "by other processes on the cores (bench/README.md, Method): compare such cells with care. "
            "Cold start is spawn → first 200, idle RSS "
            f"0.3 s after it (median of {len(next(iter(res['cold'].values()), {}).get('samples_ms', []))} starts).\n"
            f"{source_line(BENCH_ASGI, res)}\n")


def bench_instructions() -> str:
    """Instructions per request (callgrind): where pyfunc's distance to the limit is, app or server."""
    res = load(BENCH_INSTRUCTIONS)
    if res is None:
        return missing(BENCH_INSTRUCTIONS, "`python3 bench/instructions.py`")

    def cell(row: dict[str, Any], part: str, who: str) -> str:
        value = row.get(part, {}).get(who)
        if value is None:
            return "–"
        if who == "raw":
            return f"{value / 1000:,.0f}k"
        return f"{value / 1000:,.0f}k (**×{row[part]['raw'] / value:.2f}**)"

    # Only the parts this run measured: a column, and the caption's sentence, for each.
    parts = [part for part in ("app", "server") if any(row.get(part) for row in res["scenarios"].values())]
    titles = {"app": ("app: limit", "app: pyfunc"), "server": ("whole server: limit", "whole server: pyfunc")}
    rows = ["| scenario | " + " | ".join(t for part in parts for t in titles[part]) + " |",
            "|---|" + "---|---|" * len(parts)]
    for name, row in res["scenarios"].items():
        rows.append(f"| {name} | " + " | ".join(f"{cell(row, part, 'raw')} | {cell(row, part, 'pyfunc')}"
                                               for part in parts) + " |")
    what = {"app": f"the WSGI app alone, called in-process ({res['app_calls']} calls)",
            "server": f"the whole process serving {res['server_requests']} requests from {res['clients']} "
                      f"keep-alive clients"}
    return ("\n".join(rows) + "\n\nUser-space instructions per request under callgrind (×: limit ÷ pyfunc, higher "
            f"is better): {' and '.join(what[part] for part in parts) or 'nothing measured'}.\n"
            f"{source_line(BENCH_INSTRUCTIONS, res)}\n")


def bench_eventing() -> str:
    """What the delivery features cost: each variant's throughput ÷ plain pyfunc's, same run."""
    res = load(BENCH_EVENTING)
    if res is None:
        return missing(BENCH_EVENTING, "`python3 bench/run.py --group eventing`")
    variants = [s for s in res["servers"] if s.startswith("pyfunc-")]
    rows = ["| scenario | pyfunc | " + " | ".join(v.replace("pyfunc-", "+ ").replace("-", " ") for v in variants)
            + " |", "|---|---|" + "---|" * len(variants)]
    for scn in res["scenarios"]:
        plain = rps(res, "pyfunc", scn["id"])
        cells = [f"{plain:,.0f} req/s" if plain else "FAIL"]
        for variant in variants:
            mine = rps(res, variant, scn["id"])
            cells.append(f"{mine / plain:.2f}" if mine and plain else "FAIL")
        what = scn["id"].replace("-new", ", a new event per request").replace("binary-100B-c8", "binary-100B-c8")
        if not scn.get("unique"):
            what += ", one id (duplicates: the replay path)"
        rows.append(f"| {what} | " + " | ".join(cells) + " |")
    return ("\n".join(rows) + "\n\nThroughput of each variant ÷ plain pyfunc's in the same run (higher is "
            f"better; 1.00 = no cost).\n{source_line(BENCH_EVENTING, res)}\n")


def bench_oidc() -> str:
    """What token verification costs: throughput with PYFUNC_OIDC_AUDIENCE ÷ plain pyfunc's, same round."""
    res = load(BENCH_OIDC)
    if res is None:
        return missing(BENCH_OIDC, "`python3 bench/run.py --only oidc`")
    rows = ["| scenario | pyfunc | one token, reused (remembered) | a fresh token each request (verified in full) |",
            "|---|---|---|---|"]
    for scenario, cell in res["cells"].items():
        rows.append(f"| {scenario} | {cell['plain_rps']:,.0f} req/s | {cell['oidc_ratio']:.2f} "
                    f"({cell['oidc_cpu_us'] - cell['plain_cpu_us']:+.0f} µs CPU) | {cell['fresh_ratio']:.2f} "
                    f"({cell['fresh_cpu_us'] - cell['plain_cpu_us']:+.0f} µs CPU) |")
    contended = (" Some cells were measured while other processes used the server's core, so the check's "
                 "own CPU time is the steadier figure.") if any(
        cell["contended"] for cell in res["cells"].values()) else ""
    check = res["check_cpu_us"]
    return ("\n".join(rows) + "\n\nThroughput with verification ÷ plain pyfunc's in the same round (median of "
            f"{res['rounds']}; 1.00 = no cost), and the server CPU per request it adds.{contended} The check "
            f"alone (`Verifier.refuse` in a loop, one thread, CPU time): {check['one_token_us']:.1f} µs for a "
            f"remembered token, {check['fresh_token_us']:.0f} µs for a token verified in full.\n"
            f"{source_line(BENCH_OIDC, res)}\n")


def metrics_cost() -> str:
    """What ``PYFUNC_METRICS`` costs at start: the eventing bench's cold starts, metrics on and off."""
    res = load(BENCH_EVENTING)
    if res is None:
        return missing(BENCH_EVENTING, "`python3 bench/run.py --group eventing`")
    cold = res["cold_start"]

    def figure(server: str, key: str) -> Optional[float]:
        return median(cold.get(server, {}).get(key, []))

    off_ms, on_ms = figure("pyfunc", "ce_samples_ms"), figure("pyfunc-metrics", "ce_samples_ms")
    off_mb, on_mb = figure("pyfunc", "ce_rss_idle_mb"), figure("pyfunc-metrics", "ce_rss_idle_mb")
    if None in (off_ms, on_ms, off_mb, on_mb):
        return f"*`{BENCH_EVENTING}` has no cold start of pyfunc with and without metrics.*\n"
    return (f"A CloudEvent function's cold start: {off_ms:.0f} ms with metrics off, {on_ms:.0f} ms on; its idle "
            f"RSS {off_mb:.1f} MB off, {on_mb:.1f} MB on (medians of {res['meta'].get('cold_reps', '?')} starts).\n"
            f"{source_line(BENCH_EVENTING, res)}\n")


def serving_memory() -> str:
    """What a waiting request holds: the I/O bench's peak RSS over idle, per request in the wave."""
    res = load(BENCH_IO)
    if res is None:
        return missing(BENCH_IO, "`python3 bench/run.py --only io`")
    lines = []
    for variant in res["variants"]:
        label, idle = variant["label"], variant.get("idle_rss_mb")
        if not label.startswith("pyfunc") or not idle or not variant["cells"]:
            continue
        conc = max(variant["cells"], key=int)
        cell = variant["cells"][conc]
        per = (cell["rss_peak_mb"] - idle) * 1024 / int(conc)
        lines.append(f"- {label}: about {per:.0f} KB per waiting request (peak RSS {cell['rss_peak_mb']:.1f} MB "
                     f"with {conc} requests waiting 1 s, {idle:.1f} MB idle).")
    return ("\n".join(lines) + f"\n\n{source_line(BENCH_IO, res)}\n") if lines else (
        f"*`{BENCH_IO}` has no pyfunc variant.*\n")


# ---- containers (e2e) -------------------------------------------------------------------------------


def bench_docker() -> str:
    """The bench also times images and `docker run` (when docker is up): shown until the e2e has."""
    res = load(BENCH)
    docker = res.get("docker", {}) if res else {}
    if not docker.get("images"):
        return ""
    sizes = ", ".join(f"`{image}` {size:.1f} MB" for image, size in docker["images"].items() if size)
    run = median(docker.get("run_to_first_200_ms", []))
    floor = median(docker.get("floor_run_to_first_200_ms", []))
    run_text = f"; `docker run` → first HTTP 200: {run:.0f} ms (median)" if run is not None else ""
    if run is not None and floor is not None:
        run_text += (f", of which {floor:.0f} ms is the floor (the same `docker run` of a bare Python "
                     f"answering 200) and {run - floor:.0f} ms pyfunc's start")
    return f"The bench's container figures: {sizes}{run_text}.\n{source_line(BENCH, res)}\n"


def containers() -> str:
    data = load(CONTAINERS)
    if data is None:
        return missing(CONTAINERS, "a passing e2e run (`scripts/test.sh`)") + "\n" + bench_docker()
    rows = [("`pyfunc/base` image", f"{data['base_image_mb']} MB"),
            ("a function image on top of the base",
             f"{data['function_image_added_mb.cloudevent-echo']} MB (cloudevent-echo), "
             f"{data['function_image_added_mb.with-requirements']} MB with `humanize`"),
            ("first `pack build` (cloudevent-echo)", f"{data['first_build_s.cloudevent-echo']} s"),
            ("first build with a `requirements.txt` from PyPI", f"{data['first_build_s.with-requirements']} s"),
            ("first build with vendored wheels, `--network none`",
             f"{data['first_build_s.vendored-wheels (offline)']} s"),
            ("rebuild, no change / only `handler.py` edited",
             f"{data['rebuild_s.with-requirements.no-change']} s / "
             f"{data['rebuild_s.with-requirements.handler-only']} s"),
            ("`docker run` → first 200 (median of 3)",
             f"{data['cold_start_s.cloudevent-echo median of 3']:.2f} s"),
            ("`docker stop` with a 3 s request in flight",
             f"the request answered, exit 0, in {data['sigterm_drain_stop_s (3 s request in flight)']} s")]
    table = ["| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(table) + f"\n\n{source_line(CONTAINERS, data)}\n"


def cluster() -> str:
    """The cluster e2e (e2e/cluster on scripts/cluster.sh): scale from zero, pyfunc vs func-python."""
    data = load(CLUSTER)
    if data is None:
        return missing(CLUSTER, "a passing cluster e2e run (`scripts/test.sh`, or `scripts/cluster.sh up` then "
                       "`pytest -m cluster`)")

    def runs(key: str) -> str:
        return ", ".join(f"{v:.2f}" for v in data.get(f"{key}.all", []))

    rows = [("scale from zero → 200 through ingress + activator, **pyfunc** (median of 5)",
             f"{data['scale_from_zero_s.pyfunc']:.2f} s ({runs('scale_from_zero_s.pyfunc')})"),
            ("the same function on func-python 0.8.1, same manifest (median of 5)",
             f"{data['scale_from_zero_s.func-python']:.2f} s ({runs('scale_from_zero_s.func-python')})"
             + (f"; {data['scale_from_zero.func-python.failed_requests']} more cold request(s) failed"
                if data.get("scale_from_zero.func-python.failed_requests") else "")),
            ("40 concurrent 3 s async requests, target 4",
             f"{data['autoscale.requests_ok']} answered, 0 failed, up to {data['autoscale.max_pods']} pods, "
             "then back to zero"),
            ("a roll-out under 4 steady clients",
             f"{data['rollout.failed']} failed of {data['rollout.requests']} requests")]
    if "inflight_60s_request_during_pod_deletion" in data:
        rows.append(("pod deleted with a 60 s request in flight",
                     f"answered {data['inflight_60s_request_during_pod_deletion']}"))
    versions = (f"Kubernetes v{data.get('kubernetes')}, Knative Serving/Eventing v{data.get('knative_serving')}/"
                f"v{data.get('knative_eventing')}, {data.get('ingress')}")
    table = ["| on the cluster | measured |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return f"{versions}; one node, 2 cores shared with the test run.\n\n" + "\n".join(table) + \
        f"\n\n{source_line(CLUSTER, data)}\n"


def pod_sizing() -> str:
    """docs/serving.md's "Sizing a pod": memory per body in flight, bodies a limit holds (e2e/test_pod_limits.py)."""
    data = load(POD_SIZING)
    if data is None or "per_body" not in data:
        return missing(POD_SIZING, "`PYFUNC_RECORD=1 pytest -m e2e e2e/test_pod_limits.py`")

    def mib(value: float) -> str:
        return f"{value / (1 << 20):.1f} MiB"

    rows = ["| body in flight | container memory (cgroup) per body | `/tmp` (tmpfs) per body | process RSS per body |",
            "|---|---|---|---|"]
    for label, row in sorted(data["per_body"].items(), key=lambda item: item[1]["body_bytes"]):
        rows.append(f"| {label.replace('KiB', ' KiB').replace('MiB', ' MiB')} | {mib(row['cgroup_bytes'])} | "
                    f"{mib(row['tmp_bytes'])} | {mib(row['rss_bytes'])} |")
    idle = next(iter(data["per_body"].values()))
    text = "\n".join(rows) + (f"\n\nAn idle server (after its first request): {mib(idle['idle_cgroup_bytes'])} of "
                              f"container memory, {mib(idle['idle_rss_bytes'])} RSS. Each body held by a handler "
                              "(8 at once, `PYFUNC_MAX_BODY_BYTES_IN_FLIGHT=0`), in a read-only container with "
                              "`/tmp` on tmpfs; a body under 512 KiB stays in memory, a larger one is in `/tmp` and, "
                              "once the handler runs, in memory too.\n\n")
    most = data.get("most_1MiB_bodies_held", {})
    budget = data.get("default_budget_bytes", {})
    text += ("| `--memory` | 1 MiB bodies held at once before the OOM kill, no budget | default budget (`auto`) |\n"
             "|---|---|---|\n")
    for limit, row in most.items():
        # The e2e adds 4 bodies at a time until the container is killed or the next 4 do not all
        # reach the handler within 90 s (the kernel reclaiming at the limit: stalled, not killed).
        killed = "killed beyond that" if row.get("oom_killed") else "beyond that, new bodies stalled; not killed"
        cell = mib(budget[limit]) if limit in budget else "–"
        text += f"| {limit.replace('MiB', ' MiB')} | {row['held']} ({killed}) | {cell} |\n"
    flood = data.get("flood_10MiB_x40_in_128MiB")
    if flood:
        answered = ", ".join(f"{count} × {status}" for status, count in flood.items())
        text += (f"\nA flood of 40 requests of 10 MiB at once into `--memory=128m` with the default budget: "
                 f"{answered}; the container kept running.\n")
    return text + f"\n{source_line(POD_SIZING, data)}\n"


def image_sizes() -> str:
    data = load(CONTAINERS)
    if data is None:
        return missing(CONTAINERS, "a passing e2e run (`scripts/test.sh`)")
    return (f"| image | size |\n|---|---|\n| `pyfunc/base` | {data['base_image_mb']} MB |\n"
            f"| `pyfunc/build` | {data['build_image_mb']} MB |\n| `pyfunc/builder` | {data['builder_image_mb']} MB |\n"
            f"| a function image, over the base | cloudevent-echo "
            f"{data['function_image_added_mb.cloudevent-echo']} MB, with-requirements (`humanize`) "
            f"{data['function_image_added_mb.with-requirements']} MB |\n\n{source_line(CONTAINERS, data)}\n")


# ---- reliability ------------------------------------------------------------------------------------


def _fuzz(d: dict[str, Any]) -> str:
    fives = d.get("server_log_5xx", int(bool(d.get("server_log_has_5xx"))))
    per_mode = ", ".join(f"{m} {'/'.join(f'{n:,}×{s}' for s, n in sorted(st.items()))}"
                         for m, st in sorted(d["statuses"].items()))
    return f"{d['total_examples']:,} examples, 5xx in the server log: {fives}; statuses: {per_mode}"


def _soak(d: dict[str, Any]) -> str:
    text = (f"{d['requests']:,} requests in {d['seconds']:.0f} s ({d['requests_per_second']:,} req/s, "
            f"{d['client_threads']} client threads), {d['unexpected_errors']} unexpected errors "
            f"({d['by_kind'].get('malformed', 0):,} malformed requests got their 400); RSS {d['rss_start_mb']} → "
            f"{d['rss_end_mb']} MiB (max {d['rss_max_mb']}); least-squares slope over the second half "
            f"**{d['rss_slope_second_half_bytes_per_10k']:,} bytes per 10,000 requests** "
            f"(bound {d.get('max_slope_bytes_per_10k', 16 * 1024) / 1024:.0f} KiB)")
    return text + f"; server exit {d['server_exit_code']}, {d['server_log_tracebacks']} tracebacks in its log"


def _overload(d: dict[str, Any]) -> str:
    out = d["outcomes"]
    return (f"{d['clients']} clients vs ~{d['max_concurrency'] * 1000 / d['handler_ms']:.0f} req/s capacity "
            f"({d['threads']} threads, max concurrency {d['max_concurrency']}, connection limit "
            f"{d['connection_limit']}, {d['handler_ms']} ms handler), {d['load_seconds']} s: {d['requests']:,} "
            f"requests, {out.get('200', 0):,} × 200 and {out.get('429', 0):,} × 429 (shed rate "
            f"{d['shed_rate']:.0%}), {len(d['failures'])} failures; accepted latency p50 "
            f"{d['accepted_latency_p50_s']} s, p99 {d['accepted_latency_p99_s']} s, max "
            f"{d['accepted_latency_max_s']} s; the first request after the load: {d['first_request_after_load']}, "
            f"{d['recovery_seconds']} s after it stopped")


def _drain(d: dict[str, Any]) -> str:
    out = d["outcomes"]
    return (f"SIGTERM during overload: {out.get('200', 0):,} completed with the right body, "
            f"{out.get('refused', 0):,} refused, {len(d['failures'])} lost; exit {d['exit_code']}")


RELIABILITY_ROWS: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
    ("hypothesis fuzz, CI form", "fuzz.json", _fuzz),
    ("hypothesis fuzz, long form", "fuzz-long.json", _fuzz),
    ("atheris over `codec.decode_request`", "atheris.json",
     lambda d: f"{d['runs']:,} runs in {d['seconds']:.0f} s, {d['crashes']} crashes"),
    ("soak, CI form", "soak.json", _soak),
    ("soak, long form", "soak-long.json", _soak),  # the 1M test, or soak.py --requests 1000000
    ("overload", "overload.json", _overload),
    ("drain during overload", "drain-overload.json", _drain),
]


def reliability() -> str:
    rows = ["| what | figure | measured at |", "| --- | --- | --- |"]
    for what, name, render in RELIABILITY_ROWS:
        rel = f"{RELIABILITY}/{name}"
        data = load(rel)
        figure = render(data) if data else "not measured yet"
        rows.append(f"| {what} (`{name}`) | {figure} | {measured(data) if data else '–'} |")
    return "\n".join(rows) + "\n"


RENDERERS: dict[str, Callable[[], str]] = {
    "bench-throughput": bench_throughput, "bench-cold-start": bench_cold_start, "bench-cost": bench_cost,
    "bench-compare": bench_compare, "bench-run-time": bench_run_time, "containers": containers,
    "image-sizes": image_sizes, "reliability": reliability, "bench-io": bench_io,
    "bench-eventing": bench_eventing, "bench-oidc": bench_oidc, "bench-instructions": bench_instructions,
    "bench-docker": bench_docker, "metrics-cost": metrics_cost, "serving-memory": serving_memory,
    "cluster": cluster, "bench-asgi": bench_asgi, "pod-sizing": pod_sizing,
}


# ---- the docs ---------------------------------------------------------------------------------------


def render(text: str) -> str:
    """TEXT with every figures block re-rendered; an unknown block name is an error, not a silent skip."""
    def one(m: re.Match) -> str:
        if m["name"] not in RENDERERS:
            raise SystemExit(f"unknown figures block {m['name']!r}; known: {', '.join(RENDERERS)}")
        return m.group(1) + RENDERERS[m["name"]]() + m.group(4)
    return BLOCK.sub(one, text)


def blocks() -> dict[str, list[str]]:
    """Block name → the docs it appears in (tests check that every renderer is used somewhere)."""
    found: dict[str, list[str]] = {}
    for doc in DOCS:
        for m in BLOCK.finditer((REPO / doc).read_text()):
            found.setdefault(m["name"], []).append(doc)
    return found


# ---- staleness --------------------------------------------------------------------------------------


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


def stale_reasons(data: dict[str, Any], runtime_head: str) -> list[str]:
    """Why the figures in DATA may not describe today's runtime (empty: they do)."""
    errors, warnings = classify(data, runtime_head)
    return errors + warnings


def classify(data: dict[str, Any], runtime_head: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) about one results file.

    Errors fail CI: figures measured on a dirty tree (no commit holds what ran), or at a commit
    that is not in this branch's history (a rebased or abandoned branch: nobody can check them
    out). A branch merged into main keeps its commits in main's history, so its results pass
    there. Warnings do not fail: results measured before the last runtime/ change (re-measure
    them before quoting them as today's), or from before provenance existed."""
    commit = data.get("commit")
    if not commit:
        return [], ["no commit recorded"]
    errors = ["measured on a dirty tree"] if data.get("dirty") else []
    if git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0 and \
            git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        return errors, [f"commit {commit[:7]} cannot be checked in this shallow clone"]
    if git("merge-base", "--is-ancestor", commit, "HEAD").returncode != 0:
        return errors + [f"commit {commit[:7]} is not in this branch's history"], []
    if git("merge-base", "--is-ancestor", runtime_head, commit).returncode != 0:
        return errors, [f"measured at {commit[:7]}, before the last runtime/ change {runtime_head[:7]}"]
    return errors, []


def results_files() -> list[Path]:
    return sorted({p for pattern in RESULTS_GLOBS for p in REPO.glob(pattern)})


def stale() -> tuple[list[str], list[str]]:
    """(errors, warnings) over every results file (see :func:`classify`)."""
    runtime_head = git("log", "-1", "--format=%H", "--", "runtime/").stdout.strip()
    errors, warnings = [], []
    for path in results_files():
        bad, old = classify(json.loads(path.read_text()), runtime_head)
        rel = path.relative_to(REPO)
        errors += [f"ERROR: figures no commit can reproduce: {rel}: {reason}" for reason in bad]
        if old:
            warnings.append(f"WARNING: stale figures: {rel}: {'; '.join(old)}")
    return errors, warnings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a generated block is out of date")
    mode.add_argument("--stale", action="store_true",
                      help="fail on dirty or unreachable results; warn about ones older than the runtime")
    args = parser.parse_args()
    if args.stale:
        errors, warnings = stale()
        print("\n".join(errors + warnings) if errors or warnings else "figures: every results file is current")
        return 1 if errors else 0
    outdated = []
    for doc in DOCS:
        path = REPO / doc
        text = path.read_text()
        new = render(text)
        if new != text:
            outdated.append(doc)
            if not args.check:
                path.write_text(new)
    if args.check and outdated:
        print(f"figures out of date in {', '.join(outdated)}: run python3 scripts/figures.py", file=sys.stderr)
        return 1
    print(f"figures: {'rewrote ' + ', '.join(outdated) if outdated and not args.check else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
