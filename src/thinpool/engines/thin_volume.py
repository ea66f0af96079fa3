"""What every engine that keeps its store on an XFS thin volume of the pool shares: the volume, its
filesystem, its /etc/fstab entry and mount, and the unit lines that make the engine wait for it.

Pure, like every adapter: the actions come from the ``EngineState`` observed for the store's root
(``EngineState.root``: what is mounted there, its entries, the volume's filesystem).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from thinpool.config import fstab
from thinpool.config.document import ConfigError
from thinpool.core import crypt, names
from thinpool.core.lvm import commands
from thinpool.core.model import EngineState, Source
from thinpool.core.plan import Action, ActionKind, Target
from thinpool.core.programs import argv as programs
from thinpool.core.spec import PoolSpec, check_plain_path
from thinpool.core.units import format_size
from thinpool.engines.target import PoolTarget
from thinpool.errors import SpecError

FSTAB = fstab.PATH
# pquota: per-container size limits (overlay2.size, podman's size=). nofail: a pool that cannot come up at
# boot (damaged metadata, a missing disk, a power cut mid-repair) does not send the boot into emergency mode,
# where no sshd runs; the engine, which RequiresMountsFor its root, stays down rather than start on an empty folder.
MOUNT_OPTIONS = "defaults,nofail,pquota,noatime"
EARLIER_MOUNT_OPTIONS = ("defaults,pquota,noatime",)  # what thinpool wrote before: its own entry, upgraded in place

# XFS retries failed metadata writes forever by default (/sys/fs/xfs/DEV/error/metadata/*): on a
# thin volume whose pool is full that hangs every writer. ENOSPC fails at once (space will not
# come back by retrying; a pool that can grow queues writes instead of returning it); EIO is
# retried for 30 s. Set before every start of the engine, once the volume is mounted.
XFS_ERRORS = (("ENOSPC", "max_retries", 0), ("EIO", "retry_timeout_seconds", 30))


@dataclass(frozen=True)
class Store:
    """An engine's store on a thin volume: whose it is, where it is mounted, and what the volume is called."""

    owner: str  # "Docker", "containerd": said in the plan's reasons and in refusals
    root: str  # the mount point: Docker's data root, containerd's root
    volume: str  # the thin LV's name
    stop: str  # how to stop the engine before its root can be moved aside
    movable: bool = False  # --data-root can put the store elsewhere

    def device_in(self, vg: str) -> str:
        return f"/dev/mapper/{commands.dm_name(vg, self.volume)}"


def xfs_errors_command(root: str) -> str:
    """An ExecStartPre= line ('$$' is systemd's literal '$'; '-': a kernel without the knobs is no failure).

    XFS names its sysfs folder after the kernel's device (dm-4): found from the mount's device
    number, which works with or without udev's /dev/mapper links.
    """
    folder = 'd=/sys/fs/xfs/$$(basename $$(readlink -f /sys/dev/block/$$(mountpoint -d "$$1")))/error/metadata'
    knobs = " && ".join(f"echo {value} > $$d/{error}/{knob}" for error, knob, value in XFS_ERRORS)
    return f"ExecStartPre=-/bin/sh -c '{folder} && {knobs}' xfs-errors {root}"


def fstab_line(device: str, root: str, requires: tuple[str, ...] = ()) -> str:
    """``requires``: the units that unlock the pool's encrypted disks; the mount fails as soon as one fails,
    rather than wait for its device, so the engine that requires it fails at once too."""
    options = MOUNT_OPTIONS + "".join(f",{REQUIRES}{unit}" for unit in requires)
    return f"{device} {root} xfs {options} 0 0"


REQUIRES = "x-systemd.requires="


def _without_requires(fields: tuple[str, ...]) -> tuple[str, ...]:
    if len(fields) < 4:
        return fields
    options = ",".join(option for option in fields[3].split(",") if not option.startswith(REQUIRES))
    return (*fields[:3], options, *fields[4:])


def merged_fstab(
    source: Source, device: str, root: str, *, force: bool, owner: str = "Docker", requires: tuple[str, ...] = ()
) -> str | None:
    """fstab with the store's entry; None when it is already there. Another entry there is refused.

    Every other line comes back byte for byte, in the file's own line ending.
    """
    root = fstab.normal(root)
    parsed = fstab.parse(source)
    if isinstance(parsed, ConfigError):
        raise SpecError(f"{parsed}; it was left untouched", fix=f"check {FSTAB}'s permissions, then re-run")
    wanted = tuple(fstab_line(device, root, requires).split())
    there = parsed.on(root)
    for entry in there:
        if entry.fields == wanted or (not requires and _without_requires(entry.fields) == wanted):
            return None  # as wanted (a run without --encrypt keeps the unlock units an earlier one added)
        if _without_requires(entry.fields) == _without_requires(wanted):
            return parsed.replaced(entry, " ".join(wanted))
        if _written_earlier(entry.fields, wanted):
            return parsed.replaced(entry, " ".join(wanted))
        if not force:
            raise SpecError(
                f"{FSTAB} already mounts {entry.source} on {root}",
                fix="remove that entry (and move its data), pass --data-root, or --force to replace the entry",
            )
    return parsed.without(there).appended(f"# thinpool: {owner}'s store on a thin volume", " ".join(wanted))


