"""Helpers of scripts/cluster.sh that are easier in Python than in shell.

    image NAME ENTRYPOINT BINARY [USER] > image.tar
        A one-layer image (the static BINARY at ENTRYPOINT, FROM scratch) as a `docker save` archive,
        which `ctr images import` takes: the cluster's pod images without docker or a registry.
        Deterministic (fixed mtimes), so a rebuilt tar of the same binary is the same image.
    manifests IMAGE_PREFIX TAG FILE... > all.yaml
        Knative's release YAML for this cluster: `ko://knative.dev/<repo>/cmd/<path>` images become
        IMAGE_PREFIX/<repo>-<basename>:TAG (the images made above), and CPU requests shrink to 10m so
        that the whole control plane fits on a 2-core node next to the functions under test (limits
        stay as Knative ships them). A ConfigMap that a container's env names but no file defines
        (Eventing's image lists for its integrations and transformations, shipped from other
        repositories) is added with each key set to an image that cannot exist
        (`not-installed.invalid/KEY`): the pods start, and only those unused features would fail.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import tarfile
from pathlib import Path

__all__ = ["image_tar", "manifests"]


def _add(tar: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.mode = mode
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def image_tar(name: str, entrypoint: str, binary: Path, user: str = "") -> bytes:
    """A `docker save` archive of one image: BINARY at ENTRYPOINT, /tmp, ko's data path."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        parts = entrypoint.strip("/").split("/")
        for i in range(1, len(parts)):
            _add(layer, "/".join(parts[:i]), None, 0o755)
        _add(layer, "tmp", None, 0o1777)
        for d in ("var", "var/run", "var/run/ko"):
            _add(layer, d, None, 0o755)
        _add(layer, "/".join(parts), binary.read_bytes(), 0o755)
    layer_bytes = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": [entrypoint],
            "Env": ["PATH=/", "KO_DATA_PATH=/var/run/ko"],
            "User": user,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "scripts/cluster_tools.py image"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id[len("sha256:") :] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [name], "Layers": [layer_name]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, layer_name.split("/")[0], None, 0o755)
        _add(tar, layer_name, layer_bytes, 0o644)
        _add(tar, config_name, config_bytes, 0o644)
        _add(tar, "manifest.json", json.dumps(manifest).encode(), 0o644)
    return out.getvalue()


_KO = re.compile(r"ko://knative\.dev/(\w+)/cmd/([\w/]+)")


def manifests(prefix: str, tag: str, files: list[Path]) -> str:
    """Knative's YAML files joined, with our image names and small CPU requests."""
    docs = []
    for path in files:
        text = _KO.sub(lambda m: f"{prefix}/{m[1]}-{m[2].rsplit('/', 1)[-1]}:{tag}", path.read_text())
        out, requests_indent = [], -1
        for line in text.splitlines():
            indent = len(line) - len(line.lstrip())
            stripped = line.strip()
            if requests_indent >= 0 and stripped and indent <= requests_indent:
                requests_indent = -1
            if stripped == "requests:":
                requests_indent = indent
            elif requests_indent >= 0 and stripped.startswith("cpu:"):
                line = line[:indent] + "cpu: 10m"
            out.append(line)
        docs.append(f"# {path.name}\n" + "\n".join(out).strip("-\n "))
    text = "\n---\n".join(docs) + "\n"
    return text + "".join(f"---\n{json.dumps(cm)}\n" for cm in _missing_configmaps(text))


def _missing_configmaps(text: str) -> list[dict]:
    """ConfigMaps that env ``configMapKeyRef``s name and no document defines, with stand-in values."""
    import yaml  # python3-yaml: scripts/cluster.sh installs it (need_packages)

    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    defined = {(d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs if d.get("kind") == "ConfigMap"}
    wanted: dict[tuple[str, str], set[str]] = {}
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {}) if doc.get("kind") in (
            "Deployment", "StatefulSet", "DaemonSet") else {}
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref and not ref.get("optional"):
                    key = (doc["metadata"].get("namespace"), ref["name"])
                    wanted.setdefault(key, set()).add(ref["key"])
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
             "data": {k: f"not-installed.invalid/{k}" for k in sorted(keys)}}
            for (namespace, name), keys in sorted(wanted.items()) if (namespace, name) not in defined]


def main(argv: list[str]) -> int:
    if len(argv) >= 5 and argv[1] == "image":
        sys.stdout.buffer.write(image_tar(argv[2], argv[3], Path(argv[4]), argv[5] if len(argv) > 5 else ""))
        return 0
    if len(argv) >= 4 and argv[1] == "manifests":
        sys.stdout.write(manifests(argv[2], argv[3], [Path(p) for p in argv[4:]]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
