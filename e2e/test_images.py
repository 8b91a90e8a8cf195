"""The base (run) and build images on their own: user, contents, writable paths, lock, size, and a
plain Dockerfile built FROM the base. pyfunc/base has no shell: checks run its Python."""

from __future__ import annotations

import json
import re

import pytest
import requests
from cloudevents.http import CloudEvent, from_http, to_structured

from pyfunc_e2e import BASE, EXAMPLES, METRICS, REPO, image_size, mb, running, sh

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore:to_(binary|structured) is deprecated"),
]

BUILD = "pyfunc/build"

WRITABLE = """
import os
found = []
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
    for path in [root] + [os.path.join(root, f) for f in files]:
        if not os.path.islink(path) and os.access(path, os.W_OK):
            found.append(path)
print("\\n".join(sorted(found)))
"""


def py(script: str, *docker_args: str, image: str = BASE) -> str:
    return sh("docker", "run", "--rm", *docker_args, "--entrypoint", "python", image, "-c", script).stdout.strip()


def test_base_image_runs_as_non_root_with_the_runtime():
    config = sh("docker", "image", "inspect", "-f",
                "{{.Config.User}} {{json .Config.Entrypoint}} {{.Config.WorkingDir}}", BASE).stdout
    # 1001, not the build user 1000 that owns a function's files: a function cannot rewrite itself.
    assert config.split()[0] == "1001:1001"
    assert '["python","-m","pyfunc","/workspace"]' in config
    assert py("import os; print(os.getuid(), os.getgid())") == "1001 1001"
    assert sh("docker", "image", "inspect", "-f", "{{index .Config.Env}}", BUILD).stdout.count("CNB_USER_ID=1000")


@pytest.mark.parametrize("user", ["1001:1001", "123456:0", "1000:1000"])
def test_only_tmp_is_writable(user):
    """Even without --read-only, the runtime uid, an arbitrary uid of group 0 (OpenShift style)
    and the build uid can write nowhere in the image but /tmp."""
    assert py(WRITABLE, "-u", user).splitlines() == ["/tmp"]


def test_base_image_has_no_shell_package_manager_or_compiler():
    script = """
import os, shutil
names = ["sh", "bash", "dash", "apt", "apt-get", "dpkg", "perl", "gcc", "cc", "pip", "pip3", "ls", "cat",
         "env", "su", "login", "openssl", "tar", "useradd"]
on_path = [n for n in names if shutil.which(n, path="/opt/pyfunc/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")]
exes = sorted(e for d in ("/usr/bin", "/usr/sbin", "/usr/local/bin") if os.path.isdir(d) for e in os.listdir(d))
gone = [p for p in ("/var/lib/dpkg", "/etc/apt", "/usr/share/perl5", "/wheelhouse", "/opt/pip") if os.path.exists(p)]
import importlib.util as u
print(on_path, exes, gone, u.find_spec("pip") is not None)
"""
    assert py(script) == "[] ['python3', 'python3.11'] [] False"
    # The launcher needs no shell: our buildpack's API (0.10) has only direct processes.
    assert 'api = "0.10"' in (REPO / "buildpack" / "buildpack.toml").read_text()


def test_base_image_python_still_works():
    """What the stripping must not break: TLS with the CA bundle, time zones, MIME types, sqlite."""
    script = ("import ssl, zoneinfo, mimetypes, sqlite3, decimal, uuid, json; "
              "print(ssl.create_default_context().cert_store_stats()['x509_ca'] > 100, "
              "zoneinfo.ZoneInfo('Europe/Paris').key, mimetypes.guess_type('a.json')[0])")
    assert py(script) == "True Europe/Paris application/json"


def locked() -> dict[str, str]:
    text = (REPO / "image" / "requirements.lock").read_text()
    return {m[0]: m[1] for m in re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", text, re.M)}


def test_installed_versions_equal_the_lock():
    script = ("import importlib.metadata as m, json, re; print(json.dumps({re.sub(r'[-_.]+', '-', "
              "d.metadata['Name']).lower(): d.version for d in m.distributions()}))")
    for image in (BASE, BUILD):  # the build image carries the very same runtime venv
        installed = json.loads(py(script, image=image))
        installed.pop("pyfunc-invoker")
        assert installed == locked(), image


def test_build_and_run_images_share_the_interpreter():
    script = "import os, sys; print(os.path.realpath('/opt/pyfunc/bin/python'), sys.version)"
    assert py(script) == py(script, image=BUILD)
    tools = sh("docker", "run", "--rm", BUILD, "sh", "-c", "for c in pip cyclonedx-py apt-get; do command -v $c; done")
    assert tools.stdout.split() == ["/opt/pip/bin/pip", "/opt/pip/bin/cyclonedx-py", "/usr/bin/apt-get"]


def test_base_image_size_budget():
    size = image_size(BASE)
    METRICS["base_image_mb"] = mb(size)
    assert size < 70e6, f"pyfunc/base grew to {mb(size)} MB"


def test_plain_dockerfile_function(tmp_path):
    """Users without buildpacks: FROM pyfunc/base + COPY handler.py (COPY needs no shell)."""
    image = "pyfunc-e2e/plain-dockerfile"
    sh("docker", "build", "-q", "-f", str(REPO / "image" / "function.Dockerfile"), "-t", image,
       str(EXAMPLES / "cloudevent-echo"))
    with running(image, "-e", "PORT=9090", "--read-only", "--tmpfs", "/tmp", port=9090) as fn:
        headers, body = to_structured(
            CloudEvent({"type": "com.example.ping", "source": "/plain"}, {"plain": True}))
        r = requests.post(fn.url, headers=headers, data=body, timeout=10)
        assert r.status_code == 200, r.text
        reply = from_http(r.headers, r.content)
        assert reply["type"] == "com.example.reply"
        assert reply.data == {"plain": True}
        METRICS["cold_start_s.plain-dockerfile (run -> first 200)"] = fn.ready_seconds
