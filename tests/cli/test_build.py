"""``pyfunc build``: prerequisites reported in one line; a real build when pack and the builder exist."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from support import free_port

PYFUNC = str(Path(sys.executable).with_name("pyfunc"))
CACHE = Path(os.environ.get("PYFUNC_CACHE", Path.home() / ".cache" / "pyfunc"))


def pyfunc(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 60):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFUNC_", "PYTHON_HANDLER"))}
    full_env.update(env or {})
    return subprocess.run([PYFUNC, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("pyfunc: error: ")
    return line


@pytest.fixture
def fn(tmp_path) -> Path:
    assert pyfunc("init", str(tmp_path / "fn")).returncode == 0
    return tmp_path / "fn"


def test_a_missing_directory(tmp_path):
    assert "does not exist" in one_error_line(pyfunc("build", str(tmp_path / "nope")))


def test_a_directory_without_a_handler(tmp_path):
    line = one_error_line(pyfunc("build", str(tmp_path)))
    assert "no handler.py in" in line and "pyfunc init" in line


def test_the_handler_flag_names_the_module_to_look_for(fn):
    assert "no main.py in" in one_error_line(pyfunc("build", str(fn), "--handler", "main.func"))


def test_pack_missing(fn, tmp_path):
    # PATH without pack, and a cache without scripts/install-tools.sh's copy.
    env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin", "PYFUNC_CACHE": str(tmp_path)}
    if shutil.which("pack", path=env["PATH"]):
        pytest.skip("pack is installed system-wide")
    line = one_error_line(pyfunc("build", str(fn), env=env))
    assert "pack (Cloud Native Buildpacks CLI) not found" in line
    # where it looked, and what to run
    assert f"nor in {tmp_path / 'tools' / 'bin'}" in line and "scripts/install-tools.sh" in line


def test_an_explicit_pack_that_does_not_exist(fn, tmp_path):
    assert "pack not found at" in one_error_line(pyfunc("build", str(fn), "--pack", str(tmp_path / "pack")))


def test_a_malformed_env(fn):
    assert "should look like NAME=VALUE" in one_error_line(pyfunc("build", str(fn), "--env", "NOVALUE"))


def docker_ok() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    env = {**os.environ, "DOCKER_API_VERSION": os.environ.get("DOCKER_API_VERSION", "1.41")}
    return subprocess.run([docker, "info"], capture_output=True, env=env, timeout=60).returncode == 0


def has_image(name: str) -> bool:
    env = {**os.environ, "DOCKER_API_VERSION": os.environ.get("DOCKER_API_VERSION", "1.41")}
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True, env=env,
                          timeout=60).returncode == 0


@pytest.mark.skipif(not docker_ok(), reason="needs a running docker daemon")
def test_a_builder_that_is_not_in_docker(fn):
    line = one_error_line(pyfunc("build", str(fn), "--builder", f"pyfunc-test/no-such-builder-{uuid.uuid4().hex}"))
    assert "is not in Docker" in line and "scripts/build-images.sh" in line


@pytest.mark.e2e
@pytest.mark.skipif(not docker_ok() or not has_image("pyfunc/builder") or not (shutil.which("pack") or (
    CACHE / "tools" / "bin" / "pack").exists()), reason="needs docker, pack and the pyfunc/builder image")
def test_build_run_and_invoke_a_new_function(fn):
    """The whole loop: init → build → docker run (like Knative would) → invoke."""
    image = f"pyfunc-test/cli-build-{uuid.uuid4().hex[:8]}"
    env = {"PYFUNC_CACHE": str(CACHE)}
    result = pyfunc("build", str(fn), "--image", image, env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"==> Building image {image} from {fn} with pyfunc/builder")
    assert f"==> Built {image}" in result.stdout
    assert "pyfunc check" in result.stdout  # the buildpack checked the handler
    port = free_port()
    docker_env = {**os.environ, "DOCKER_API_VERSION": os.environ.get("DOCKER_API_VERSION", "1.41")}
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "--read-only", "--tmpfs", "/tmp", "-e", "PORT=8080",
         "-p", f"127.0.0.1:{port}:8080", image],
        capture_output=True, text=True, env=docker_env, timeout=120, check=True).stdout.strip()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health/readiness", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the container did not become ready"
            time.sleep(0.1)
        reply = pyfunc("invoke", f"http://127.0.0.1:{port}", "--json", "--data", '{"n": 1}')
        assert reply.returncode == 0, reply.stderr
        assert json.loads(reply.stdout)["data"] == {"received": {"n": 1}}
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, env=docker_env, timeout=60)
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True, env=docker_env, timeout=60)


@pytest.mark.e2e
@pytest.mark.skipif(not docker_ok() or not has_image("pyfunc/builder"), reason="needs docker and pyfunc/builder")
def test_a_broken_handler_fails_the_build(fn):
    (fn / "handler.py").write_text("def handler(data):\n    return (\n")
    image = f"pyfunc-test/cli-broken-{uuid.uuid4().hex[:8]}"
    result = pyfunc("build", str(fn), "--image", image, env={"PYFUNC_CACHE": str(CACHE)}, timeout=900)
    assert result.returncode == 1
    assert "SyntaxError" in result.stdout
    assert result.stderr.strip().startswith("pyfunc: error: pack build failed")


def fake_tool(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_pack_is_found_in_the_tool_cache_when_not_on_path(fn, tmp_path):
    """scripts/demo.sh leaves pack in $PYFUNC_CACHE/tools/bin, not on PATH: `pyfunc build` finds it there,
    and runs it with the Docker API version of Debian 12's engine and a stable build-cache volume key."""
    cache = tmp_path / "cache"
    pack = fake_tool(cache / "tools" / "bin" / "pack",
                     'echo "pack $* DOCKER_API_VERSION=$DOCKER_API_VERSION PACK_VOLUME_KEY=$PACK_VOLUME_KEY"\n')
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir / "docker", "exit 0\n")  # `docker image inspect pyfunc/builder`: present
    env = {"PATH": os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), "/usr/bin", "/bin"]),
           "PYFUNC_CACHE": str(cache)}
    if shutil.which("pack", path=env["PATH"]):
        pytest.skip("pack is installed system-wide")
    if os.environ.get("DOCKER_API_VERSION", "1.41") != "1.41" or os.environ.get("PACK_VOLUME_KEY", "pyfunc-local") \
            != "pyfunc-local":
        pytest.skip("DOCKER_API_VERSION or PACK_VOLUME_KEY set here: the defaults do not apply")
    result = pyfunc("build", str(fn), "--image", "hello", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"$ {pack} build hello --builder pyfunc/builder --path {fn}" in result.stdout
    assert "DOCKER_API_VERSION=1.41 PACK_VOLUME_KEY=pyfunc-local" in result.stdout
    assert "==> Built hello" in result.stdout


def test_the_environment_overrides_the_docker_settings(fn, tmp_path):
    cache = tmp_path / "cache"
    fake_tool(cache / "tools" / "bin" / "pack", 'echo "API=$DOCKER_API_VERSION KEY=$PACK_VOLUME_KEY"\n')
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir / "docker", "exit 0\n")
    env = {"PATH": os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), "/usr/bin", "/bin"]),
           "PYFUNC_CACHE": str(cache), "DOCKER_API_VERSION": "1.43", "PACK_VOLUME_KEY": "mine"}
    if shutil.which("pack", path=env["PATH"]):
        pytest.skip("pack is installed system-wide")
    result = pyfunc("build", str(fn), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "API=1.43 KEY=mine" in result.stdout


def test_python_picks_the_builder_of_that_python(fn, tmp_path):
    """`--python 3.13` builds with pyfunc/builder:3.13 (scripts/build-images.sh makes one per stack)."""
    cache = tmp_path / "cache"
    pack = fake_tool(cache / "tools" / "bin" / "pack", 'echo "pack $*"\n')
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir / "docker", "exit 0\n")
    env = {"PATH": os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), "/usr/bin", "/bin"]),
           "PYFUNC_CACHE": str(cache)}
    if shutil.which("pack", path=env["PATH"]):
        pytest.skip("pack is installed system-wide")
    result = pyfunc("build", str(fn), "--image", "hello", "--python", "3.13", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"$ {pack} build hello --builder pyfunc/builder:3.13 --path {fn}" in result.stdout


def test_python_is_a_minor_version_and_not_with_builder(fn):
    assert "should look like 3.13" in one_error_line(pyfunc("build", str(fn), "--python", "3"))
    result = pyfunc("build", str(fn), "--python", "3.13", "--builder", "x")
    assert result.returncode == 2 and "not allowed with argument" in result.stderr
