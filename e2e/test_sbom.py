"""The function image's software bill of materials (`pack sbom download`): CycloneDX documents of
the function's own dependencies (deps layer) and of the runtime (the run image's venv), written by
the buildpack with cyclonedx-py. And the app's tests stay out of the image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyfunc_e2e import fresh_build, sh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SBOM_DIR = Path("layers/sbom/launch/pyfunc_python-function")


def download(image: str, tmp_path: Path) -> Path:
    sh("pack", "sbom", "download", image, "--output-dir", str(tmp_path))
    return tmp_path / SBOM_DIR


def purls(path: Path) -> set[str]:
    doc = json.loads(path.read_text())
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"].startswith("1.")
    return {c.get("purl") or f"{c['name']}@{c['version']}" for c in doc["components"]}


def test_sbom_has_function_and_runtime_dependencies(requirements_builds, tmp_path):
    sbom = download(requirements_builds["first"].image, tmp_path)
    deps, runtime = purls(sbom / "deps" / "sbom.cdx.json"), purls(sbom / "sbom.cdx.json")
    assert deps == {"pkg:pypi/humanize@4.12.3"}  # examples/with-requirements, its layer alone
    for package in ("waitress", "flask", "cloudevents", "werkzeug", "pyfunc-invoker"):
        assert any(p.startswith(f"pkg:pypi/{package}@") for p in runtime), (package, runtime)
    assert "SBOM (CycloneDX)" in requirements_builds["first"].output


def test_sbom_survives_a_cached_rebuild(requirements_builds, tmp_path):
    sbom = download(requirements_builds["handler_only"].image, tmp_path)
    assert purls(sbom / "deps" / "sbom.cdx.json") == {"pkg:pypi/humanize@4.12.3"}


def test_sbom_without_dependencies_has_the_runtime(echo_build, tmp_path):
    sbom = download(echo_build.image, tmp_path)
    assert not (sbom / "deps").exists()
    assert any(p.startswith("pkg:pypi/waitress@") for p in purls(sbom / "sbom.cdx.json"))


def test_tests_are_left_out_of_the_image(echo_build):
    # examples/cloudevent-echo has test_handler.py next to handler.py.
    assert "Leaving tests out of the image (BP_PYFUNC_EXCLUDE): test_handler.py" in echo_build.output
    listing = sh("docker", "run", "--rm", "--entrypoint", "python", echo_build.image, "-c",
                 "import os; print(sorted(os.listdir('/workspace')))").stdout
    assert "handler.py" in listing and "test_handler" not in listing


def test_exclusion_is_configurable_and_spares_the_handler(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("")
    (tmp_path / "test_func.py").write_text("def main(req):\n    return 'ok'\n")
    (tmp_path / "notes_test.py").write_text("")
    build = fresh_build("exclude", "--env", "BP_PYTHON_HANDLER=test_func.main", path=tmp_path)
    listing = sh("docker", "run", "--rm", "--entrypoint", "python", build.image, "-c",
                 "import os; print(sorted(os.listdir('/workspace')))").stdout
    assert "test_func.py" in listing  # the handler module, even though it looks like a test
    assert "tests" not in listing.replace("test_func", "") and "notes_test.py" not in listing
    kept = fresh_build("exclude", "--env", "BP_PYTHON_HANDLER=test_func.main", "--env", "BP_PYFUNC_EXCLUDE=",
                       path=tmp_path)
    assert "Leaving tests out" not in kept.output
