"""The fast access-line writer writes exactly what the logging machinery would."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from pyfunc import _logs as logs

FIELDS = {"request_id": "r-1", "ce_id": "e-1", "ce_type": "com.example", "ce_source": "/s", "trace_id": None}


def _two_lines(log_format: str) -> list[str]:
    logs.configure(log_format, "INFO")
    handler = logging.root.handlers[0]
    handler.setStream(io.StringIO())
    token = logs.request_fields.set(FIELDS)
    try:
        assert logs._access_writer is not None and logs._access_writer.usable()
        logs.access("POST", "/", 200, 0.0123, FIELDS)  # the fast writer
        writer, logs._access_writer = logs._access_writer, None
        try:
            logs.access("POST", "/", 200, 0.0123, FIELDS)  # through logging
        finally:
            logs._access_writer = writer
    finally:
        logs.request_fields.reset(token)
    return handler.stream.getvalue().splitlines()


@pytest.fixture(autouse=True)
def _restore_logging():
    handlers, level = list(logging.root.handlers), logging.root.level
    yield
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


def test_text_lines_are_identical_but_for_the_clock():
    fast, slow = _two_lines("text")
    strip = re.compile(r"^\S+ \S+ ")  # date and time
    expected = "INFO pyfunc.access: POST / 200 12.3ms ce-id=e-1 ce-type=com.example"
    assert strip.sub("", fast) == strip.sub("", slow) == expected
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", fast)


def test_json_lines_are_identical_but_for_the_clock():
    fast, slow = (json.loads(line) for line in _two_lines("json"))
    assert fast.pop("timestamp").endswith("Z") and slow.pop("timestamp").endswith("Z")
    assert fast == slow
    assert fast["request_id"] == "r-1" and fast["duration_ms"] == 12.3 and fast["level"] == "INFO"


def test_a_replaced_root_handler_turns_the_fast_writer_off():
    logs.configure("text", "INFO")
    logging.root.addHandler(logging.NullHandler())
    assert not logs._access_writer.usable()
