"""The engine part of a rehearsal: start the engine in the VM on the rehearsed configuration and run a container.

The engine is the host's own (the guest sees the host's programs); it runs in the guest only.
A container writes data, and the pool's use must grow by it: the engine really stores on the pool.
What the report shows is what the daemon itself says: its version, storage driver, and pool or
backing filesystem.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from thinpool import engines
from thinpool.core.lvm import commands, report
from thinpool.core.units import format_size
from thinpool.rehearse.images import rootfs_tar, write_oci_archive
from thinpool.rehearse.vm import SHARE_MOUNT

WRITE_MIB = 32
WRITE = f"dd if=/dev/urandom of=/data bs=1M count={WRITE_MIB} 2>/dev/null && sync"
IMAGE = "docker.io/library/thinpool-rehearsal:1"
# The guest has no udev: dockerd's devicemapper driver must not wait for it (guest only, said in the report).
NO_UDEV = "dm.override_udev_sync_check=true"
DOCKERD = "dockerd --iptables=false --bridge=none --ip-masq=false"


class Guest(Protocol):
    share: Any

    def run(self, argv: list[str], *, check: bool = ..., timeout: int | None = ...) -> Any: ...


class EngineFailed(Exception):
    """A step of the engine's run failed; the message carries the daemon's own words."""


@dataclass
class EngineRun:
    engine: str
    ok: bool = False
    version: str = ""
    storage_driver: str = ""
    reported: dict[str, str] = field(default_factory=dict)  # the daemon's words: pool name, backing filesystem
    pool_growth_bytes: int = 0
    written_bytes: int = WRITE_MIB * 1024 * 1024
    guest_only: list[str] = field(default_factory=list)  # what the VM needed that the host will not
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shell(vm: Guest, script: str, timeout: int = 300) -> Any:
    return vm.run(["bash", "-c", script], check=False, timeout=timeout)


def _step(vm: Guest, script: str, what: str, log: str = "", timeout: int = 300) -> str:
    done = _shell(vm, script, timeout)
    if done.returncode != 0:
        tail = _shell(vm, f"tail -n 15 {log}").stdout if log else ""
        raise EngineFailed(
            f"{what} failed: {(done.stderr or done.stdout).strip()[-800:]}" + (f"\n{tail}" if tail else "")
        )
    return str(done.stdout)


def _start(vm: Guest, command: str, ready: str, log: str) -> None:
    _shell(vm, f"({command} > {log} 2>&1 &)")
    _step(
        vm,
        f"for i in $(seq 240); do {ready} >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1",
        f"starting {command.split()[0]}",
        log,
        timeout=150,
    )


def pool_used_bytes(vm: Guest, vg: str, pool: str) -> int:
    found = report.parse_lvs(vm.run(list(commands.lvs_report(vg))).stdout)
    lv = next(lv for lv in found if lv.bare_name == pool)
    return int(lv.size * Decimal(lv.data_percent or "0") / 100)


def _without_udev_sync(vm: Guest) -> None:
    """Add the no-udev option to the guest's copy of daemon.json (after the rehearsed applies)."""
    data = json.loads(_step(vm, "cat /etc/docker/daemon.json", "reading daemon.json"))
    data["storage-opts"] = [*data.get("storage-opts", []), NO_UDEV]
    (vm.share / "daemon.json").write_text(json.dumps(data, indent=2) + "\n")
    _step(vm, f"cp {SHARE_MOUNT}/daemon.json /etc/docker/daemon.json", "writing daemon.json")


def _docker(vm: Guest, run: EngineRun, vg: str, pool: str) -> None:
    if run.engine == "docker-devicemapper":
        _without_udev_sync(vm)
        run.guest_only.append(f"daemon.json got {NO_UDEV} in the VM, which runs no udev")
    dockerd = DOCKERD
    if run.engine == "docker-containerd-thin":  # Debian's docker.service runs on the system containerd
        _start(vm, "containerd", "ctr version", "/tmp/containerd.log")
        dockerd += " --containerd=/run/containerd/containerd.sock"
    _start(vm, dockerd, "docker version", "/tmp/dockerd.log")
    info = json.loads(_step(vm, "docker info --format '{{json .}}'", "docker info", "/tmp/dockerd.log"))
    run.version, run.storage_driver = str(info.get("ServerVersion", "")), str(info.get("Driver", ""))
    run.reported = {str(key): str(value) for key, value in info.get("DriverStatus") or []}
    (vm.share / "rootfs.tar").write_bytes(rootfs_tar())
    _step(vm, f"docker import {SHARE_MOUNT}/rootfs.tar {IMAGE}", "docker import", "/tmp/dockerd.log")
    before = pool_used_bytes(vm, vg, pool)
    _step(
        vm,
        f"docker run --network none --name thinpool-rehearsal {IMAGE} sh -c '{WRITE}'",
        "docker run",
        "/tmp/dockerd.log",
    )
    run.pool_growth_bytes = pool_used_bytes(vm, vg, pool) - before


# What containerd runs with: containerd-overlayfs-thin writes no config.toml, and `config dump` refuses a missing
# one (containerd itself starts on its defaults, which an empty file gives too).
DUMP_CONFIG = "f=/etc/containerd/config.toml; [ -e $f ] || f=/dev/null; containerd --config $f config dump"

# The containerd engines, and the snapshotter each runs its containers with.
SNAPSHOTTERS = {"containerd-devmapper": "devmapper", "containerd-overlayfs-thin": "overlayfs"}


