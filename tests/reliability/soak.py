"""Soak: a long mixed load against one real server, sampling its RSS, to show it loses and leaks nothing.

Long form (the issue's 1,000,000 requests; about 10-15 minutes on the 2-core box):

    .venv/bin/python tests/reliability/soak.py --requests 1000000

The short form (50,000 requests) runs in CI as tests/reliability/test_soak.py.

Mix per 100 requests: 20 health GETs (plain HTTP), 40 binary, 20 structured, 19 batch (3 events),
1 malformed (rotating: bad JSON, a missing required attribute, a garbage request line). Expected:
200 for the good ones (with the echoed body checked), 400 for the malformed ones; anything else,
or a malformed response, counts as an unexpected error. Client threads keep one keep-alive
connection each (reopened when the server closes it, as it must after a garbage request line).

RSS (VmRSS of the server process) is sampled every ``--sample-every`` requests. The leak criterion
is a least-squares slope over the second half of the samples (the first half is warm-up: caches,
thread stacks, allocator arenas), bounded by ``--max-slope`` bytes per 10,000 requests. Why that
bound is sound: any per-request leak retains at least one Python object (≥ 16 bytes), i.e. at
least 160,000 bytes per 10,000 requests, far above the default bound of 16 KiB, while allocator
noise (a 1 MiB arena step) spread over the second half of a long run stays below it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).parent))
import rawhttp  # noqa: E402
from reliability_support import ECHO, RESULTS, stamp  # noqa: E402

CE = {"ce-specversion": "1.0", "ce-source": "/soak", "ce-type": "soak.event"}


def start(threads: int = 8, extra_env: Optional[dict[str, str]] = None) -> tuple[subprocess.Popen, int, Path]:
    """``python -m pyfunc`` serving the echo handler on a free loopback port (access log off: disk noise)."""
    directory = Path(tempfile.mkdtemp(prefix="pyfunc-soak-"))
    (directory / "handler.py").write_text(ECHO)
    with socket.socket() as sock:  # a free loopback port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFUNC_", "PYTHON_HANDLER", "K_"))}
    env.update({"PORT": str(port), "PYFUNC_HOST": "127.0.0.1", "PYFUNC_THREADS": str(threads),
                "PYFUNC_ACCESS_LOG": "false", **(extra_env or {})})
    log = directory / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "pyfunc", str(directory)], stdout=out,
                                   stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port, log
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def rss(pid: int) -> int:
    """Resident set size in bytes, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def request_for(n: int) -> tuple[str, bytes, int, Optional[bytes]]:
    """The n-th request of the mix: (kind, bytes, expected status, expected body or None)."""
    slot = n % 100
    body = json.dumps({"n": n}).encode()
    if slot < 20:
        return "http", rawhttp.request_bytes("GET", "/health/liveness", close=False), 200, None
    if slot < 60:
        headers = {**CE, "ce-id": f"b-{n}", "Content-Type": "application/json"}
        return "binary", rawhttp.request_bytes("POST", "/", headers, body, close=False), 200, body
    if slot < 80:
        event = json.dumps({**{k[3:]: v for k, v in CE.items()}, "id": f"s-{n}", "data": {"n": n}}).encode()
        headers = {"Content-Type": "application/cloudevents+json"}
        return "structured", rawhttp.request_bytes("POST", "/", headers, event, close=False), 200, None
    if slot < 99:
        events = [{**{k[3:]: v for k, v in CE.items()}, "id": f"t-{n}-{i}", "data": i} for i in range(3)]
        headers = {"Content-Type": "application/cloudevents-batch+json"}
        return "batch", rawhttp.request_bytes("POST", "/", headers, json.dumps(events).encode(), close=False), 200, None
    which = (n // 100) % 3
    if which == 0:
        headers = {"Content-Type": "application/cloudevents+json"}
        return "malformed", rawhttp.request_bytes("POST", "/", headers, b'{"id": ', close=False), 400, None
    if which == 1:
        headers = {"ce-specversion": "1.0", "ce-type": "x", "Content-Type": "application/json"}
        return "malformed", rawhttp.request_bytes("POST", "/", headers, body, close=False), 400, None
    return "malformed", b"\x16\x03\x01 NOT HTTP\r\n\r\n", 400, None


def check(kind: str, response: rawhttp.RawResponse, status: int, body: Optional[bytes], n: int) -> Optional[str]:
    """None if the response is what the kind must get, else a description of the error."""
    if response.status != status:
        return f"{kind} #{n}: status {response.status} (expected {status}): {response.body[:200]!r}"
    if body is not None and json.loads(response.body) != json.loads(body):
        return f"{kind} #{n}: body {response.body[:200]!r}"
    if kind == "structured" and response.json()["data"] != {"n": n}:
        return f"{kind} #{n}: structured data {response.body[:200]!r}"
    if kind == "batch" and [e["data"] for e in response.json()] != [0, 1, 2]:
        return f"{kind} #{n}: batch data {response.body[:200]!r}"
    return None


class Soak:
    """Client threads sharing one request counter; a sampler records RSS every ``sample_every`` requests."""

    def __init__(self, port: int, pid: int, total: int, threads: int, sample_every: int) -> None:
        self.port, self.pid, self.total = port, pid, total
        self.threads, self.sample_every = threads, sample_every
        self._next = 0
        self._done = 0
        self._lock = threading.Lock()
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}
        self.samples: list[tuple[int, int]] = []  # (requests done, RSS bytes)
        self.reconnects = 0
        self.retries = 0  # keep-alive connections found closed by the server, request resent

    def _take(self) -> Optional[int]:
        with self._lock:
            if self._next >= self.total:
                return None
            self._next += 1
            return self._next - 1

    def _finished(self, kind: str, error: Optional[str]) -> None:
        with self._lock:
            self._done += 1
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if error and len(self.errors) < 1000:
                self.errors.append(error)
            if self._done % self.sample_every == 0:
                self.samples.append((self._done, rss(self.pid)))

    def _client(self) -> None:
        sock: Optional[socket.socket] = None
        while (n := self._take()) is not None:
            kind, data, status, body = request_for(n)
            error: Optional[str] = None
            for _attempt in (1, 2):
                try:
                    if sock is None:
                        sock = rawhttp.connect(self.port)
                    sock.sendall(data)
                    response = rawhttp.read_response(sock, timeout=30)
                    error = check(kind, response, status, body, n)
                    if (response.header("Connection") or "").lower() == "close":
                        sock.close()
                        sock = None
                        with self._lock:
                            self.reconnects += 1
                    break
                except (ConnectionError, rawhttp.IncompleteError) as exc:
                    # Only a keep-alive connection the server closed before this request may be retried.
                    if sock is not None:
                        sock.close()
                    sock = None
                    error = f"{kind} #{n}: {type(exc).__name__}: {exc}"
                    with self._lock:
                        self.retries += 1
                except Exception as exc:  # noqa: BLE001 - recorded as an unexpected error
                    error = f"{kind} #{n}: {type(exc).__name__}: {exc}"
                    if sock is not None:
                        sock.close()
                    sock = None
                    break
            self._finished(kind, error)
        if sock is not None:
            sock.close()

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.samples.append((0, rss(self.pid)))
        workers = [threading.Thread(target=self._client, daemon=True) for _ in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - started
        slope = second_half_slope(self.samples)
        return {
            "requests": self._done, "seconds": round(elapsed, 1), "requests_per_second": round(self._done / elapsed),
            "client_threads": self.threads, "by_kind": self.counts, "unexpected_errors": len(self.errors),
            "first_errors": self.errors[:10], "reconnects": self.reconnects, "retries": self.retries,
            "rss_start_mb": round(self.samples[0][1] / 2**20, 2), "rss_end_mb": round(self.samples[-1][1] / 2**20, 2),
            "rss_max_mb": round(max(s[1] for s in self.samples) / 2**20, 2),
            "rss_slope_second_half_bytes_per_10k": None if slope is None else round(slope * 10_000),
            "rss_samples": self.samples,
        }


def second_half_slope(samples: list[tuple[int, int]]) -> Optional[float]:
    """Least-squares slope (bytes per request) of RSS over the second half of the samples."""
    half = samples[len(samples) // 2:]
    if len(half) < 3:
        return None
    xs, ys = [float(x) for x, _ in half], [float(y) for _, y in half]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None


def soak(total: int, threads: int = 4, sample_every: int = 10_000, server_threads: int = 8) -> dict[str, Any]:
    """Start a server, run the soak, stop it with SIGTERM; the figures, including its exit code."""
    process, port, log = start(server_threads)
    try:
        figures = Soak(port, process.pid, total, threads, sample_every).run()
        figures["server_alive_after"] = process.poll() is None
        # Not a crash: after the load, the server still answers a fresh connection on the first try.
        kind, data, status, body = request_for(21)
        data = data.replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\r\nConnection: close\r\n")
        responses = rawhttp.exchange(port, data)
        figures["post_soak_request_ok"] = [r.status for r in responses] == [200]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            figures_exit = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            figures_exit = -9
    figures["server_exit_code"] = figures_exit
    log_text = log.read_text(errors="replace")
    figures["server_log_tracebacks"] = log_text.count("Traceback")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=4, help="client threads (keep-alive connections)")
    parser.add_argument("--server-threads", type=int, default=8)
    parser.add_argument("--sample-every", type=int, default=10_000)
    parser.add_argument("--max-slope", type=float, default=16 * 1024,
                        help="largest RSS slope over the second half, bytes per 10,000 requests")
    parser.add_argument("--output", default=str(RESULTS / "soak-long.json"))
    args = parser.parse_args()
    figures = soak(args.requests, args.threads, args.sample_every, args.server_threads)
    slope = figures["rss_slope_second_half_bytes_per_10k"]
    figures["max_slope_bytes_per_10k"] = args.max_slope
    figures["passed"] = bool(
        figures["unexpected_errors"] == 0 and figures["requests"] == args.requests and figures["post_soak_request_ok"]
        and figures["server_exit_code"] == 0 and slope is not None and slope < args.max_slope)
    figures = {**stamp(), **figures}
    Path(args.output).parent.mkdir(exist_ok=True)
    Path(args.output).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "rss_samples"}, indent=2))
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
