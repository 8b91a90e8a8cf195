"""Coverage-guided fuzzing of pyfunc._codec.decode_request with atheris (in process, no server).

Why in addition to the hypothesis tests: atheris mutates toward new branches of the codec itself,
at tens of thousands of inputs a second, which no HTTP round trip can match. The property is the
codec's contract with the app: decode_request either returns events or raises BadEvent (a 4xx);
any other exception would be a 5xx through the server, and is a finding.

Run (optional, not in CI; ``pip install atheris`` first):

    .venv/bin/python tests/reliability/fuzz_codec_atheris.py -atheris_runs=200000

Each input is split into an environ (content type + ce- headers, as WSGI latin-1 strings) and a
body. The figures (runs, wall time), stamped with commit/dirty/date, are written to
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


def one_input(data: bytes) -> None:
    """Decode one fuzzer-made request; anything but events or BadEvent is a crash."""
    RUNS[0] += 1
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


def main() -> None:
    started = time.monotonic()
    results = Path(__file__).parent / "results"

    def report() -> None:
        results.mkdir(exist_ok=True)
        figures = {**stamp(), "runs": RUNS[0], "seconds": round(time.monotonic() - started, 1), "crashes": 0}
        (results / "atheris.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(f"atheris: {figures}")

    import atexit

    atexit.register(report)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