def _written_earlier(fields: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    """``fields`` are the entry an earlier thinpool wrote for this device and root (only its options differ)."""
    return (
        len(fields) == len(wanted)
        and fields[3] in EARLIER_MOUNT_OPTIONS
        and fields[:3] + fields[4:] == wanted[:3] + wanted[4:]
    )


def volume_actions(spec: PoolSpec, target: PoolTarget, state: EngineState, store: Store, why: str) -> list[Action]:
    """The thin volume and its XFS, unless they are there; a volume of another pool or filesystem is refused."""
    device = store.device_in(target.vg)
    existing = next((lv for lv in target.lvs if lv.bare_name == store.volume), None)
    actions = []
    if existing is None:
        size = spec.engine_options.volume_size or target.data_size
        reason = f"{format_size(size)} of virtual space for {store.owner}, taken from the pool as it is written"
        argv = commands.lvcreate_thin(target.vg, target.pool, store.volume, size)
        actions.append(Action("create", ActionKind.THIN_VOLUME, Target(vg=target.vg, lv=store.volume), reason, argv))
    elif existing.pool_lv != target.pool:
        raise SpecError(
            f"{target.vg}/{store.volume} exists and is not a thin volume of {target.pool}",
            fix="pick another --volume-name; thinpool never converts an existing volume",
        )
    filesystem = state.root(store.root).filesystem
    if existing is None or not filesystem:
        actions.append(Action("create", ActionKind.FILESYSTEM, Target(path=device), why, programs.mkfs_xfs(device)))
    elif filesystem != "xfs":
        raise SpecError(
            f"{device} carries {filesystem}, not XFS",
            fix=f"{why}: pick another --volume-name, or move its data and wipe it",
        )
    return actions


def fstab_action(
    state: EngineState, placed: Sequence[tuple[str, Store]], *, force: bool, requires: tuple[str, ...] = ()
) -> list[Action]:
    """One write of fstab with each store's entry (device, store): every other line kept, byte for byte."""
    source = original = state.source(FSTAB)
    for device, store in placed:
        merged = merged_fstab(source, device, store.root, force=force, owner=store.owner, requires=requires)
        if merged is not None:
            source = Source(FSTAB, merged)
    if source is original or source.text is None:
        return []
    why = "mounted at every boot, with project quotas; nofail: a pool that cannot come up leaves the boot going"
    where = Target(path=", ".join(store.root for _, store in placed))
    return [Action("write", ActionKind.FSTAB, where, why, path=FSTAB, content=source.text)]


def mount_action(state: EngineState, device: str, store: Store) -> list[Action]:
    """The mount now, unless it is there; a root with something else mounted on it, or with entries that the
    mount would hide, is refused."""
    root = store.root
    seen = state.root(root)
    if seen.source == device:
        return []
    if seen.source:
        elsewhere = ", or pass another --data-root" if store.movable else ""
        raise SpecError(
            f"{seen.source} is already mounted on {root}",
            fix=f"{store.stop} and unmount it first{elsewhere}",
        )
    if seen.entries:
        raise SpecError(
            f"{root} already holds {seen.entries} entries; mounting over them would hide them",
            fix=f"{store.stop} and move {root} aside (mv {root} {root}.old), then re-run",
        )
    argv = programs.mount_from_fstab(root)
    return [Action("change", ActionKind.MOUNT, Target(path=root), f"mount {device} there", argv)]


def storage_actions(spec: PoolSpec, target: PoolTarget, state: EngineState, store: Store, why: str) -> list[Action]:
    """Everything that puts ``store`` on a mounted XFS thin volume of the pool."""
    return stores_actions(spec, target, state, [(store, why)])


def stores_actions(
    spec: PoolSpec, target: PoolTarget, state: EngineState, stores: Sequence[tuple[Store, str]]
) -> list[Action]:
    """Each store on a mounted XFS thin volume of its own: the volumes and filesystems, one fstab write, the
    mounts. ``stores`` pairs each store with why its filesystem is XFS."""
    actions: list[Action] = []
    for store, why in stores:
        names.check_volume(target.vg, target.pool, store.volume)
        check_plain_path(store.root, f"{store.owner}'s store root")
        actions += volume_actions(spec, target, state, store, why)
    placed = [(store.device_in(target.vg), store) for store, _ in stores]
    requires = crypt.unlock_units(spec.devices) if spec.encryption else ()
    actions += fstab_action(state, placed, force=spec.engine_options.force, requires=requires)
    for device, store in placed:
        actions += mount_action(state, device, store)
    return actions


def size_warnings(spec: PoolSpec, target: PoolTarget) -> list[str]:
    size = spec.engine_options.volume_size or 0
    if target.data_size < size <= (target.max_data_size or target.data_size):
        return [
            f"the volume ({format_size(size)}) is larger than the pool's data ({format_size(target.data_size)}): "
            "autoextend must keep up, or writes fail when the pool is full"
        ]
    return []
