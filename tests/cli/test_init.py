"""``pyfunc init``: the scaffold is complete, never overwrites, and works end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from support import free_port

PYFUNC = str(Path(sys.executable).with_name("pyfunc"))
REPO = Path(__file__).resolve().parents[2]
FILES = {"handler.py", "test_handler.py", "README.md", "requirements.txt", "service.yaml", ".gitignore"}


def pyfunc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFUNC_", "PYTHON_HANDLER"))}
    return subprocess.run([PYFUNC, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.mark.parametrize("template", ["cloudevents", "http"])
def test_creates_a_complete_function(tmp_path, template):
    result = pyfunc("init", "My Function", "--template", template, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    directory = tmp_path / "My Function"
    assert {p.name for p in directory.iterdir()} == FILES
    assert "name: my-function" in (directory / "service.yaml").read_text()
    assert "{{" not in "".join((directory / f).read_text() for f in FILES)
    assert "cd 'My Function'" in result.stdout


@pytest.mark.parametrize("template", ["cloudevents", "http"])
def test_the_generated_tests_pass(tmp_path, template):
    assert pyfunc("init", "fn", "--template", template, cwd=tmp_path).returncode == 0
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                            cwd=tmp_path / "fn", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


@pytest.mark.parametrize("template", ["cloudevents", "http"])
def test_the_generated_function_passes_check(tmp_path, template):
    assert pyfunc("init", "fn", "-t", template, cwd=tmp_path).returncode == 0
    result = pyfunc("check", "--json", cwd=tmp_path / "fn")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == ("cloudevent" if template == "cloudevents" else "http")


def test_init_then_run_then_invoke(tmp_path):
    """The quickstart loop through real processes: scaffold, serve, send an event."""
    assert pyfunc("init", "hello", cwd=tmp_path).returncode == 0
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFUNC_", "PYTHON_HANDLER", "K_"))}
    server = subprocess.Popen([PYFUNC, "run", "--port", str(port), "--host", "127.0.0.1"], cwd=tmp_path / "hello",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/health/readiness", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        result = pyfunc("invoke", f"http://127.0.0.1:{port}", "--json", "--type", "com.example.ping",
                        "--data", '{"message": "hello"}')
        assert result.returncode == 0, result.stderr
        reply = json.loads(result.stdout)
        assert reply["events"][0]["attributes"]["type"] == "com.example.reply"
        assert reply["events"][0]["attributes"]["source"] == "/hello"
        assert reply["data"] == {"received": {"message": "hello"}}
    finally:
        server.terminate()
        server.wait(60)


def test_refuses_to_overwrite_and_writes_nothing(tmp_path):
    directory = tmp_path / "fn"
    directory.mkdir()
    (directory / "handler.py").write_text("# mine\n")
    result = pyfunc("init", str(directory))
    assert result.returncode == 1
    assert "already has handler.py" in result.stderr
    assert "never overwrites" in result.stderr
    assert (directory / "handler.py").read_text() == "# mine\n"
    assert [p.name for p in directory.iterdir()] == ["handler.py"]


def test_an_existing_gitignore_is_kept(tmp_path):
    directory = tmp_path / "fn"
    directory.mkdir()
    (directory / ".gitignore").write_text("mine\n")
    result = pyfunc("init", str(directory))
    assert result.returncode == 0, result.stderr
    assert (directory / ".gitignore").read_text() == "mine\n"
    assert (directory / "handler.py").is_file()


def test_a_file_in_the_way_is_one_clear_line(tmp_path):
    (tmp_path / "fn").write_text("")
    result = pyfunc("init", str(tmp_path / "fn"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"pyfunc: error: {str(tmp_path / 'fn')!r} exists and is not a directory"


def test_name_and_image_options(tmp_path):
    result = pyfunc("init", str(tmp_path / "x"), "--name", "Orders_API", "--image", "registry.local/orders:1")
    assert result.returncode == 0, result.stderr
    manifest = (tmp_path / "x" / "service.yaml").read_text()
    assert "name: orders-api" in manifest
    assert "image: registry.local/orders:1" in manifest


VALIDATOR = REPO / "scripts" / "validate-knative.mjs"
NPM_MODELS = Path(os.environ.get("PYFUNC_CACHE", Path.home() / ".cache" / "pyfunc")) / "tools" / "npm" / "node_modules"


@pytest.mark.skipif(shutil.which("node") is None or not (NPM_MODELS / "@kubernetes-models").is_dir(),
                    reason="node and @kubernetes-models/knative (scripts/install-tools.sh) are needed")
@pytest.mark.parametrize("template", ["cloudevents", "http"])
def test_the_manifest_is_a_valid_knative_service(tmp_path, template):
    assert pyfunc("init", "fn", "-t", template, cwd=tmp_path).returncode == 0
    result = subprocess.run(["node", str(VALIDATOR), str(tmp_path / "fn" / "service.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ok:" in result.stdout
