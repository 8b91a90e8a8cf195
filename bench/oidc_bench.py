"""What token verification costs (``python3 bench/run.py --only oidc``): PYFUNC_OIDC_AUDIENCE on vs off.

The CE echo of bench/run.py (binary, 100 B, wrk at c8 and c64, ``PYFUNC_THREADS=4``, server and
load generator on separate cores), once as plain pyfunc and once with verification on: every
request carries ``Authorization: Bearer <JWT>``, an RS256 token (2048-bit key) signed like a
Kubernetes service-account token, and pyfunc verifies it against a JWKS served on loopback by
this process. The key is fetched once, on the first request, and cached after (the steady state
of a pod: Knative's dispatchers also reuse one token until it nears expiry), so the figure is the
per-request cost of checking a token: parsing it, one RSA-2048 signature verification, the
claims. pyfunc also remembers the tokens it verified (a sender reuses its token), so two
figures: **one token** (what a Knative sender does: after the first request, a remembered
token: a lookup, its exp and the key checked again) and **fresh tokens** (each request
another of 4096 tokens, more than the 1024 pyfunc remembers: every one verified in full; wrk
formats each request in Lua then, bench/wrk/request-tokens.lua, on its own core). Both
variants serve the same request with the same reply (checked before timing; the OIDC variant
must also refuse the request without a token with a 401).

Figures: throughput and CPU per request of each; the headline is the ratio of the OIDC variant's
throughput to plain pyfunc's in the same round (the median over rounds, which alternate the
order), and, since wrk's figures swing with whatever else runs on the machine, the check alone:
``Verifier.refuse`` called in a loop in one thread of pyfunc's venv, in CPU time. Results:
``bench/results/oidc.{json,md}``, stamped with the commit like the others.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from provenance import stamp

import run as bench  # bench/run.py (this file is imported by it, with bench/ on sys.path)

AUDIENCE = "serving.knative.dev/service/bench/echo"
ISSUER = "https://kubernetes.default.svc.cluster.local"
SCENARIOS = ("binary-100B-c8", "binary-100B-c64")
VARIANT = "pyfunc-oidc"
FRESH = "pyfunc-oidc-fresh"  # the same server, a new token each request

# Run with pyfunc's bench venv (it has the oidc extra): a key, its JWKS and one token.
MINT = """
import json, time, jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
jwk = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "bench", "use": "sig", "alg": "RS256"}
now = int(time.time())
claims = {"iss": ISSUER, "aud": [AUDIENCE], "sub": "system:serviceaccount:bench:oidc-eventing.knative.dev-trigger",
          "iat": now, "nbf": now, "exp": now + 86400}
tokens = [jwt.encode({**claims, "jti": str(n)}, key, algorithm="RS256", headers={"kid": "bench"})
          for n in range(TOKENS)]
print(json.dumps({"jwks": {"keys": [jwk]}, "token": tokens[0], "tokens": tokens}))
"""
# Run with pyfunc's bench venv: the server's own check (pyfunc._oidc.Verifier.refuse) timed in one
# thread, in CPU time (time.thread_time), so that other processes on the machine barely move it.
CHECK = """
import json, sys, time
from pyfunc import _oidc
from pyfunc._config import Config
args = json.loads(sys.stdin.read())
verifier = _oidc.from_config(Config(oidc_audience=args["audience"], oidc_issuer=args["issuer"],
                                    oidc_jwks_url=args["jwks_url"]))
def cpu_us(tokens, n):
    environs = [{"HTTP_AUTHORIZATION": "Bearer " + tokens[i % len(tokens)]} for i in range(n)]
    assert verifier.refuse(environs[0]) is None
    started = time.thread_time()
    for environ in environs:
        if verifier.refuse(environ) is not None:
            raise SystemExit("a token was refused")
    return (time.thread_time() - started) / n * 1e6
