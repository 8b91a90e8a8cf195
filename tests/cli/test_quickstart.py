"""The quickstart, run as written: the shell blocks of README.md's Quickstart section and of
docs/quickstart.md, extracted from the markdown and run by bash, line for line, with real processes.

The install lines (``python3 -m venv .venv && . .venv/bin/activate``, ``pip install -e '.[reload]'
pytest``) run once per test session in a copy of this checkout (tracked and untracked files, no
.venv), so the venv is fresh and built from the checkout, never from the package index (which only
has pyfunc-invoker 0.1.0). What comes after the first ``pyfunc build`` needs docker, pack and the
pyfunc/builder image: that part is an ``e2e`` test.

What cannot run here is listed in UNRUNNABLE (the Kubernetes and registry lines); those are skipped
visibly (a warning each, and the test asserts that nothing else was skipped). The only other
liberties, for the step-by-step docs, are in INTERACTIVE: a server the reader leaves running in one
terminal runs in the background instead, and "Stop the server (Ctrl+C)" is the test stopping it.

Everything runs on port 8080 exactly as written, so the tests take a lock and first check that
nothing else listens there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import pytest

pytestmark = pytest.mark.timeout(1800)  # fixtures included: a cold venv, a cold pack build

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs" / "quickstart.md"
CACHE = Path(os.environ.get("PYFUNC_CACHE") or Path.home() / ".cache" / "pyfunc")
MARK = "@@quickstart-step@@"
END = "@@quickstart-end@@"

# Lines that need what this machine does not have: (prefix, why). Skipped, visibly.
UNRUNNABLE = [
    ("kubectl ", "no Kubernetes cluster with Knative Serving here"),
    ("docker tag hello registry.example.com/hello", "no container registry here"),
]
# A command the docs run in the foreground of a terminal of its own ("Leave it running, and use a
# second terminal"): the test runs it in the background and waits until it answers, as a reader would.
INTERACTIVE = {"pyfunc run --reload"}
WAIT_READY = "until pyfunc invoke --http localhost:8080/health/readiness >/dev/null 2>&1; do sleep 0.2; done"


# ---------------------------------------------------------------------------------- the markdown


def section(markdown: str, heading: str) -> str:
    """The text under the first ``## heading...`` line, up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(heading)}.*$", markdown, re.MULTILINE)
    assert match, f"no '## {heading}' section"
    rest = markdown[match.end():]
    end = re.search(r"^## ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def shell_blocks(markdown: str) -> list[str]:
    """The bodies of the fenced code blocks whose info string is sh, bash, shell or console."""
    blocks, body, fence, is_shell = [], [], None, False
    for line in markdown.splitlines():
        stripped = line.strip()
        if fence is None:
            match = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if match:
                fence, is_shell, body = match.group(1), match.group(2) in ("sh", "bash", "shell", "console"), []
        elif stripped.startswith(fence) and not stripped[len(fence):].strip():
            if is_shell:
                blocks.append("\n".join(body))
            fence = None
        else:
            body.append(line)
    assert fence is None, "an unclosed code fence"
    return blocks


def commands(block: str) -> list[str]:
    """One command per line; blank lines and comment-only lines (a comment continued) are dropped."""
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@dataclass
class Quickstart:
    """One document's commands, in the three parts the tests run them in."""

    name: str
    install: list[str]  # up to and including the first `pip install`
    local: list[str]  # then up to the first `pyfunc build`
    build: list[str]  # from there on (docker, pack)


def split(name: str, lines: list[str]) -> Quickstart:
    pip = next(i for i, line in enumerate(lines) if line.startswith("pip install"))
    build = next(i for i, line in enumerate(lines) if line.startswith("pyfunc build"))
    assert pip < build
    return Quickstart(name, lines[: pip + 1], lines[pip + 1: build], lines[build:])


def readme_quickstart() -> Quickstart:
    blocks = shell_blocks(section(README.read_text(), "Quickstart"))
    assert len(blocks) == 1, "README's Quickstart has one shell block"
    return split("README.md", commands(blocks[0]))


def docs_quickstart() -> Quickstart:
    return split("docs/quickstart.md", [line for block in shell_blocks(DOCS.read_text()) for line in commands(block)])


def test_the_quickstarts_install_from_the_checkout_not_from_the_index():
    """pyfunc-invoker on PyPI is 0.1.0 (no `pyfunc` command): the instructions must not install it from there,
    must use a venv (PEP 668), and must say so."""
    for quickstart, text in ((readme_quickstart(), section(README.read_text(), "Quickstart")),
                             (docs_quickstart(), DOCS.read_text())):
        assert quickstart.install[0].startswith("python3 -m venv .venv && . .venv/bin/activate"), quickstart.name
        pip = quickstart.install[-1]
        assert re.match(r"pip install -e '\.\[reload\]' pytest\b", pip), (quickstart.name, pip)
        assert "not" in text and "PyPI" in text and "0.1.0" in text, quickstart.name
        for line in quickstart.local + quickstart.build:
            assert not line.startswith(("pack ", "pip install pyfunc-invoker")), (quickstart.name, line)
    # One venv serves both documents' runs: that holds only while they install the same way.
    assert [uncommented(line) for line in docs_quickstart().install] == [
        uncommented(line) for line in readme_quickstart().install]


def uncommented(line: str) -> str:
    """The command without its trailing ``# comment`` (a ``#`` outside quotes, after a blank)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


# ---------------------------------------------------------------------------------- running bash


@dataclass
class Run:
    output: str
    steps: list[tuple[str, str]]  # (command, its output)
    cwd: Path
    skipped: list[str] = field(default_factory=list)

    def of(self, prefix: str, nth: int = 0) -> str:
        found = [out for command, out in self.steps if command.startswith(prefix)]
        assert len(found) > nth, f"no step {prefix!r} (#{nth}) in:\n{self.output[-4000:]}"
        return found[nth]


def script_env() -> dict[str, str]:
    """The environment of a user's shell after scripts/demo.sh: no venv active, pack not on PATH."""
    dev_venv = Path(sys.prefix).resolve()
    tools = (CACHE / "tools" / "bin").resolve()
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and Path(p).resolve() != tools and not Path(p).resolve().is_relative_to(dev_venv)]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYFUNC_", "PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE", "PYTEST_"))}
    env["PATH"] = os.pathsep.join(path)
    if "PYFUNC_CACHE" in os.environ:
        env["PYFUNC_CACHE"] = os.environ["PYFUNC_CACHE"]
    # Debian 12's engine speaks API 1.41: its own docker client does, a newer one found first on PATH
    # (as on some CI machines) must be told. Environment only; the commands stay as written.
    env.setdefault("DOCKER_API_VERSION", "1.41")
    return env


