"""Each engine wired by thinpool apply, then proven by its real daemon running a container on the pool."""

from __future__ import annotations

import json

import pytest

from thinpool.rehearse.vm import VM

from .helpers import DOCKERD, NO_UDEV, lvs, start_daemon, stop_docker, thinpool_json

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

WRITE_64_MIB = "dd if=/dev/urandom of=/data bs=1M count=64 2>/dev/null && sync"
MiB = 1024 * 1024


def run_exec_start_pre(vm: VM, drop_in: str) -> None:
    """Run a drop-in's ExecStartPre= lines as systemd does: '$$' is a literal '$', a leading '-' ignores failure."""
    for line in vm.run(["cat", drop_in]).stdout.splitlines():
        if line.startswith("ExecStartPre="):
            command = line.removeprefix("ExecStartPre=").removeprefix("-").replace("$$", "$")
            vm.run(["sh", "-c", f"exec {command}"])  # check=True: the command itself must work


def _used_bytes(vm: VM, name: str) -> int:
    """Bytes of the pool (or thin volume) in use, from lvm's report."""
    lv = lvs(vm, "docker")[name]
    return lv.size * int(float(lv.data_percent) * 100) // 10000


def _converged(vm: VM, *args: str) -> bool:
    code, result, err = thinpool_json(vm, "apply", "--yes", *args)
    assert code == 0, err or result
    return result["changed"] is False


@pytest.mark.releases("debian-12")
def test_docker_devicemapper_runs_a_container_on_the_pool(vm: VM, images: dict[str, str]) -> None:
    args = ("--engine", "docker-devicemapper", *NO_UDEV, "/dev/vda")
    code, result, err = thinpool_json(vm, "apply", "--yes", *args)
    assert code == 0, err or result
    start_daemon(vm, DOCKERD, ["docker", "version"], "/tmp/dockerd.log")
    status = json.loads(vm.run(["docker", "info", "--format", "{{json .DriverStatus}}"]).stdout)
    reported = dict(status)
    assert reported["Pool Name"] == "docker-thinpool" and reported["Deferred Removal Enabled"] == "true"
    assert reported["Backing Filesystem"] == "xfs"
    vm.run(["docker", "import", images["rootfs"], "tiny:1"], timeout=300)
    before = _used_bytes(vm, "thinpool")
    vm.run(["docker", "run", "--network", "none", "--name", "w1", "tiny:1", "sh", "-c", WRITE_64_MIB], timeout=300)
    assert _used_bytes(vm, "thinpool") - before >= 60 * MiB  # the container's writes landed in the pool
    assert _converged(vm, *args)  # with Docker running on it, a second apply changes nothing


def test_containerd_devmapper_runs_a_container_on_the_pool(vm: VM, images: dict[str, str]) -> None:
    args = ("--engine", "containerd-devmapper", "/dev/vda")
    code, result, err = thinpool_json(vm, "apply", "--yes", *args)
    assert code == 0, err or result
    start_daemon(vm, ("containerd",), ["ctr", "version"], "/tmp/containerd.log")
    plugins = vm.run(["ctr", "plugins", "ls"]).stdout
    assert any(line.split()[1:2] == ["devmapper"] and line.split()[-1] == "ok" for line in plugins.splitlines())
    vm.run(["ctr", "images", "import", "--snapshotter", "devmapper", images["oci"]], timeout=300)
    before = _used_bytes(vm, "thinpool")
    run = ["ctr", "run", "--snapshotter", "devmapper", "docker.io/library/tiny:1", "w1", "sh", "-c", WRITE_64_MIB]
    vm.run(run, timeout=300)
    assert _used_bytes(vm, "thinpool") - before >= 60 * MiB
    snapshots = vm.run(["ctr", "snapshots", "--snapshotter", "devmapper", "ls"]).stdout
    assert "w1" in snapshots
    assert _converged(vm, *args)