one = cpu_us(args["tokens"][:1], 20000)
fresh = cpu_us(args["tokens"][1:], len(args["tokens"]) - 1)
print(json.dumps({"one_token_us": one, "fresh_token_us": fresh}))
"""
TOKENS = 4096  # distinct tokens for the "fresh" cells: 4x what pyfunc remembers, so none is remembered
FRESH_LUA = bench.BENCH / "wrk" / "request-tokens.lua"


def _jwks_server(jwks: dict) -> tuple[ThreadingHTTPServer, str, list[int]]:
    body = json.dumps(jwks).encode()
    fetches = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            fetches[0] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "max-age=86400")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/openid/v1/jwks", fetches


def _status(port: int, headers: dict[str, str], body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/", body=body, headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status


def render(res: dict[str, Any]) -> str:
    lines = ["# Token verification (PYFUNC_OIDC_AUDIENCE): cost per request", "",
             f"*Measured at `{res['commit'][:7] if res.get('commit') else '?'}`"
             f"{' (dirty tree)' if res.get('dirty') else ''}, {res.get('date')} · "
             f"`python3 bench/run.py --only oidc` · {res['rounds']} rounds of {res['duration']} s"
             f"{' · some cells contended' if any(c['contended'] for c in res['cells'].values()) else ''}*", "",
             "CE echo, binary, 100 B; RS256 tokens (RSA-2048), the key cached. Ratio = throughput with "
             "verification ÷ plain pyfunc's in the same round (median of rounds); CPU = the server's per request.", "",
             "| scenario | pyfunc | one token (remembered) | fresh token each request (verified in full) |",
             "|---|---|---|---|"]
    for scenario, cell in res["cells"].items():
        lines.append(f"| {scenario} | {cell['plain_rps']:,.0f} req/s, {cell['plain_cpu_us']:.0f} µs | "
                     f"**{cell['oidc_ratio']:.2f}** ({cell['oidc_rps']:,.0f} req/s, {cell['oidc_cpu_us']:.0f} µs) | "
                     f"**{cell['fresh_ratio']:.2f}** ({cell['fresh_rps']:,.0f} req/s, {cell['fresh_cpu_us']:.0f} µs) |")
    check = res["check_cpu_us"]
    lines += ["", f"The check alone (pyfunc._oidc's Verifier.refuse, one thread, CPU time): "
              f"**{check['one_token_us']:.1f} µs** with one token, **{check['fresh_token_us']:.0f} µs** with a "
              f"fresh token each time (median of {len(res['checks'])} runs)."]
    return "\n".join(lines) + "\n"


def main(args: Any) -> int:
    rounds = 1 if args.quick else 3
    args.duration = args.duration or (2 if args.quick else 4)
    args.warmup = args.warmup if args.warmup is not None else 1
    provenance = stamp()
    bench.ensure_wrk()
    venv = bench.ensure_venv("pyfunc")
    mint = f"ISSUER={ISSUER!r}\nAUDIENCE={AUDIENCE!r}\nTOKENS={TOKENS}\n" + MINT
    minted = json.loads(subprocess.run([venv["python"], "-c", mint], capture_output=True, text=True,
                                       check=True).stdout)
    jwks_server, jwks_url, fetches = _jwks_server(minted["jwks"])
    bench.EVENTING[VARIANT] = {"PYFUNC_OIDC_AUDIENCE": AUDIENCE, "PYFUNC_OIDC_ISSUER": ISSUER,
                               "PYFUNC_OIDC_JWKS_URL": jwks_url}
    bench.SERVERS[VARIANT] = {"label": "pyfunc + oidc", "reqs": ["@repo"], "venv": "pyfunc",
                              "env": bench.EVENTING[VARIANT], "replies": True, "batch": True}
    logdir = bench.CACHE / "logs" / time.strftime("%Y%m%d-%H%M%S-oidc")
    logdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pyfunc-bench-oidc-"))
    checks = []
    for _ in range(rounds):
        done = subprocess.run([venv["python"], "-c", CHECK], capture_output=True, text=True, check=True,
                              input=json.dumps({"audience": AUDIENCE, "issuer": ISSUER, "jwks_url": jwks_url,
                                                "tokens": minted["tokens"]}))
        checks.append(json.loads(done.stdout))
        bench.log(f"the check alone: {checks[-1]['one_token_us']:.1f} µs (one token), "
                  f"{checks[-1]['fresh_token_us']:.0f} µs (fresh tokens) of CPU")
    scenarios = {s["id"]: s for s in bench.scenarios(False) if s["id"] in SCENARIOS}
    tokens_file = tmp / "tokens.txt"
    tokens_file.write_text("\n".join(minted["tokens"]) + "\n")
    kinds = ("pyfunc", VARIANT, FRESH)
    measured: dict[str, dict[str, list[dict]]] = {sid: {k: [] for k in kinds} for sid in scenarios}
    try:
        for rnd in range(rounds):
            order = ["pyfunc", VARIANT] if rnd % 2 == 0 else [VARIANT, "pyfunc"]
            for name in order:
                server = bench.Server(name, "ce", args.server_core, logdir)
                try:
                    if not server.wait_listening():
                        raise RuntimeError(f"{name} did not start: {server.log_tail(8)}")
                    for sid, scn in scenarios.items():
                        method, headers, body = bench.build_request(scn["kind"], scn["size"])
                        if name == VARIANT and _status(server.port, headers, body) != 401:
                            raise RuntimeError("the OIDC variant accepted a request without a token")
                        cells = [(name, headers, False)]
                        if name == VARIANT:
                            cells = [(VARIANT, {**headers, "Authorization": f"Bearer {minted['token']}"}, False),
                                     (FRESH, {**headers, "X-Bench-Tokens": str(tokens_file)}, True)]
                        for kind, sent, fresh in cells:
                            reqfile = tmp / f"{kind}-{sid}.txt"
                            head = method + "\n" + "".join(f"{k}: {v}\n" for k, v in sent.items())
                            reqfile.write_bytes(head.encode() + b"\n" + body)
                            if name == VARIANT:  # the reply check of run.py, with a token
                                check = {**headers, "Authorization": f"Bearer {minted['tokens'][-1]}"}
                                ok = _status(server.port, check, body) == 200
                            else:
                                ok, _ = bench.verify(server, scn)
                            if not ok:
                                raise RuntimeError(f"{kind}/{sid}: reply check failed")
                            saved = bench.LUA_UNIQUE
                            bench.LUA_UNIQUE = FRESH_LUA  # run_wrk's per-request script, for these cells
                            try:
                                cell = bench.measure_cell(server, reqfile, {**scn, "unique": fresh}, args)
                            finally:
                                bench.LUA_UNIQUE = saved
                            if cell["errors"]:
                                raise RuntimeError(f"{kind}/{sid}: {cell['errors']} errors {cell['err_detail']}")
                            measured[sid][kind].append(cell)
                            bench.log(f"{kind}/{sid}: {cell['rps']:.0f} req/s cpu {cell['cpu_us_per_req'] or 0:.0f} "
                                      f"µs/req other {cell['foreign_load']:.0%}")
                finally:
                    server.stop()
    finally:
        jwks_server.shutdown()
    cells = {}
    for sid, by in measured.items():
        cell: dict[str, Any] = {"plain_rps": statistics.median(c["rps"] for c in by["pyfunc"]),
                                "plain_cpu_us": statistics.median(c["cpu_us_per_req"] for c in by["pyfunc"]),
                                "contended": any(c["contended"] for cs in by.values() for c in cs), "rounds": by}
        for kind, label in ((VARIANT, "oidc"), (FRESH, "fresh")):
            ratios = [o["rps"] / p["rps"] for p, o in zip(by["pyfunc"], by[kind])]
            cell.update({f"{label}_ratio": statistics.median(ratios), f"{label}_ratios": ratios,
                         f"{label}_rps": statistics.median(c["rps"] for c in by[kind]),
                         f"{label}_cpu_us": statistics.median(c["cpu_us_per_req"] for c in by[kind])})
        cells[sid] = cell
    check = {key: statistics.median(c[key] for c in checks) for key in ("one_token_us", "fresh_token_us")}
    res = {**provenance, "scenario": "oidc", "rounds": rounds, "duration": args.duration, "check_cpu_us": check,
           "checks": checks,
           "jwks_fetches": fetches[0], "cells": cells, "versions": {"pyfunc": venv["freeze"]}}
    out = Path(args.out)
    name = args.name if args.name not in (None, "latest", "quick") else ("oidc-quick" if args.quick else "oidc")
    (out / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / f"{name}.md").write_text(render(res))
    bench.log(f"wrote {out / name}.md (JWKS fetched {fetches[0]} times)")
    return 0
