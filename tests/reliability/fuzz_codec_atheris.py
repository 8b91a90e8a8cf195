"""Coverage-guided fuzzing of pyfunc._codec.decode_request with atheris (in process, no server).

Why in addition to the hypothesis tests: atheris mutates toward new branches of the codec itself,
at tens of thousands of inputs a second, which no HTTP round trip can match. The property is the
codec's contract with the app: decode_request either returns events or raises BadEvent (a 4xx);
any other exception would be a 5xx through the server, and is a finding.

Run (optional, not in CI; ``pip install atheris`` first):

    .venv/bin/python tests/reliability/fuzz_codec_atheris.py -atheris_runs=200000

Each input is split into an environ (content type + ce- headers, as WSGI latin-1 strings) and a
body. The figures (runs, wall time, crashes with their inputs), stamped with commit/dirty/date, are written to
results/atheris.json (README.md and docs/reliability.md are generated from it: scripts/figures.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from provenance import stamp  # noqa: E402 - tooling, not shipped; imported before instrumenting

with atheris.instrument_imports():
    from pyfunc import _codec as codec
    from pyfunc._errors import BadEvent

CONTENT_TYPES = ["", "application/json", "text/plain; charset=latin-1", "application/cloudevents+json",
                 "application/cloudevents-batch+json", "application/octet-stream", "text/plain; charset=utf-16",
                 "application/cloudevents+xml", "application/xml"]
NAMES = ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "ext"]
RUNS = [0]
STARTED = [0.0]
CRASHES: list[dict[str, str]] = []  # each crash: the exception and the input that raised it
RESULTS = Path(__file__).parent / "results"


def decode_one(data: bytes) -> None:
    """Decode one fuzzer-made request; anything but events or BadEvent is a crash."""
    fdp = atheris.FuzzedDataProvider(data)
    environ: dict[str, str] = {}
    choice = fdp.ConsumeIntInRange(0, len(CONTENT_TYPES))
    environ["CONTENT_TYPE"] = (CONTENT_TYPES[choice] if choice < len(CONTENT_TYPES)
                               else fdp.ConsumeBytes(20).decode("latin-1"))
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
        environ["HTTP_CE_" + name.upper()] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 30)).decode("latin-1")
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        mode, events = codec.decode_request(environ, body)
    except BadEvent:
        return
    assert mode in codec.REPLY_MODES
    for event in events:
        # What the app does next with a decoded event: echo it back in each mode.
        for encode in (codec.encode_structured, codec.encode_binary):
            try:
                encode(dict(event.attributes), event.data)
            except codec.InvalidReply:
                pass


def one_input(data: bytes) -> None:
    """One run; a crash is recorded as one (with its input) before atheris reports it."""
    RUNS[0] += 1
    try:
        decode_one(data)
    except BaseException as exc:
        CRASHES.append({"exception": f"{type(exc).__name__}: {exc}"[:500], "input_hex": data[:4096].hex()})
        report()  # now: atheris ends the process on a crash, exit hooks or not
        raise


def report() -> None:
    """results/atheris.json: what this run saw, crashes included (0 only when none was seen)."""
    figures = {**stamp(), "runs": RUNS[0], "seconds": round(time.monotonic() - STARTED[0], 1),
               "crashes": len(CRASHES), "findings": CRASHES}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "atheris.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"atheris: {figures}")


def main() -> None:
    import atexit

    STARTED[0] = time.monotonic()
    atexit.register(report)  # a run that ends without a crash (-atheris_runs reached)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