def test_docker_overlay2_runs_on_an_xfs_thin_volume(vm: VM, images: dict[str, str]) -> None:
    args = ("--engine", "docker-overlay2-thin", "--volume-size", "2GiB", "/dev/vda")
    code, result, err = thinpool_json(vm, "apply", "--yes", *args)
    assert code == 0, err or result
    mounts = [line.split() for line in vm.run(["cat", "/proc/mounts"]).stdout.splitlines()]
    (mount,) = [fields for fields in mounts if fields[1] == "/var/lib/docker"]
    assert mount[0] == "/dev/mapper/docker-docker--data" and mount[2] == "xfs" and "prjquota" in mount[3]
    assert "ftype=1" in vm.run(["xfs_info", "/var/lib/docker"]).stdout
    assert lvs(vm, "docker")["docker-data"].size == 2 * 1024 * MiB
    run_exec_start_pre(vm, "/etc/systemd/system/docker.service.d/thinpool.conf")  # as systemd would (none here)
    dm = f"dm-{lvs(vm, 'docker')['docker-data'].kernel_device.split(':')[1]}"
    knobs = f"/sys/fs/xfs/{dm}/error/metadata"
    set_to = vm.run(["sh", "-c", f"cat {knobs}/ENOSPC/max_retries {knobs}/EIO/retry_timeout_seconds"]).stdout.split()
    assert set_to == ["0", "30"]  # XFS fails at once on ENOSPC (kernel default: retry forever)
    start_daemon(vm, DOCKERD, ["docker", "version"], "/tmp/dockerd.log")
    info = json.loads(vm.run(["docker", "info", "--format", "{{json .}}"]).stdout)
    assert info["Driver"] == "overlay2" and dict(info["DriverStatus"])["Backing Filesystem"] == "xfs"
    vm.run(["docker", "import", images["rootfs"], "tiny:1"], timeout=300)
    before = _used_bytes(vm, "docker-data")
    vm.run(["docker", "run", "--network", "none", "--name", "w1", "tiny:1", "sh", "-c", WRITE_64_MIB], timeout=300)
    assert _used_bytes(vm, "docker-data") - before >= 60 * MiB
    assert _converged(vm, *args)


TURN_ON_CONTAINERD_STORE = """import json
path = "/etc/docker/daemon.json"
data = json.load(open(path))
data["features"] = {"containerd-snapshotter": True}
open(path, "w").write(json.dumps(data))"""


@pytest.mark.releases("debian-13")
def test_the_containerd_store_is_found_refused_and_put_back_to_the_classic_store_on_the_pool(
    vm: VM, images: dict[str, str]
) -> None:
    """A host wired for the classic store whose operator turns Docker's containerd image store on (what a fresh
    Docker 29 does by itself): doctor names the breakage, which is real, and --force puts Docker back on the pool."""
    args = ("--engine", "docker-overlay2-thin", "--volume-size", "2GiB")
    code, result, err = thinpool_json(vm, "apply", "--yes", *args, "/dev/vda")
    assert code == 0, err or result
    vm.run(["python3", "-c", TURN_ON_CONTAINERD_STORE])
    code, doctor, err = thinpool_json(vm, "doctor", "docker/thinpool")
    found = {finding["code"]: finding for finding in doctor["findings"]}
    assert code == 4 and found["docker-store-mismatch"]["severity"] == "critical", err or doctor
    start_daemon(vm, DOCKERD, ["docker", "version"], "/tmp/dockerd.log")
    broken = vm.run(
        ["bash", "-c", f"docker import {images['rootfs']} tiny:1 && docker run --rm --network none tiny:1 true"],
        check=False,
        timeout=300,
    )
    assert broken.returncode != 0 and "snapshotter not loaded: overlay2" in broken.stderr, broken.stderr
    stop_docker(vm)
    code, refused, err = thinpool_json(vm, "engine", "configure", "--yes", *args)
    assert code == 1 and "containerd image store" in refused["problem"] and "--force" in refused["fix"], refused
    code, result, err = thinpool_json(vm, "engine", "configure", "--yes", "--force", *args)
    assert code == 0, err or result
    daemon_json = json.loads(vm.run(["cat", "/etc/docker/daemon.json"]).stdout)
    assert daemon_json["features"] == {"containerd-snapshotter": False}, daemon_json
    start_daemon(vm, DOCKERD, ["docker", "version"], "/tmp/dockerd.log")
    vm.run(["docker", "import", images["rootfs"], "tiny:1"], timeout=300)
    before = _used_bytes(vm, "docker-data")
    vm.run(["docker", "run", "--network", "none", "--name", "w1", "tiny:1", "sh", "-c", WRITE_64_MIB], timeout=300)
    assert _used_bytes(vm, "docker-data") - before >= 60 * MiB  # the classic store, on the thin volume
    code, doctor, err = thinpool_json(vm, "doctor", "docker/thinpool")
    assert not {"docker-store-mismatch", "engine-data-outside-pool"} & {f["code"] for f in doctor["findings"]}


