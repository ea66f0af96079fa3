"""The one place that reads the system: lvm's reports, block devices, files, engine versions, mounts.

Everything is read through the runner (commands) or under ``root`` (files), so a test can hand
in a scripted runner and a temporary folder. What comes back is plain data for the pure core.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from thinpool import engines
from thinpool.config import daemon_json
from thinpool.core import backup, health
from thinpool.core.lvm import commands, report
from thinpool.core.model import Device, EngineState, Filesystem, Observed
from thinpool.core.spec import NO_ENGINE, PoolSpec
from thinpool.core.tls import Certificate
from thinpool.errors import MissingTool
from thinpool.host import commands as host
from thinpool.host.report import parse_findmnt, parse_fuser_pids, parse_ip_addresses, parse_lsblk, parse_wipefs
from thinpool.system import files
from thinpool.system.runner import Runner

ROOT = Path("/")
ENGINE_PROGRAMS = ("dockerd", "containerd")  # their versions matter (Docker 25 has no devicemapper)
HELPER_PROGRAMS = ("dnsmasq", "resolvconf")  # only whether they are installed
VERSION_CACHE = "/var/cache/thinpool/program-versions.json"
_VERSION = re.compile(r"\bv?(\d+\.\d+\.\d+)")


def under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _mountpoints(node: dict[str, Any]) -> tuple[str, ...]:
    found = [node.get("mountpoint"), *(node.get("mountpoints") or [])]
    return tuple(sorted({str(point) for point in found if point}))


def _holders(name: str, root: Path) -> tuple[str, ...]:
    folder = under(root, f"/sys/class/block/{name}/holders")
    return tuple(sorted(entry.name for entry in folder.iterdir())) if folder.is_dir() else ()


def read_device(runner: Runner, path: str, root: Path = ROOT) -> Device | None:
    """A device as lsblk and wipefs see it; None when it does not exist."""
    listed = runner.run(host.lsblk(path), check=False)
    if not listed.ok:
        return None
    nodes = parse_lsblk(listed.stdout)
    if not nodes:
        return None
    node = nodes[0]
    children = node.get("children") or []
    signatures = runner.run(host.wipefs_probe(path), check=False)
    return Device(
        path=path,
        size=int(node["size"]),
        type=str(node.get("type", "")),
        mountpoints=_mountpoints(node) + tuple(p for child in children for p in _mountpoints(child)),
        holders=_holders(str(node["name"]), root),
        partitions=tuple(str(child.get("path") or child["name"]) for child in children),
        signatures=parse_wipefs(signatures.stdout) if signatures.ok else (),
        read_only=bool(node.get("ro")),
        rotational=bool(node.get("rota")),
        swap=node.get("fstype") == "swap",
    )


def read_lvm(runner: Runner) -> Observed:
    pvs = report.parse_pvs(runner.run(commands.pvs_report()).stdout)
    lvs = report.parse_lvs(runner.run(commands.lvs_report()).stdout)
    vgs = report.assemble_vgs(runner.run(commands.vgs_report()).stdout, pvs, lvs)
    return Observed(pvs={pv.name: pv for pv in pvs}, vgs=vgs)


def read_files(paths: Iterable[str], root: Path = ROOT) -> tuple[dict[str, str], dict[str, str]]:
    """(text by path, reason by path) of the regular files among ``paths``; a FIFO or device is never opened."""
    found: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    for path in paths:
        file = under(root, path)
        if not file.exists():
            continue
        if not file.is_file():
            unreadable[path] = "not a regular file"
            continue
        try:
            found[path] = files.read_exactly(file)
        except OSError as error:
            unreadable[path] = error.strerror or str(error)
    return found, unreadable


def read_profiles(names: Iterable[str], root: Path = ROOT) -> dict[str, str]:
    paths = {name: commands.profile_path(name) for name in names}
    found, _ = read_files(paths.values(), root)
    return {name: found[path] for name, path in paths.items() if path in found}


def observe(
    runner: Runner, devices: Iterable[str], profiles: Iterable[str] = (), root: Path = ROOT, *, vg: str = ""
) -> Observed:
    """lvm's view, and lsblk's and wipefs's of each device; a device that is already a PV of ``vg`` is not
    probed (the planner only looks at devices it would add, and converging runs often)."""
    lvm = read_lvm(runner)
    ours = {name for name, pv in lvm.pvs.items() if vg and pv.vg_name == vg}
    probed = [path for path in devices if path not in ours]
    found = {path: dev for path in probed if (dev := read_device(runner, path, root)) is not None}
    dm = report.parse_dmsetup_info(runner.run(commands.dmsetup_info(), check=False).stdout)
    return Observed(
        devices=found, pvs=lvm.pvs, vgs=lvm.vgs, profiles=read_profiles(profiles, root), dm_devices=tuple(dm)
    )


def virtual(sizes: Iterable[int], names: Iterable[str] | None = None) -> Observed:
    """Blank virtual disks (``disk1``, ``disk2`` ... unless named) for planning without touching anything."""
    sizes = list(sizes)
    labels = list(names) if names is not None else [f"disk{index}" for index in range(1, len(sizes) + 1)]
    return Observed(devices={name: Device(name, size, virtual=True) for name, size in zip(labels, sizes, strict=True)})


def observe_for(spec: PoolSpec, runner: Runner, root: Path = ROOT) -> Observed:
    """The real system as ``spec`` needs it: devices, lvm, the profile, and (with an engine) the engine."""
    observed = observe(runner, spec.devices, profiles=(spec.profile_name,), root=root, vg=spec.vg)
    if spec.vg not in observed.vgs and under(root, f"/dev/{spec.vg}").exists():
        observed = replace(observed, taken_dev_names=frozenset({spec.vg}))
    if spec.engine == NO_ENGINE:
        return observed
    return replace(observed, engine=engine_state(runner, spec, root))


def read_pool_status(runner: Runner, vg: str, pool: str, root: Path = ROOT) -> health.PoolStatus:
    """One lvm report call, plus the pool's profile file; findmnt too when thinpool's thin volumes are active."""
    text = runner.run(commands.status_report(vg)).stdout
    status = health.pool_status(text, vg, pool, read_profiles(health.profile_names(text), root))
    if not any(volume.managed and volume.device for volume in status.volumes):
        return status
    return health.with_filesystems(status, read_filesystems(runner))


def thin_pool_target(runner: Runner, vg: str, pool: str) -> tuple[str, report.ThinPoolTarget] | None:
    """The active pool's thin-pool mapping and what the kernel says of it; None when the pool is inactive."""
    for name in commands.thin_pool_devices(vg, pool):
        found = runner.run(commands.dmsetup_status(name), check=False)
        target = report.parse_thin_pool_status(found.stdout) if found.returncode == 0 else None
        if target is not None:
            return name, target
    return None