def _containerd(vm: Guest, run: EngineRun, vg: str, pool: str) -> None:
    snapshotter = SNAPSHOTTERS[run.engine]
    _start(vm, "containerd", "ctr version", "/tmp/containerd.log")
    versions = _step(vm, "ctr version", "ctr version", "/tmp/containerd.log")
    run.version = versions.rpartition("Version:")[2].split()[0] if "Version:" in versions else ""
    plugins = _step(vm, "ctr plugins ls", "ctr plugins ls", "/tmp/containerd.log")
    status = next((line.split()[-1] for line in plugins.splitlines() if line.split()[1:2] == [snapshotter]), "")
    if status != "ok":
        raise EngineFailed(
            f"containerd's {snapshotter} snapshotter is {status or 'absent'}, not ok: "
            + _shell(vm, "tail -n 15 /tmp/containerd.log").stdout
        )
    dumped = tomllib.loads(_step(vm, DUMP_CONFIG, "containerd config dump"))
    run.storage_driver = f"{snapshotter} snapshotter"
    run.reported = {"plugin": status, "root": str(dumped.get("root", ""))}
    if snapshotter == "devmapper":
        section = dumped.get("plugins", {}).get("io.containerd.snapshotter.v1.devmapper", {})
        run.reported["pool_name"] = str(section.get("pool_name", ""))
    write_oci_archive(vm.share / "image.tar", IMAGE)
    _step(
        vm,
        f"ctr images import --snapshotter {snapshotter} {SHARE_MOUNT}/image.tar",
        "ctr images import",
        "/tmp/containerd.log",
    )
    before = pool_used_bytes(vm, vg, pool)
    _step(
        vm,
        f"ctr run --snapshotter {snapshotter} {IMAGE} thinpool-rehearsal sh -c '{WRITE}'",
        "ctr run",
        "/tmp/containerd.log",
    )
    run.pool_growth_bytes = pool_used_bytes(vm, vg, pool) - before


def _podman(vm: Guest, run: EngineRun, vg: str, pool: str) -> None:
    """Podman has no daemon: each command reads storage.conf and works on the store itself."""
    run.version = _step(vm, "podman version --format '{{.Client.Version}}'", "podman version").strip()
    store = json.loads(_step(vm, "podman info --format json", "podman info")).get("store", {})
    run.storage_driver = str(store.get("graphDriverName", ""))
    status = {str(key): str(value) for key, value in (store.get("graphStatus") or {}).items()}
    run.reported = {"graphRoot": str(store.get("graphRoot", "")), **status}
    (vm.share / "rootfs.tar").write_bytes(rootfs_tar())
    _step(vm, f"podman import {SHARE_MOUNT}/rootfs.tar {IMAGE}", "podman import")
    before = pool_used_bytes(vm, vg, pool)
    _step(vm, f"podman run --network none --name thinpool-rehearsal {IMAGE} sh -c '{WRITE}'", "podman run")
    run.pool_growth_bytes = pool_used_bytes(vm, vg, pool) - before


def exercise(vm: Guest, engine: str, vg: str, pool: str) -> EngineRun:
    """Start ``engine`` on what the rehearsal applied, run a writing container, and say what the daemon saw."""
    run = EngineRun(engine)
    try:
        if engine in SNAPSHOTTERS:
            _containerd(vm, run, vg, pool)
        elif engine == "podman-overlay-thin":
            _podman(vm, run, vg, pool)
        else:
            _docker(vm, run, vg, pool)
    except (EngineFailed, ValueError, KeyError, StopIteration) as error:
        run.error = str(error) or type(error).__name__
        return run
    # at least 3/4 of what the container wrote must have landed in the pool
    run.ok = run.pool_growth_bytes * 4 >= run.written_bytes * 3
    if not run.ok:
        run.error = f"the pool grew by {run.pool_growth_bytes} bytes while the container wrote {run.written_bytes}"
    return run


def clean_slate_script() -> str:
    """What the plan on virtual disks assumed: none of the files the engines read (config, fstab, dnsmasq's),
    no data root (in the guest only)."""
    read = " ".join(shlex.quote(path) for path in engines.config_files())
    return (
        "rm -rf /etc/docker /etc/containerd /etc/systemd/system/docker.service.d "
        f"/etc/systemd/system/containerd.service.d /var/lib/docker /var/lib/containerd /var/lib/containers "
        f"&& rm -f {read}"
    )


def render(run: EngineRun) -> str:
    daemon = "containerd" if run.engine in SNAPSHOTTERS else "podman" if run.engine.startswith("podman") else "dockerd"
    lines = [f"Engine: {run.engine} ({daemon} {run.version or '?'}), storage driver {run.storage_driver or '?'}"]
    lines += [f"  {key}: {value}" for key, value in run.reported.items() if key in _SHOWN]
    lines.append(
        f"  a container wrote {format_size(run.written_bytes)}; the pool's data grew by "
        f"{format_size(run.pool_growth_bytes)}"
    )
    lines += [f"  in the VM only: {note}" for note in run.guest_only]
    if run.error:
        lines.append(f"  FAILED: {run.error}")
    return "\n".join(lines)


_SHOWN = (
    "Pool Name",
    "driver-type",
    "Backing Filesystem",
    "Data Space Used",
    "Supports d_type",
    "pool_name",
    "plugin",
    "root",
    "graphRoot",
)
