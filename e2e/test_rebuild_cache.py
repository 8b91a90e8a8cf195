"""Rebuilds reuse the dependencies layer: editing only handler.py must not run pip."""

from __future__ import annotations

import pytest
import requests
from cloudevents.http import CloudEvent, from_http, to_binary

from pyfunc_e2e import running

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1200),
    pytest.mark.filterwarnings("ignore:to_(binary|structured) is deprecated"),
]

INSTALLING = "---> Installing dependencies"
REUSING = "---> Reusing cached dependencies layer"


def test_first_build_installs_dependencies(requirements_builds):
    first = requirements_builds["first"]
    assert INSTALLING in first.output
    assert REUSING not in first.output
    assert first.layer_sha("deps")


@pytest.mark.parametrize("rebuild", ["no_change", "handler_only"])
def test_rebuild_reuses_dependencies_layer(requirements_builds, rebuild):
    build = requirements_builds[rebuild]
    assert REUSING in build.output, build.output
    assert INSTALLING not in build.output, build.output
    assert "Collecting" not in build.output  # pip never ran
    # The exporter kept the very same layer: same digest as the first build's.
    assert "Reusing layer 'pyfunc/python-function:deps'" in build.output, build.output
    assert build.layer_sha("deps") == requirements_builds["first"].layer_sha("deps")


def test_handler_only_rebuild_serves_the_new_handler(requirements_builds):
    image = requirements_builds["handler_only"].image
    with running(image) as fn:
        headers, body = to_binary(
            CloudEvent({"type": "com.example.measure", "source": "/e2e"}, {"bytes": 1024}))
        reply = from_http(*_post(fn.url, headers, body))
    assert reply.data == {"bytes": 1024, "human": "1.0 kB", "edited": True}


def _post(url, headers, body):
    r = requests.post(url, headers=headers, data=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.headers, r.content
