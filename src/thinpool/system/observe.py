"""The one place that reads the system: lvm's reports, block devices, files, mounts (system/observe_engine.py
reads the engines' side: their files, versions, certificates and DNS).

Everything is read through the runner (commands) or under ``root`` (files; filesystems' sizes through
``statvfs``), so a test can hand in a scripted runner, a temporary folder and its own statvfs. What comes
back is plain data for the pure core.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from thinpool.core import backup, boot_check, crypt, health, metadata_check
from thinpool.core.lvm import commands, report
from thinpool.core.model import CryptState, Device, Filesystem, LvmLocal, Observed
from thinpool.core.programs import argv as programs
from thinpool.core.programs.output import (
    parse_fuser_pids,
    parse_lsblk,
    parse_lsblk_parent,
    parse_mountinfo,
    parse_wipefs,
)
from thinpool.core.spec import Encryption
from thinpool.errors import MissingTool, ThinpoolError
from thinpool.system import files
from thinpool.system.runner import Runner

ROOT = Path("/")
LOCAL_FILESYSTEMS = ("xfs", "ext4")  # what thinpool makes on thin volumes; a network filesystem's statvfs may hang
StatVfs = Callable[[str], os.statvfs_result]


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
    listed = runner.run(programs.lsblk(path), check=False)
    if not listed.ok:
        return None
    nodes = parse_lsblk(listed.stdout)
    if not nodes:
        return None
    node = nodes[0]
    children = node.get("children") or []
    signatures = runner.run(programs.wipefs_probe(path), check=False)
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
    text = runner.run(commands.lvm_report()).stdout
    pvs = report.parse_pvs(text)
    lvs = report.parse_lvs(text)
    vgs = report.assemble_vgs(text, pvs, lvs)
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


def read_lvm_local(runner: Runner, root: Path = ROOT) -> LvmLocal | None:
    """lvmlocal.conf's text and the thin_check options lvm uses now (None: the file cannot be read)."""
    found, unreadable = read_files((boot_check.LVMLOCAL,), root)
    if unreadable:
        return None
    shown = runner.run(commands.lvmconfig_thin_check_options(), check=False)
    options = metadata_check.parse_options(shown.stdout) if shown.returncode == 0 else None
    return LvmLocal(found.get(boot_check.LVMLOCAL), options)


def read_crypt(
    runner: Runner, devices: Iterable[str], encryption: Encryption, observed: Observed, root: Path = ROOT
) -> Observed:
    """For --encrypt: the key's presence, crypttab, each LUKS device's UUID and whether the key opens it (a
    device about to be formatted gets a new random UUID here), and the size of each mapping already open;
    with --tpm2, whether there is a TPM and the tool, and which headers have a TPM2 key slot already."""
    key_file = encryption.key_file
    key_present = under(root, key_file).is_file()
    uuids: dict[str, str] = {}
    opens: dict[str, bool] = {}
    mappings: dict[str, Device] = {}
    enrolled: set[str] = set()
    for path in devices:
        if not crypt.is_luks(observed.devices.get(path)):
            uuids[path] = str(uuid.uuid4())
            continue
        uuids[path] = runner.run(programs.luks_uuid(path)).stdout.strip()
        opens[path] = key_present and runner.run(programs.luks_test_key(path, key_file), check=False).ok
        if encryption.tpm2 and crypt.has_tpm2_token(json.loads(runner.run(programs.luks_metadata(path)).stdout)):
            enrolled.add(path)
        if under(root, crypt.pv_path(path)).exists() and (mapping := read_device(runner, crypt.pv_path(path), root)):
            mappings[mapping.path] = mapping
    state = CryptState(
        key_present=key_present,
        crypttab=read_crypttab(root),
        uuids=uuids,
        key_opens=opens,
        tpm2_device=encryption.tpm2 and under(root, crypt.TPM2_DEVICE).exists(),
        tpm2_tool=encryption.tpm2 and has_tpm2_tool(root),
        tpm2_enrolled=frozenset(enrolled),
    )
    return replace(observed, crypt=state, devices=observed.devices | mappings)


def has_tpm2_tool(root: Path = ROOT) -> bool:
    """Whether systemd-cryptenroll is installed in ``root`` (this host's, or a guest's)."""
    return any(under(root, path).exists() for path in crypt.TPM2_TOOL_PATHS)


