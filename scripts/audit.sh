#!/usr/bin/env bash
# pip-audit over the images' locked Python packages: image/requirements.lock (the runtime) and
# builder/requirements.lock (pip and cyclonedx-bom, build image only).
#
# Verdicts: a known vulnerability fails the run. A package that cannot be audited from here is a
# WARNING naming the package and the reason, never a failure: otherwise any upstream release (which
# makes a locked version "not the latest") or a registry hiccup would turn CI red with no change of
# ours. Taking upstream fixes is a deliberate step: UPGRADE=1 scripts/lock.sh, review, commit.
#
# Vulnerability data, from here: pip-audit's services are PyPI's per-version JSON API
# (/pypi/NAME/VERSION/json, answers 404 here) and OSV (unreachable here). So packages pip-audit
# reports as skipped are checked against PyPI's project JSON (/pypi/NAME/json, reachable), whose
# `vulnerabilities` are those of the latest release: exact for a package locked at its latest
# release, and no verdict at all for one locked below it (a warning). image/audit-exceptions.txt
# gives the reason a package is kept below its latest release on purpose (printed with it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
audit="$(py_tool pip-audit "$PIP_AUDIT_VERSION")/pip-audit"
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
for lock in image/requirements.lock builder/requirements.lock; do
  step "pip-audit --vulnerability-service pypi -r $lock"
  report="$out/$(basename "$(dirname "$lock")").json"
  # --disable-pip: the lock is complete and hashed, nothing to resolve; no venv is made.
  # Exit 1 with a report means vulnerabilities (judged below); without a report pip-audit could not
  # run at all (registry unreachable): every package of that lock is then unaudited, a warning.
  "$audit" --vulnerability-service pypi --disable-pip --require-hashes --progress-spinner off \
    -f json -o "$report" -r "$REPO/$lock" 2>"$out/stderr" || true
  if ! [ -s "$report" ]; then
    note "WARNING: pip-audit could not audit $lock: $(tail -n 1 "$out/stderr")"
    rm -f "$report"
  fi
done
step "Judging the reports; checking what pip-audit skipped against PyPI's project JSON"
python3 "$REPO/scripts/audit_reports.py" "$REPO/image/audit-exceptions.txt" "$out"
step "No known vulnerabilities in the locked packages"
