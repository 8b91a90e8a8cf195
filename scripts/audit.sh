#!/usr/bin/env bash
# pip-audit over the images' locked Python packages: image/requirements.lock (the runtime) and
# builder/requirements.lock (pip and cyclonedx-bom, build image only). Fails on any known
# vulnerability, and on any package it could not audit: never a silent pass.
#
# Vulnerability data, from here: pip-audit's services are PyPI's per-version JSON API
# (/pypi/NAME/VERSION/json, answers 404 here) and OSV (unreachable here). So packages pip-audit
# reports as skipped are checked against PyPI's project JSON (/pypi/NAME/json, reachable), whose
# `vulnerabilities` are those of the latest release: exact for a package locked at its latest
# release. A package locked below it cannot be audited from here and fails the run, unless it is
# listed in image/audit-exceptions.txt with the reason (printed on every run).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
audit="$(py_tool pip-audit "$PIP_AUDIT_VERSION")/pip-audit"
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
for lock in image/requirements.lock builder/requirements.lock; do
  step "pip-audit --vulnerability-service pypi -r $lock"
  # --disable-pip: the lock is complete and hashed, nothing to resolve; no venv is made.
  "$audit" --vulnerability-service pypi --disable-pip --require-hashes --progress-spinner off \
    -f json -o "$out/$(basename "$(dirname "$lock")").json" -r "$REPO/$lock" 2>"$out/stderr" ||
    { cat "$out/stderr" >&2; die "pip-audit found vulnerabilities in $lock (or failed)"; }
done
step "Checking what pip-audit skipped against PyPI's project JSON"
python3 - "$REPO/image/audit-exceptions.txt" "$out"/*.json <<'PY'
import json, sys, urllib.request
exceptions = {}
for line in open(sys.argv[1]):
    if line.split("#")[0].strip():
        exceptions[line.split("#")[0].strip()] = line.split("#", 1)[-1].strip()
failed = audited = 0
for report in sys.argv[2:]:
    for dep in json.load(open(report))["dependencies"]:
        name, version = dep["name"], dep.get("version")
        if dep.get("vulns"):
            print(f"    VULNERABLE {name}=={version}: {[v['id'] for v in dep['vulns']]}"); failed += 1
            continue
        if "skip_reason" not in dep:
            audited += 1
            continue
        version = version or dep["skip_reason"].rsplit("(", 1)[-1].rstrip(")")
        try:
            with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as r:
                project = json.load(r)
        except OSError as exc:
            print(f"    UNREACHABLE {name}: {exc}"); failed += 1
            continue
        latest = project["info"]["version"]
        if version != latest:
            key = f"{name}=={version}"
            if key in exceptions:
                print(f"    NOT AUDITED {key} (latest {latest}), accepted: {exceptions[key]}")
            else:
                print(f"    NOT AUDITED {key}: not the latest release ({latest}) and no per-version data "
                      "reachable; upgrade (UPGRADE=1 scripts/lock.sh) or list it in image/audit-exceptions.txt")
                failed += 1
        elif project["vulnerabilities"]:
            print(f"    VULNERABLE {name}=={version}: {[v['id'] for v in project['vulnerabilities']]}"); failed += 1
        else:
            audited += 1
print(f"    {audited} packages audited, {failed} problems")
sys.exit(1 if failed else 0)
PY
step "No known vulnerabilities in the locked packages"
