"""Strip a Debian root filesystem down to what the runtime needs: Python and its shared libraries.

Run by image/Dockerfile as root, inside the stage whose files become pyfunc/base. Python does the
deleting because the shell, coreutils and dpkg are among the things deleted.

Kept: the packages in KEEP and, transitively, what they Depend/Pre-Depend on (minus DROP), with
no executable but python3 in bin/ or sbin/. Everything else that dpkg installed goes, then dpkg's
and apt's own databases, caches and logs. Prints what it kept, for the build log.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

# The root's own python3 (3.11 on bookworm, 3.13 on trixie, ...): Debian names its packages after it.
PY = f"python{sys.version_info[0]}.{sys.version_info[1]}"
# What python and TLS need at run time: the interpreter, its stdlib, CA certificates, time zones,
# MIME types, /etc/services and protocols, OpenSSL's configuration links (/usr/lib/ssl).
KEEP = {PY, f"{PY}-minimal", f"lib{PY}-stdlib", "python3-minimal", "python3",
        "ca-certificates", "openssl", "tzdata", "media-types", "netbase", "base-files", "libc6"}
# Never kept, even when a kept package depends on them (those dependencies are for maintainer
# scripts, which never run again: there is no dpkg).
DROP = {"debconf", "perl-base", "dpkg", "apt", "bash", "dash", "coreutils", "debianutils", "adduser",
        f"{PY}-venv", "python3-pip-whl", "python3-setuptools-whl", "readline-common", "libc-bin"}
# Executables kept on the image (bin/ and sbin/ everywhere): the interpreter only.
KEEP_EXE = re.compile(rf"python3(\.{sys.version_info[1]})?")
# Files of kept packages that the runtime never needs: tools, scripts, docs.
EXTRA = ["/usr/lib/ssl/misc", "/usr/share/doc", "/usr/share/man", "/usr/share/info", "/usr/share/lintian",
         "/usr/share/locale", "/usr/share/doc-base", "/usr/share/bug", "/usr/share/menu", "/usr/share/pixmaps",
         "/usr/share/applications", f"/usr/lib/{PY}/ensurepip", f"/usr/lib/{PY}/idlelib",
         f"/usr/lib/{PY}/lib2to3", f"/usr/lib/{PY}/pydoc_data", f"/usr/lib/{PY}/turtledemo",
         f"/usr/lib/{PY}/venv", f"/usr/lib/{PY}/test", "/var", "/run/lock",
         "/etc/apt", "/etc/dpkg", "/etc/cron.daily", "/etc/logrotate.d",
         "/etc/debconf.conf", "/etc/systemd", "/etc/init.d", "/etc/pam.d", "/etc/security", "/etc/skel",
         "/etc/update-motd.d", "/etc/profile.d", "/etc/bash.bashrc", "/etc/profile", "/etc/shells",
         "/etc/gshadow", "/etc/shadow", "/etc/gshadow-", "/etc/shadow-", "/etc/passwd-", "/etc/group-",
         "/usr/share/perl5", "/usr/lib/x86_64-linux-gnu/perl-base", "/usr/share/debconf", "/root/.bashrc",
         "/root/.profile", "/usr/local/bin", "/usr/local/sbin", "/usr/games", "/usr/local/games"]
STATUS = Path("/var/lib/dpkg/status")
INFO = Path("/var/lib/dpkg/info")


def installed() -> dict[str, list[str]]:
    """Package -> the names it Depends or Pre-Depends on (all alternatives)."""
    deps: dict[str, list[str]] = {}
    for stanza in STATUS.read_text().split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): (.*)$", stanza, re.M))
        if "installed" not in fields.get("Status", ""):
            continue
        names = []
        for key in ("Depends", "Pre-Depends"):
            for item in re.split(r"[,|]", fields.get(key, "")):
                if item.strip():
                    names.append(item.split()[0].split(":")[0])
        deps[fields["Package"]] = names
    return deps


def closure(deps: dict[str, list[str]]) -> set[str]:
    keep, todo = set(), list(KEEP)
    while todo:
        name = todo.pop()
        if name in keep or name in DROP or name not in deps:
            continue
        keep.add(name)
        todo.extend(deps[name])
    return keep


def files_of(package: str) -> list[str]:
    for lst in (INFO / f"{package}.list", INFO / f"{package}:amd64.list"):
        if lst.exists():
            return lst.read_text().splitlines()
    return []


def remove(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def main() -> None:
    deps = installed()
    keep = closure(deps)
    kept_files = {f for p in keep for f in files_of(p)}
    doomed = {f for p in deps if p not in keep for f in files_of(p)} - kept_files
    # Files before directories; a directory goes only when nothing is left in it.
    for path in sorted(doomed, key=len, reverse=True):
        if os.path.isdir(path) and not os.path.islink(path):
            if not os.listdir(path):
                os.rmdir(path)
        elif os.path.lexists(path):
            os.unlink(path)
    for path in EXTRA:
        remove(path)
    for bindir in ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"):
        for entry in os.listdir(bindir) if os.path.isdir(bindir) else []:
            if not KEEP_EXE.fullmatch(entry):
                remove(os.path.join(bindir, entry))
    os.unlink(__file__)
    print("kept packages:", " ".join(sorted(keep)), file=sys.stderr)


if __name__ == "__main__":
    main()
