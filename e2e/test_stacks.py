"""One stack per Python (STACKS in scripts/versions.env): pyfunc/builder:X.Y builds a function that
runs on that Python, and a function that asks for another Python (.python-version, requires-python)
fails the build with a message naming the builder to use."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import requests

from pyfunc_e2e import BUILDER, METRICS, REPO, fresh_build, image_size, mb, running, sh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

FUNCTION = Path(__file__).resolve().parent / "functions" / "python-version"
STACKS = re.search(r'^STACKS="([^"]*)"', (REPO / "scripts/versions.env").read_text(), re.M)[1].split()
VERSIONS = [entry.split(":")[0] for entry in STACKS]
DEFAULT = VERSIONS[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_function_runs_on_the_python_of_its_stack(version):
    builder = f"{BUILDER}:{version}"
    build = fresh_build(f"python-{version}", path=FUNCTION, builder=builder)
    with running(build.image, "--read-only", "--tmpfs", "/tmp", "-u", "123456:0") as fn:
        got = requests.get(fn.url, timeout=10).json()["python"]
    assert got.startswith(version + "."), got
    user = sh("docker", "image", "inspect", "-f", "{{.Config.User}}", f"pyfunc/base:{version}").stdout.strip()
    assert user == "1001:1001"  # hardened like the default: non-root, read-only root (above)
    METRICS[f"stack_{version}.base_image_mb"] = mb(image_size(f"pyfunc/base:{version}"))
    METRICS[f"stack_{version}.build_image_mb"] = mb(image_size(f"pyfunc/build:{version}"))
    METRICS[f"stack_{version}.first_build_s"] = build.seconds


def test_the_default_stack_is_untagged_too():
    for name in ("base", "build", "builder"):
        ids = {sh("docker", "image", "inspect", "-f", "{{.Id}}", image).stdout for image in
               (f"pyfunc/{name}", f"pyfunc/{name}:{DEFAULT}")}
        assert len(ids) == 1, name


@pytest.mark.parametrize(("file", "content", "expected"), [
    (".python-version", "3.13\n", "ERROR: .python-version asks for Python 3.13, and this builder's Python is 3.11"),
    ("pyproject.toml", '[project]\nname = "f"\nversion = "1"\nrequires-python = ">=3.12"\n',
     "ERROR: pyproject.toml's requires-python is '>=3.12', and this builder's Python is 3.11"),
])
def test_a_function_asking_for_another_python_fails_the_build(file, content, expected, tmp_path):
    app = tmp_path / "app"
    shutil.copytree(FUNCTION, app)
    (app / file).write_text(content)
    build = fresh_build("python-mismatch", path=app, check=False)
    assert build.returncode != 0 and expected in build.output, build.output[-3000:]
    assert "pyfunc build --python" in build.output
    if file == ".python-version" and "3.13" in VERSIONS:  # and the builder it names takes it
        fresh_build("python-mismatch", path=app, builder=f"{BUILDER}:3.13")
