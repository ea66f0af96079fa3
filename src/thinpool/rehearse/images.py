"""Tiny container images built from the host's busybox-static: no registry, no network."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

from thinpool.errors import MissingTool

APPLETS = ("sh", "dd", "sync", "cat", "ls", "df", "sleep", "head", "nslookup")


def rootfs_tar(payload: bytes = b"") -> bytes:
    """A root file system: bin/busybox and its applets as symlinks, plus /tmp (and ``payload`` as /payload)."""
    busybox = shutil.which("busybox", path="/bin:/usr/bin")
    if busybox is None:
        raise MissingTool("busybox is not installed", fix="thinpool rehearse --install-deps (busybox-static)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for folder in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            archive.addfile(info)
        archive.add(busybox, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            archive.addfile(link)
        if payload:
            _add(archive, "payload", payload)
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _blob(archive: tarfile.TarFile, data: bytes, media_type: str) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    _add(archive, f"blobs/sha256/{digest}", data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def write_oci_archive(path: Path, name: str, payload: bytes = b"") -> None:
    """An OCI image layout as a tar, for 'ctr images import' (one uncompressed layer)."""
    layer = rootfs_tar(payload)
    with tarfile.open(path, "w") as archive:
        _add(archive, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        layer_ref = _blob(archive, layer, "application/vnd.oci.image.layer.v1.tar")
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_ref["digest"]]},
        }
        config_ref = _blob(archive, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_ref,
            "layers": [layer_ref],
        }
        manifest_ref = _blob(archive, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
        annotations = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.split(":")[-1]}
        index = {"schemaVersion": 2, "manifests": [{**manifest_ref, "annotations": annotations}]}
        _add(archive, "index.json", json.dumps(index).encode())