@pytest.mark.releases("debian-13")
def test_docker_with_the_containerd_store_keeps_images_and_layers_on_the_pool_and_maintain_gives_them_back(
    vm: VM, images: dict[str, str]
) -> None:
    """Docker 26 on the system containerd (as Debian's docker.service runs it) with the containerd image store:
    the layers land on containerd's thin volume, Docker's data root on its own, and fstrim gives them back."""
    args = ("--engine", "docker-containerd-thin", "--volume-size", "2GiB", "/dev/vda")
    code, result, err = thinpool_json(vm, "apply", "--yes", *args)
    assert code == 0, err or result
    mounts = {
        fields[1]: fields for fields in (line.split() for line in vm.run(["cat", "/proc/mounts"]).stdout.splitlines())
    }
    assert mounts["/var/lib/docker"][0] == "/dev/mapper/docker-docker--data"
    assert mounts["/var/lib/containerd"][0] == "/dev/mapper/docker-containerd--data"
    assert all(
        mounts[root][2] == "xfs" and "prjquota" in mounts[root][3]
        for root in ("/var/lib/docker", "/var/lib/containerd")
    )
    run_exec_start_pre(vm, "/etc/systemd/system/containerd.service.d/thinpool.conf")
    run_exec_start_pre(vm, "/etc/systemd/system/docker.service.d/thinpool.conf")
    start_daemon(vm, ("containerd",), ["ctr", "version"], "/tmp/containerd.log")
    start_daemon(
        vm, (*DOCKERD, "--containerd=/run/containerd/containerd.sock"), ["docker", "version"], "/tmp/dockerd.log"
    )
    info = json.loads(vm.run(["docker", "info", "--format", "{{json .}}"]).stdout)
    assert dict(info["DriverStatus"]).get("driver-type") == "io.containerd.snapshotter.v1", info["DriverStatus"]
    vm.run(["docker", "import", images["rootfs"], "tiny:1"], timeout=300)
    before = _used_bytes(vm, "containerd-data")
    vm.run(["docker", "run", "--network", "none", "--name", "w1", "tiny:1", "sh", "-c", WRITE_64_MIB], timeout=300)
    written = _used_bytes(vm, "containerd-data")
    assert written - before >= 60 * MiB  # the container's layer is a containerd snapshot, on its thin volume
    code, doctor, err = thinpool_json(vm, "doctor", "docker/thinpool")
    assert not {"docker-store-mismatch", "engine-data-outside-pool"} & {f["code"] for f in doctor["findings"]}
    vm.run(["docker", "rm", "w1"])
    vm.run(["docker", "rmi", "tiny:1"])
    code, cared, err = thinpool_json(vm, "maintain", "docker/thinpool", "--reclaim-above", "16MiB")
    assert code == 0, err or cared
    assert _used_bytes(vm, "containerd-data") <= written - 60 * MiB  # fstrim gave the pool its chunks back
    stop_docker(vm)
    assert _converged(vm, *args)


@pytest.mark.releases("debian-13")
def test_containerd_overlayfs_runs_a_container_on_a_thin_volume_and_maintain_gives_its_space_back(
    vm: VM, images: dict[str, str]
) -> None:
    args = ("--engine", "containerd-overlayfs-thin", "--volume-size", "2GiB", "/dev/vda")
    code, result, err = thinpool_json(vm, "apply", "--yes", *args)
    assert code == 0, err or result
    mounts = [line.split() for line in vm.run(["cat", "/proc/mounts"]).stdout.splitlines()]
    (mount,) = [fields for fields in mounts if fields[1] == "/var/lib/containerd"]
    assert mount[0] == "/dev/mapper/docker-containerd--data" and mount[2] == "xfs" and "prjquota" in mount[3]
    run_exec_start_pre(vm, "/etc/systemd/system/containerd.service.d/thinpool.conf")
    start_daemon(vm, ("containerd",), ["ctr", "version"], "/tmp/containerd.log")
    vm.run(["ctr", "images", "import", images["oci"]], timeout=300)  # the default snapshotter: overlayfs
    before = _used_bytes(vm, "containerd-data")
    vm.run(["ctr", "run", "docker.io/library/tiny:1", "w1", "sh", "-c", WRITE_64_MIB], timeout=300)
    written = _used_bytes(vm, "containerd-data")
    assert written - before >= 60 * MiB  # the container's layer is on the thin volume
    assert "w1" in vm.run(["ctr", "snapshots", "ls"]).stdout
    vm.run(["ctr", "containers", "rm", "w1"])  # its snapshot goes with it
    vm.run(["ctr", "images", "rm", "--sync", "docker.io/library/tiny:1"])
    code, cared, err = thinpool_json(vm, "maintain", "docker/thinpool", "--reclaim-above", "16MiB")
    assert code == 0, err or cared
    assert _used_bytes(vm, "containerd-data") <= written - 60 * MiB  # fstrim gave the pool its chunks back
    assert _converged(vm, *args)


GRAPHROOT = "/var/lib/containers/storage"
OUTSIDE = "engine-data-outside-pool"


