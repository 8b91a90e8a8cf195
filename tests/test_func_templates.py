"""func-templates/ (a Knative `func` template repository) carries pyfunc's `pyfunc init` templates.

func copies template files verbatim, so the files there are runtime/pyfunc/templates rendered with
the function's name "function"; this test keeps the two from drifting apart. (The e2e
test_knative_func.py runs the real `func create` on them.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYFUNC = REPO / "runtime" / "pyfunc" / "templates"
FUNC = REPO / "func-templates" / "python"
TEMPLATES = ("cloudevents", "http")
# func template file -> pyfunc template file (relative to PYFUNC/<template> or PYFUNC)
FILES = {
    "handler.py": "{t}/handler.py",
    "test_handler.py": "{t}/test_handler.py",
    "requirements.txt": "common/requirements.txt",
    ".gitignore": "common/gitignore",
}


def rendered(text: str) -> str:
    return text.replace("{{name}}", "function").replace("{{image}}", "function")


def test_same_templates():
    pyfunc = sorted(p.name for p in PYFUNC.iterdir() if (p / "handler.py").exists())
    func = sorted(p.name for p in FUNC.iterdir() if p.is_dir())
    assert pyfunc == func == sorted(TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("name", sorted(FILES))
def test_func_template_files_match_pyfunc_init(template, name):
    ours = (FUNC / template / name).read_text()
    source = PYFUNC / FILES[name].format(t=template)
    assert ours == rendered(source.read_text()), (
        f"func-templates/python/{template}/{name} drifted from {source.relative_to(REPO)}: copy it "
        "over with {{name}} and {{image}} replaced by 'function'")


def test_no_placeholders_left():
    for path in FUNC.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path


def test_manifests_name_the_builder():
    # (No YAML parser among the test dependencies: the e2e's real `func create` reads them.)
    assert "\nname: pyfunc\n" in (REPO / "func-templates" / "manifest.yaml").read_text()
    runtime = (FUNC / "manifest.yaml").read_text()
    assert "builderImages:\n  pack: pyfunc/builder\n" in runtime
    assert "readiness: /health/readiness" in runtime and "liveness: /health/liveness" in runtime
    assert (FUNC / "cloudevents" / "manifest.yaml").read_text() == 'invoke: "cloudevent"\n'