def device_users(runner: Runner, device: str, root: Path = ROOT) -> list[str]:
    """``PID (COMMAND)`` of each process using ``device`` or a filesystem on it; [] when fuser is missing."""
    try:
        found = runner.run(host.fuser_mount(device), check=False)
    except MissingTool:
        return []
    users = []
    for pid in parse_fuser_pids(found.stdout):
        try:
            name = under(root, f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            name = "?"
        users.append(f"{pid} ({name})")
    return users


def read_backups(folder: Path) -> list[backup.Backup]:
    """The finished backups in ``folder`` (those with a readable manifest), in no particular order."""
    found = []
    for manifest in sorted(folder.glob("*" + backup.MANIFEST_SUFFIX)) if folder.is_dir() else ():
        try:
            parsed = backup.parse_manifest(json.loads(manifest.read_text()))
        except (OSError, ValueError):
            parsed = None
        if parsed is not None and manifest.name == parsed.files[2]:
            found.append(parsed)
    return found


def read_filesystems(runner: Runner) -> dict[str, Filesystem]:
    """Mounted local filesystems by "MAJOR:MINOR"; one mounted in several places keeps its first mount point."""
    found: dict[str, Filesystem] = {}
    for row in parse_findmnt(runner.run(host.findmnt_usage(), check=False).stdout):
        device = str(row.get("maj:min", ""))
        size, used = int(row.get("size") or 0), int(row.get("used") or 0)
        found.setdefault(device, Filesystem(device, str(row["target"]), str(row.get("fstype", "")), size, used))
    return found


def find_program(name: str, root: Path = ROOT) -> str:
    """The program's absolute path on PATH, looked up under ``root`` ("" when there is none)."""
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = under(root, f"{folder}/{name}")
        if folder.startswith("/") and candidate.is_file() and os.access(candidate, os.X_OK):
            return f"{folder.rstrip('/')}/{name}"
    return ""


def program_version(runner: Runner, path: str) -> str:
    done = runner.run(host.program_version(path), check=False, timeout=30)
    found = _VERSION.search(done.stdout)
    return found.group(1) if done.returncode == 0 and found else ""


def _stamp(path: Path) -> str:
    """What changes when the binary is replaced: inode, size and modification time."""
    found = path.stat()
    return f"{found.st_ino}:{found.st_size}:{found.st_mtime_ns}"


def _read_cache(cache: Path) -> dict[str, Any]:
    """The cache's entries; a missing, unreadable or broken one is empty (and rewritten)."""
    try:
        known = json.loads(cache.read_text()) if cache.is_file() else {}
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def cached_program_versions(runner: Runner, paths: Iterable[str], root: Path = ROOT) -> dict[str, str]:
    """Each program's version, run once per binary: kept in VERSION_CACHE until the file at its path changes.

    For the watch commands, which run every minute, and converging applies: ``dockerd --version``
    costs more than the pool's lvm report (seconds under emulation). The cache is read once and
    written once; one that cannot be read or written is simply not used.
    """
    cache = under(root, VERSION_CACHE)
    known = _read_cache(cache)
    versions, learned = {}, {}
    for path in paths:
        try:
            stamp = _stamp(under(root, path))
        except OSError:
            versions[path] = program_version(runner, path)
            continue
        entry = known.get(path)
        if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("version"), str):
            versions[path] = str(entry["version"])
            continue
        versions[path] = program_version(runner, path)
        if versions[path]:
            learned[path] = {"stamp": stamp, "version": versions[path]}
    if learned:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            files.write_atomically(cache, json.dumps({**known, **learned}) + "\n")
        except OSError:
            pass
    return versions


