"""UTC timestamps in RFC 3339: a reply event's ``time`` and the ``timestamp`` of JSON log lines.

Both are written on every request. Formatting the date and time is most of the cost and it
changes once a second, so that part is formatted once per second and only the fraction per call.
"""

from __future__ import annotations

import time

# (second, its "YYYY-MM-DDTHH:MM:SS"): one tuple, replaced whole, so a reader never pairs one
# second with another's text.
_cached: tuple[int, str] = (-1, "")


def rfc3339_utc(seconds: float, places: int = 6) -> str:
    """``seconds`` since the epoch as ``2026-11-24T21:48:26.627123Z``, with ``places`` decimals (truncated)."""
    global _cached
    second = int(seconds)
    cached = _cached
    if cached[0] != second:
        cached = _cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((seconds - second) * 10 ** places):0{places}d}Z"