def run_lines(lines: list[str], cwd: Path, timeout: float, prelude: Optional[list[str]] = None,
              background: bool = False) -> Run:
    """``lines`` as one bash script in ``cwd`` (``set -e``), each preceded by a marker to split the output.

    The script runs in a process group of its own, killed afterwards with everything it started."""
    script = ["set -e", *(prelude or [])]
    skipped = []
    for line in lines:
        script.append(f"printf '\\n%s %s\\n' {MARK} {shlex.quote(line)}")
        why = next((why for prefix, why in UNRUNNABLE if line.startswith(prefix)), None)
        if why:
            skipped.append(line)
            warnings.warn(f"quickstart line not run ({why}): {line}", stacklevel=2)
            script.append(f"echo {shlex.quote(f'SKIPPED ({why})')}")
        elif line.strip() in INTERACTIVE:
            # The reader leaves it running in a terminal of its own and continues in a second one.
            script += [f"{line} &", WAIT_READY]
        else:
            script.append(line)
    script.append(f"printf '\\n%s %s\\n' {END} \"$PWD\"")
    # Output to a file, not a pipe: a server left running in the background keeps a pipe open.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        process = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=cwd, env=script_env(),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # `pyfunc run … &` and whatever else is left
            process.wait()
        log.seek(0)
        output = log.read()
    if process.returncode == -signal.SIGKILL:
        pytest.fail(f"the quickstart did not finish within {timeout:g}s:\n{output[-6000:]}")
    if process.returncode != 0 or END not in output:
        pytest.fail(f"the quickstart failed (bash exited {process.returncode}) at its last step:\n{output[-6000:]}")
    head, _, tail = output.rpartition(f"\n{END} ")
    steps = []
    for chunk in head.split(f"\n{MARK} ")[1:]:
        command, _, out = chunk.partition("\n")
        steps.append((command, out))
    # The directory is the END line's; a server still in the background may log after it.
    return Run(output, steps, Path(tail.split("\n", 1)[0].strip()), skipped)


@pytest.fixture(scope="session")
def port_8080() -> Iterator[None]:
    """The quickstart serves on :8080 as written: one run at a time, and nothing else there."""
    with open(Path(os.environ.get("TMPDIR", "/tmp")) / "pyfunc-quickstart-8080.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", 8080)) != 0:
                    break
            if time.monotonic() > deadline:
                pytest.fail("something else listens on port 8080, where the quickstart serves")
            time.sleep(1)
        yield


