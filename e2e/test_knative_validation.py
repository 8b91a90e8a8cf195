"""Every Knative manifest pyfunc ships or generates, checked by Knative's own code: kn-validate
(e2e/knative/validate) runs knative.dev/serving v0.44.0's v1.Service SetDefaults + Validate, what
the admission webhook runs, with a fresh install's config. Beside the JSON-schema check of
e2e/test_deploy.py: the schema lets through what the webhook rejects (reserved ports and env,
limits on containerConcurrency and timeoutSeconds, autoscaling annotations)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from knative_parts import MANIFEST, kn_validate, pod_spec
from pyfunc_e2e import ENV, REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TEMPLATES = sorted(p.name for p in (REPO / "runtime" / "pyfunc" / "templates").iterdir()
                   if (p / "handler.py").exists())


def generated(tmp_path: Path, template: str) -> Path:
    """service.yaml of a `pyfunc init --template TEMPLATE` function."""
    app = tmp_path / f"my-{template}-fn"
    proc = subprocess.run([sys.executable, "-m", "pyfunc", "init", "--template", template, str(app)],
                          env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return app / "service.yaml"


def test_templates_are_found():
    assert TEMPLATES == ["cloudevents", "http"]


def test_shipped_manifest_passes_knatives_webhook():
    proc = kn_validate(str(MANIFEST))
    assert "ok: " in proc.stdout and "Service cloudevent-echo" in proc.stdout
    assert "warning" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("template", TEMPLATES)
def test_generated_manifests_pass_knatives_webhook(tmp_path, template):
    manifest = generated(tmp_path, template)
    proc = kn_validate(str(manifest))
    assert f"Service my-{template}-fn" in proc.stdout
    # Not even a warning (without seccompProfile Knative warns that the default is insecure).
    assert "warning" not in proc.stderr, proc.stderr
    # What Knative makes of it: the probe goes to queue-proxy unchanged, no 1 s period (that turns
    # off queue-proxy's 50 ms startup probing and slows every cold start).
    spec = pod_spec(manifest)
    env = {e["name"]: e.get("value") for e in spec["containers"][1]["env"]}
    assert '"path":"/health/readiness"' in env["SERVING_READINESS_PROBE"]
    assert "periodSeconds" not in env["SERVING_READINESS_PROBE"]


@pytest.mark.parametrize(("old", "new", "message"), [
    ("containerConcurrency: 0", "containerConcurrency: 5000", "expected 0 <= 5000 <= 1000"),
    ("timeoutSeconds: 300", "timeoutSeconds: 3600", "expected 0 <= 3600 <= 600"),
    ("- name: PYTHON_HANDLER", "- name: PORT\n              value: \"9000\"\n            - name: PYTHON_HANDLER",
     '"PORT" is a reserved environment variable'),
    ("containerPort: 8080", "containerPort: 8012", "8012 is a reserved port"),
    ('autoscaling.knative.dev/target: "50"', 'autoscaling.knative.dev/target: "-5"',
     "target -5 should be at least 0.01"),
    ("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: true\n            bogusField: 1",
     'unknown field "bogusField"'),
])
def test_knatives_webhook_rejects_broken_variants(tmp_path, old, new, message):
    text = MANIFEST.read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    proc = kn_validate(str(bad), check=False)
    assert proc.returncode == 1, proc.stdout
    assert "invalid: " in proc.stderr and message in proc.stderr, proc.stderr


def test_broken_generated_manifest_is_rejected(tmp_path):
    manifest = generated(tmp_path, "http")
    manifest.write_text(manifest.read_text().replace("containerPort: 8080", "containerPort: 8022"))
    proc = kn_validate(str(manifest), check=False)
    assert proc.returncode == 1 and "8022 is a reserved port" in proc.stderr, proc.stderr
