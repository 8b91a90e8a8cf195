"""deploy/service.yaml: a valid serving.knative.dev/v1 Service (checked offline against Knative's
schema with @kubernetes-models/knative) that matches what the built image serves. Knative's own
webhook validation of it (and of `pyfunc init`'s manifests) is in test_knative_validation.py."""

from __future__ import annotations

import json
import shutil

import pytest
import requests

from pyfunc_e2e import ENV, REPO, running, sh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MANIFEST = REPO / "deploy" / "service.yaml"
VALIDATOR = REPO / "scripts" / "validate-knative.mjs"


def validate(*args: str, check: bool = True):
    if shutil.which("node", path=ENV["PATH"]) is None:
        pytest.fail("node not found (needed for the Knative schema validator)")
    return sh("node", str(VALIDATOR), *args, check=check)


@pytest.fixture(scope="module")
def service() -> dict:
    (doc,) = json.loads(validate("--json", str(MANIFEST)).stdout)
    return doc


def test_manifest_is_a_valid_knative_service():
    out = validate(str(MANIFEST)).stdout
    assert "ok: " in out and "Service cloudevent-echo" in out


@pytest.mark.parametrize("broken", [
    ('containerPort: 8080', 'containerPort: "eighty"'),
    ("value: handler.handler", "value: 42"),
    ("timeoutSeconds: 300", "timeoutSeconds: soon"),
])
def test_validator_rejects_broken_manifests(tmp_path, broken):
    old, new = broken
    text = MANIFEST.read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new))
    proc = validate(str(bad), check=False)
    assert proc.returncode == 1
    assert "invalid:" in proc.stderr


def test_manifest_matches_the_built_image(service, echo_build):
    container = service["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].split("/")[-1].split(":")[0] == "cloudevent-echo"
    port = container["ports"][0]["containerPort"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"]
    env = [arg for item in container["env"] for arg in ("-e", f"{item['name']}={item['value']}")]
    # Run it the way the manifest says: its env, port, probes and security context.
    with running(echo_build.image, *env, "-e", f"PORT={port}", "--read-only", "--tmpfs", "/tmp",
                 "-u", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                 port=port) as fn:
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["port"] == port
            assert requests.get(fn.url + get["path"], timeout=5).status_code == 200