def copy_checkout(target: Path) -> None:
    """This checkout's files as a user has them: tracked and untracked, without ignored ones (.venv, caches)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, timeout=60)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.decode().split("\0")):
            if name.split("/")[0] == "hello":  # a reader's own quickstart function, not the checkout's
                continue
            source = REPO / name
            if source.is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
    else:  # not a git checkout (an sdist): everything but the usual droppings
        shutil.copytree(REPO, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "hello", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", ".hypothesis",
            "build", "dist"))


@pytest.fixture(scope="session")
def checkout(tmp_path_factory) -> Path:
    """A copy of this checkout with the quickstart's install lines run in it, verbatim: .venv from the checkout."""
    root = tmp_path_factory.mktemp("quickstart") / "pyfunc"
    root.mkdir()
    copy_checkout(root)
    run = run_lines(readme_quickstart().install, root, timeout=900)
    assert (root / ".venv" / "bin" / "pyfunc").exists(), run.output[-3000:]
    return root


def activate(venv_root: Path, cwd: Path) -> list[str]:
    """The shell of the next part: the same venv active, in the directory the previous part ended in."""
    return [f". {shlex.quote(str(venv_root / '.venv' / 'bin' / 'activate'))}", f"cd {shlex.quote(str(cwd))}"]


# ---------------------------------------------------------------------------------- README.md


@pytest.fixture(scope="session")
def readme_local(checkout, port_8080) -> Run:
    return run_lines(readme_quickstart().local, checkout, timeout=300, prelude=activate(checkout, checkout))


def test_readme_quickstart_scaffold_run_invoke_test(readme_local):
    run = readme_local
    assert "Created the cloudevents function 'hello' in hello" in run.of("pyfunc init hello")
    binary = run.of("pyfunc invoke --type com.example.ping")
    assert "HTTP 200 OK" in binary and "CloudEvent (binary mode)" in binary
    assert "com.example.reply" in binary and '"name": "Ada"' in binary
    structured = run.of("pyfunc invoke --mode structured")
    assert "HTTP 200 OK" in structured and "structured" in structured and '"name": "Ada"' in structured
    batch = run.of("pyfunc invoke --mode batch")
    assert "HTTP 200 OK" in batch and '"name": "Ada"' in batch and '"name": "Bob"' in batch
    tests = run.of("pytest hello")
    assert re.search(r"\b\d+ passed\b", tests) and "failed" not in tests, tests
    assert not run.skipped


# ---------------------------------------------------------------------------------- docs/quickstart.md


@pytest.fixture(scope="session")
def docs_dir(checkout, tmp_path_factory) -> Path:
    """Where the docs' reader stands: a checkout with the same .venv (the install lines are the same)."""
    root = tmp_path_factory.mktemp("quickstart-docs")
    (root / ".venv").symlink_to(checkout / ".venv")
    return root


@pytest.fixture(scope="session")
def docs_local(docs_dir, port_8080) -> Run:
    # The install part minus what the shared venv already did: `pyfunc --version` and on.
    quickstart = docs_quickstart()
    return run_lines(quickstart.local, docs_dir, timeout=300, prelude=activate(docs_dir, docs_dir))


def test_docs_quickstart_scaffold_run_invoke_test(docs_local):
    run = docs_local
    assert re.search(r"\b\d+\.\d+\.\d+", run.of("pyfunc --version"))
    assert "Created the cloudevents function 'hello' in hello" in run.of("pyfunc init hello")
    reply = run.of("pyfunc invoke --type com.example.ping")
    assert "HTTP 200 OK" in reply and "com.example.reply" in reply and '"message": "hello"' in reply
    tests = run.of("pytest")
    assert re.search(r"\b\d+ passed\b", tests) and "failed" not in tests, tests
    assert run.cwd.name == "hello"  # `cd hello` in step 2


# ---------------------------------------------------------------------------------- seed handlers after pip install

# The seed README's handler style, and 0.1.0's reply type: an argument annotated with
# cloudevents.sdk.event.v1.Event, a reply that is a cloudevents.http.CloudEvent. Both modules are
# cloudevents 1.x's (2.x moved them under cloudevents.v1): pyproject keeps the 1.x line so that
# `pip install -e '.[reload]'` resolves one that has them.
SEED_HANDLER = """
from cloudevents.http import CloudEvent
from cloudevents.sdk.event.v1 import Event


def handler(event: Event):
    return CloudEvent({"type": "com.example.reply", "source": "/seed"},
                      {"got": event.Data() if hasattr(event, "Data") else event.data})
"""


def _quickstart_python(checkout: Path) -> str:
    return str(checkout / ".venv" / "bin" / "python")