def mounted_source(mount_point: str, root: Path = ROOT) -> str:
    """The source mounted on ``mount_point`` (the last mount wins), "" when none."""
    mounts = under(root, "/proc/self/mounts")
    if not mounts.is_file():
        return ""
    source = ""
    wanted = mount_point.rstrip("/") or "/"
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[1] == wanted:
            source = fields[0]
    return source


def _entries(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def host_names() -> tuple[str, ...]:
    import socket

    return tuple(dict.fromkeys(name for name in (socket.gethostname(), socket.getfqdn()) if name))


def host_addresses(runner: Runner) -> tuple[str, ...]:
    try:
        found = runner.run(host.ip_addresses(), check=False)
    except MissingTool:
        return ()
    return parse_ip_addresses(found.stdout) if found.returncode == 0 else ()


def _daemon_json(state: EngineState) -> daemon_json.DaemonJson | None:
    """daemon.json as read into ``state``; None when it is missing or does not parse."""
    parsed = daemon_json.parse(state.source(daemon_json.PATH))
    return parsed if isinstance(parsed, daemon_json.DaemonJson) else None


def daemon_certificates(parsed: daemon_json.DaemonJson | None, root: Path = ROOT) -> tuple[Certificate, ...]:
    """The certificates daemon.json's tlscert and tlscacert name (nothing is imported without them)."""
    if parsed is None or not parsed.tls_certificates:
        return ()
    import importlib.util

    if importlib.util.find_spec("cryptography") is None:  # a bare python3 (Ansible's target): not checked
        return ()
    from thinpool.system import tls

    found = []
    for path in parsed.tls_certificates:
        certificate = tls.read_certificate(under(root, path))
        if certificate is not None:
            found.append(replace(certificate, path=path))  # as daemon.json names it, not under the test root
    return tuple(found)


def silent_dns(parsed: daemon_json.DaemonJson | None) -> tuple[str, ...]:
    """The DNS servers daemon.json gives containers that do not answer a query of ours."""
    if parsed is None or not parsed.dns:
        return ()
    from thinpool.system import dns

    return tuple(address for address in parsed.dns if not dns.answers(address))


def tls_state(runner: Runner, spec: PoolSpec, state: EngineState, root: Path = ROOT) -> EngineState:
    """What daemon.json's TLS and DNS lead to: its certificates, the DNS servers that do not answer (not under a
    test's root folder, which has no resolvers to ask); for --tls-generate what thinpool made and the host's names."""
    parsed = _daemon_json(state)
    silent = silent_dns(parsed) if root == ROOT else ()
    state = replace(state, certificates=daemon_certificates(parsed, root), dns_silent=silent, observed_at=time.time())
    if not spec.engine_options.tls_generate:
        return state
    from thinpool.system import tls

    return replace(
        state, tls_files=tls.read_files(root), host_names=host_names(), host_addresses=host_addresses(runner)
    )


def engine_files(root: Path = ROOT) -> EngineState:
    """Only the engines' configuration files (what destroy checks); no program is run."""
    files, unreadable = read_files(engines.config_files(), root)
    return EngineState(observed=True, files=files, unreadable=unreadable)


def engine_state(runner: Runner, spec: PoolSpec, root: Path = ROOT) -> EngineState:
    """The engines' files, versions (from VERSION_CACHE while their binaries are unchanged), data root and volume."""
    programs = {name: path for name in ENGINE_PROGRAMS if (path := find_program(name, root))}
    by_path = cached_program_versions(runner, programs.values(), root)
    versions = {name: by_path[path] for name, path in programs.items() if by_path[path]}
    programs |= {name: path for name in HELPER_PROGRAMS if (path := find_program(name, root))}
    data_root = spec.engine_options.data_root
    volume = f"/dev/mapper/{commands.dm_name(spec.vg, spec.engine_options.volume_name)}"
    filesystem = ""
    uses_volume = spec.engine != NO_ENGINE and engines.adapter(spec.engine).USES_THIN_VOLUME
    if uses_volume and under(root, volume).exists():
        found = runner.run(host.wipefs_probe(volume), check=False)
        filesystem = next(iter(parse_wipefs(found.stdout)), "") if found.returncode == 0 else ""
    files = tls_state(runner, spec, engine_files(root), root)
    return replace(
        files,
        versions=versions,
        programs=programs,
        systemd=under(root, "/run/systemd/system").is_dir(),
        udev=under(root, "/run/udev/control").exists(),
        docker_devicemapper_state=_entries(under(root, f"{data_root}/devicemapper/metadata")) > 0,
        data_root_entries=_entries(under(root, data_root)),
        data_root_source=mounted_source(data_root, root),
        volume_filesystem=filesystem,
    )