def read_crypt_under(runner: Runner, pv_names: Iterable[str], observed: Observed, root: Path = ROOT) -> Observed:
    """For destroy: crypttab, and the disk under each PV that is on one of thinpool's LUKS mappings."""
    crypttab = read_crypttab(root)
    mapped = crypt.by_mapping(crypt.our_entries(crypttab))
    parents = {
        pv: parse_lsblk_parent(runner.run(programs.lsblk_parents(pv)).stdout, pv) for pv in pv_names if pv in mapped
    }
    return replace(observed, crypt=replace(observed.crypt, crypttab=crypttab, parents=parents))


def read_crypttab(root: Path = ROOT) -> str | None:
    return read_files((crypt.CRYPTTAB,), root)[0].get(crypt.CRYPTTAB)


def locked_devices(runner: Runner, root: Path = ROOT) -> ThinpoolError | None:
    """Which of thinpool's encrypted devices (its lines in crypttab) are not open, and why, if any."""
    entries = crypt.our_entries(read_crypttab(root))
    if not entries:
        return None
    opened = {
        device.name for device in report.parse_dmsetup_info(runner.run(commands.dmsetup_info(), check=False).stdout)
    }
    keys = {entry.key_file: under(root, entry.key_file).is_file() for entry in entries if entry.key_file}
    return crypt.locked(entries, opened, keys)


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


def read_pool_status(
    runner: Runner, vg: str, pool: str, root: Path = ROOT, statvfs: StatVfs = os.statvfs
) -> health.PoolStatus:
    """One lvm report call, plus the pool's profile file; the mount table too when thinpool's thin volumes are
    active."""
    status = report.pool_status(runner.run(commands.status_report(vg)).stdout, vg, pool)
    if status.profile:
        status = health.with_profile(status, read_profiles((status.profile,), root).get(status.profile))
    if not any(volume.managed and volume.device for volume in status.volumes):
        return status
    return health.with_filesystems(status, read_filesystems(root, statvfs))


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
        found = runner.run(programs.fuser_mount(device), check=False)
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


def backup_folder(vg: str, pool: str, root: Path = ROOT) -> Path:
    """Where the pool's backups are: the folder ``backup --to`` chose last (remembered in the default folder's
    ``location`` file), else the default."""
    default = under(root, backup.folder(vg, pool))
    try:
        chosen = (default / backup.LOCATION).read_text().strip()
    except OSError:
        return default
    return Path(chosen) if chosen.startswith("/") else default


def read_check_record(vg: str, pool: str, root: Path = ROOT) -> metadata_check.CheckRecord | None:
    """The last full metadata check maintain ran on the pool (None: none yet, or unreadable)."""
    try:
        text = under(root, metadata_check.record_path(vg, pool)).read_text()
    except OSError:
        return None
    return metadata_check.read_record(text)


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


def read_filesystems(root: Path = ROOT, statvfs: StatVfs = os.statvfs) -> dict[str, Filesystem]:
    """Mounted local filesystems by "MAJOR:MINOR", from the kernel's mount table with statvfs's sizes (as findmnt's
    SIZE and USED); one mounted in several places keeps its first mount point."""
    found: dict[str, Filesystem] = {}
    for device, target, fstype, _ in _mount_table(root):
        if fstype not in LOCAL_FILESYSTEMS or device in found:
            continue
        try:
            usage = statvfs(str(under(root, target)))
        except OSError:  # unmounted since the table was read
            continue
        size, used = usage.f_blocks * usage.f_frsize, (usage.f_blocks - usage.f_bfree) * usage.f_frsize
        found[device] = Filesystem(device, target, fstype, size, used)
    return found


def _mount_table(root: Path) -> list[tuple[str, str, str, str]]:
    """The kernel's mount table (programs.report.parse_mountinfo's rows); [] when it cannot be read."""
    try:
        return parse_mountinfo(under(root, "/proc/self/mountinfo").read_text())
    except OSError:
        return []


def mounted_at(mount_point: str, root: Path = ROOT) -> tuple[str, str]:
    """(source, filesystem type) of what is mounted on ``mount_point`` (the last mount wins), ("", "") when none."""
    found = ("", "")
    wanted = mount_point.rstrip("/") or "/"
    for _, target, fstype, source in _mount_table(root):
        if target == wanted:
            found = (source, fstype)
    return found


def systemd_running(root: Path = ROOT) -> bool:
    """systemd is this machine's init (sd_booted(3)'s test)."""
    return under(root, "/run/systemd/system").is_dir()


def mounted_source(mount_point: str, root: Path = ROOT) -> str:
    """The source mounted on ``mount_point`` (the last mount wins), "" when none."""
    return mounted_at(mount_point, root)[0]