def test_a_seed_style_handler_serves_in_the_quickstart_venv(checkout, tmp_path):
    """The venv the quickstart's `pip install -e '.[reload]'` made (wheels from the index), serving
    a handler written as the seed README says, answering a binary CloudEvent with a CloudEvent."""
    import json
    import urllib.request

    from support import free_port

    python = _quickstart_python(checkout)
    major = subprocess.run([python, "-c", "from importlib.metadata import version; print(version('cloudevents'))"],
                           capture_output=True, text=True, timeout=60).stdout.strip()
    assert major.startswith("1."), f"pip resolved cloudevents {major}: seed handlers' modules are 1.x's"
    function = tmp_path / "seed"
    function.mkdir()
    (function / "handler.py").write_text(SEED_HANDLER)
    port = free_port()
    env = {**script_env(), "PORT": str(port), "PYFUNC_HOST": "127.0.0.1"}
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen([python, "-m", "pyfunc", str(function)], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/", data=b'{"name": "Ada"}', method="POST",
            headers={"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/test", "ce-type": "com.example.ping",
                     "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 200
            assert reply.headers["ce-type"] == "com.example.reply" and reply.headers["ce-source"] == "/seed"
            assert json.loads(reply.read()) == {"got": {"name": "Ada"}}
    finally:
        server.kill()
        server.wait(10)


# The extras the quickstart's install leaves out, really missing there: (environment, setting, extra).
MISSING_IN_QUICKSTART = [
    ({"PYFUNC_DEDUPE": "redis://127.0.0.1:1/0"}, "PYFUNC_DEDUPE=redis://", "redis"),
    ({"PYFUNC_METRICS": "true"}, "PYFUNC_METRICS=true", "metrics"),
    ({"OTEL_TRACES_EXPORTER": "console"}, "OTEL_TRACES_EXPORTER=console", "otel"),
]


@pytest.mark.parametrize(("env", "setting", "extra"), MISSING_IN_QUICKSTART, ids=[m[2] for m in MISSING_IN_QUICKSTART])
def test_an_extra_the_quickstart_venv_lacks_is_one_error_line(checkout, tmp_path, env, setting, extra):
    from support import free_port

    function = tmp_path / "fn"
    function.mkdir()
    (function / "handler.py").write_text("def handler(body):\n    return body\n")
    result = subprocess.run([_quickstart_python(checkout), "-m", "pyfunc", str(function)], capture_output=True,
                            text=True, timeout=60, env={**script_env(), **env, "PORT": str(free_port())})
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("pyfunc: error: ") and setting in line and f"pyfunc-invoker[{extra}]" in line, line


# ---------------------------------------------------------------------------------- the build part (e2e)


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=script_env(), timeout=timeout)


def build_prerequisites() -> Optional[str]:
    if shutil.which("docker") is None or docker("info", timeout=30).returncode != 0:
        return "docker is not running (scripts/install-tools.sh starts it)"
    if docker("image", "inspect", "pyfunc/builder").returncode != 0:
        return "no pyfunc/builder image (scripts/build-images.sh)"
    if not (shutil.which("pack") or (CACHE / "tools" / "bin" / "pack").exists()):
        return "no pack (scripts/install-tools.sh)"
    return None


@pytest.fixture(scope="session")
def build_tools() -> None:
    """Skip before anything runs (session fixtures first) when the build part cannot run here."""
    missing = build_prerequisites()
    if missing:
        pytest.skip(missing)


@pytest.fixture
def hello_image(build_tools) -> Iterator[None]:
    yield
    docker("rm", "-f", "hello")
    docker("rmi", "-f", "hello")


def check_build(run: Run, data: str) -> None:
    built = run.of("pyfunc build")
    assert "==> Built hello" in built, built[-4000:]
    assert "pyfunc check" in built  # the buildpack checked the handler
    reply = run.of("pyfunc invoke --data")
    assert "HTTP 200 OK" in reply and "com.example.reply" in reply and data in reply, reply


@pytest.mark.e2e
def test_readme_quickstart_build_and_run_the_image(build_tools, readme_local, checkout, hello_image, port_8080):
    run = run_lines(readme_quickstart().build, readme_local.cwd, timeout=900,
                    prelude=activate(checkout, readme_local.cwd))
    check_build(run, '"name": "Ada"')
    assert [uncommented(line) for line in run.skipped] == ["kubectl apply -f hello/service.yaml"]


@pytest.mark.e2e
def test_docs_quickstart_build_and_run_the_image(build_tools, docs_local, docs_dir, hello_image, port_8080):
    run = run_lines(docs_quickstart().build, docs_local.cwd, timeout=900, prelude=activate(docs_dir, docs_local.cwd))
    check_build(run, '"message": "hello"')
    assert [line.split()[0] for line in run.skipped] == ["docker", "kubectl"]


def test_demo_sh_ends_with_the_quickstarts_install_lines():
    """scripts/demo.sh prints the next steps; its install lines are the README's, not PyPI's 0.1.0."""
    notes = [uncommented(line.strip()[len('note "'):-1]) for line in (REPO / "scripts" / "demo.sh").read_text()
             .splitlines() if line.strip().startswith('note "')]
    for line in readme_quickstart().install:
        assert uncommented(line) in notes, line
    assert "pyfunc build hello --image hello" in notes