@pytest.mark.releases("debian-13")
def test_podman_overlay_runs_a_container_on_a_thin_volume_with_quotas_and_maintain_gives_its_space_back(
    vm: VM, images: dict[str, str]
) -> None:
    args = ("--engine", "podman-overlay-thin", "--volume-size", "2GiB", "/dev/vda")
    code, result, err = thinpool_json(vm, "apply", "--yes", *args)
    assert code == 0, err or result
    mounts = [line.split() for line in vm.run(["cat", "/proc/mounts"]).stdout.splitlines()]
    (mount,) = [fields for fields in mounts if fields[1] == "/var/lib/containers/storage"]
    assert mount[0] == "/dev/mapper/docker-containers--data" and mount[2] == "xfs" and "prjquota" in mount[3]
    vm.run(["podman", "import", images["rootfs"], "tiny:1"], timeout=300)
    store = json.loads(vm.run(["podman", "info", "--format", "json"]).stdout)["store"]
    assert store["graphDriverName"] == "overlay" and store["graphRoot"] == "/var/lib/containers/storage", store
    before = _used_bytes(vm, "containers-data")
    podman_run = ["podman", "run", "--network", "none"]
    vm.run([*podman_run, "--name", "w1", "tiny:1", "sh", "-c", WRITE_64_MIB], timeout=300)
    written = _used_bytes(vm, "containers-data")
    assert written - before >= 60 * MiB  # the container's layer is on the thin volume
    assert OUTSIDE not in _doctor_codes(vm)  # its layers are there, on the volume's filesystem
    vm.run(["cp", "-a", f"{GRAPHROOT}/overlay/l", "/tmp/layer-links"])
    capped = vm.run(
        [*podman_run, "--rm", "--storage-opt", "size=16m", "tiny:1", "sh", "-c", WRITE_64_MIB], check=False, timeout=300
    )
    assert capped.returncode != 0  # project quotas: a container's size limit holds
    vm.run(["podman", "rm", "w1"])
    vm.run(["podman", "rmi", "tiny:1"])
    code, cared, err = thinpool_json(vm, "maintain", "docker/thinpool", "--reclaim-above", "16MiB")
    assert code == 0, err or cared
    assert _used_bytes(vm, "containers-data") <= written - 60 * MiB  # fstrim gave the pool its chunks back
    assert _converged(vm, *args)
    # The volume unmounted and the same layers kept on the root filesystem, as a store never moved has them:
    vm.run(
        [
            "bash",
            "-c",
            f"umount {GRAPHROOT} && mkdir -p {GRAPHROOT}/overlay && mv /tmp/layer-links {GRAPHROOT}/overlay/l",
        ]
    )
    try:
        found = _doctor_codes(vm)
    finally:
        vm.run(["rm", "-rf", GRAPHROOT])
    assert found[OUTSIDE].startswith("containers-storage (Podman, Buildah, CRI-O) keeps 2 layers in"), found[OUTSIDE]


def _doctor_codes(vm: VM) -> dict[str, str]:
    """doctor's findings on the pool: code -> problem."""
    _, doctor, err = thinpool_json(vm, "doctor", "docker/thinpool")
    assert doctor.get("kind") == "thinpool-doctor", err
    return {finding["code"]: finding["problem"] for finding in doctor["findings"]}


def _sha(vm: VM, path: str) -> str:
    return vm.run(["sha256sum", path]).stdout


@pytest.mark.releases("debian-12")
def test_broken_daemon_json_is_refused_and_nothing_is_touched(vm: VM) -> None:
    vm.run(["bash", "-c", 'mkdir -p /etc/docker && printf \'{"log-driver": "journald",\\n\' > /etc/docker/daemon.json'])
    before = _sha(vm, "/etc/docker/daemon.json")
    code, _, err = thinpool_json(vm, "apply", "--yes", "--engine", "docker-devicemapper", "/dev/vda")
    assert code == 1 and "not valid JSON" in err and "left untouched" in err
    assert _sha(vm, "/etc/docker/daemon.json") == before
    assert vm.run(["pvs", "--noheadings"]).stdout.strip() == ""  # refused before any disk was touched
    code, result, err = thinpool_json(vm, "apply", "--yes", "--engine", "docker-devicemapper", "--force", "/dev/vda")
    assert code == 0, err or result
    backups = vm.run(["bash", "-c", "cat /etc/docker/daemon.json.thinpool-*.bak"]).stdout
    assert backups == '{"log-driver": "journald",\n'  # --force replaced it, and kept the old one


def test_docker_25_is_refused_devicemapper_with_the_alternatives(vm: VM) -> None:
    fake = "/tmp/docker25/dockerd"
    vm.run(
        [
            "bash",
            "-c",
            f"mkdir -p /tmp/docker25 && printf '#!/bin/sh\\necho Docker version 25.0.3, build 4debf41\\n'"
            f" > {fake} && chmod +x {fake}",
        ]
    )
    path = "/tmp/docker25:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    done = vm.thinpool("apply", "--yes", "--engine", "docker-devicemapper", "/dev/vda", env={"PATH": path}, check=False)
    assert done.returncode == 1 and "dockerd 25.0.3 has no devicemapper" in done.stderr
    assert "docker-overlay2-thin" in done.stderr
    assert vm.run(["pvs", "--noheadings"]).stdout.strip() == ""
