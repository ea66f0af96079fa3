"""``thinpool repair``: check a pool's metadata offline, repair it with lvm, restore a backup when lvm cannot.

Order: refuse while a thin volume is open; stop the pool; thin_check the metadata through lvm's
read-only component activation (core.repair.diagnose); damaged metadata goes through
``lvconvert --repair``; metadata that lost thin volumes (or still does after lvm's repair) gets
the newest backup that maps them all, restored into a new LV (``POOL_restore``) and swapped in.
The damaged original is never removed: lvm keeps it as ``POOL_metaN``, and so does the swap.
A run killed halfway is finished by the next one: a ``POOL_restore`` left before the swap is
written again, one left after it (the pool is healthy) is kept as ``POOL_metaN``.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinpool.app import backup as backups
from thinpool.app.context import Context
from thinpool.core import backup, owners, repair
from thinpool.core.envelope import envelope
from thinpool.core.lvm import commands, report
from thinpool.core.model import LogicalVolume, VolumeGroup
from thinpool.core.units import SECTOR
from thinpool.system import observe

RESTORE_SUFFIX = "_restore"


@dataclass
class RepairReport:
    vg: str
    pool: str
    before: repair.Diagnosis
    after: repair.Diagnosis | None = None
    ran: list[str] = field(default_factory=list)  # what was done, in order
    restored_from: backup.Backup | None = None
    kept: list[str] = field(default_factory=list)  # LVs holding a damaged original (never removed)
    lost: list[str] = field(default_factory=list)  # thin volumes that did not come back
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.after or self.before).state == repair.HEALTHY and not self.lost

    def to_dict(self) -> dict[str, Any]:
        return envelope(
            "thinpool-repair",
            {
                "vg": self.vg,
                "pool": self.pool,
                "ok": self.ok,
                "before": {"state": self.before.state, "reason": self.before.reason},
                "after": {"state": self.after.state, "reason": self.after.reason} if self.after else None,
                "ran": self.ran,
                "restored_from": self.restored_from.stem if self.restored_from else None,
                "kept": self.kept,
                "lost": self.lost,
                "warnings": self.warnings,
            },
        )


def _thin_volumes(group: VolumeGroup, pool: str) -> list[LogicalVolume]:
    return [lv for lv in group.lvs if lv.segtype == "thin" and lv.pool_lv == pool]


def _refuse_busy(ctx: Context, group: VolumeGroup, pool: LogicalVolume, volumes: list[LogicalVolume]) -> None:
    """An open thin volume cannot be stopped: name each, with its mount point, and how its owner stops it."""
    opened = {
        device.name
        for device in report.parse_dmsetup_info(ctx.runner.run(commands.dmsetup_info()).stdout)
        if device.open_count > 0
    }
    busy = [lv for lv in volumes if commands.dm_name(lv.vg_name, lv.name) in opened]
    if not busy:
        return
    mounts = observe.read_filesystems(ctx.root, ctx.statvfs)
    named = []
    for lv in busy:
        where = f"mounted on {mounts[lv.kernel_device].mount_point}" if lv.kernel_device in mounts else "open"
        users = observe.device_users(ctx.runner, f"/dev/{lv.vg_name}/{lv.name}", ctx.root)
        named.append(f"{lv.vg_name}/{lv.name} ({where}" + (f"; used by {', '.join(users)})" if users else ")"))
    marks = owners.Marks(
        pool.vg_name, pool.bare_name, pool.tags, group.tags, volumes=tuple(lv.bare_name for lv in volumes)
    )
    ownership = owners.owner_of(marks)
    stop = (
        owners.stop_users(ownership, f"{pool.vg_name}/{pool.bare_name}")
        if ownership.owner.has_own_tools
        else "stop what uses them (fuser -vm /dev/VG/LV names it; systemctl stop docker containerd)"
    )
    raise repair.RepairRefused(
        "the repair stops the pool, and these thin volumes are in use: " + ", ".join(named),
        fix=f"{stop}, unmount them, then run thinpool repair again",
    )


def _stop(ctx: Context, vg: str, pool: str, volumes: list[LogicalVolume]) -> None:
    for lv in volumes:
        if lv.active:
            ctx.runner.run(commands.lvchange_activate(vg, lv.name, False))
    ctx.runner.run(commands.lvchange_activate(vg, pool, False))


def _check(ctx: Context, vg: str, pool: str, scratch: Path) -> repair.MetadataCheck:
    dump = scratch / (".check" + backup.PARTIAL_SUFFIX)
    with backups.metadata_component(ctx, vg, pool) as device:
        checked = ctx.runner.run(commands.thin_check(device), check=False)
        if checked.returncode != 0:
            return repair.MetadataCheck(False, checked.stderr or checked.stdout)
        ctx.runner.run(commands.thin_dump(device, str(dump), metadata_snap=False), timeout=3600)
    try:
        with dump.open("rb") as stream:
            return repair.MetadataCheck(True, summary=backup.summarize_dump(stream))
    finally:
        dump.unlink(missing_ok=True)


def _chosen_backup(ctx: Context, lv: LogicalVolume, volumes: dict[str, int], from_backup: str | None) -> backup.Backup:
    found = backups.backups(ctx, lv.vg_name, lv.name)
    if from_backup:
        found = [item for item in found if from_backup in (item.stem, *item.files)]
        if not found:
            raise repair.RepairRefused(
                f"--from-backup {from_backup}: no such backup of {lv.vg_name}/{lv.name}",
                fix=f"thinpool backup {lv.vg_name}/{lv.name} --list names them",
            )
    return repair.choose_backup(found, volumes, lv.chunk_size // SECTOR)


def _restore(ctx: Context, group: VolumeGroup, lv: LogicalVolume, chosen: backup.Backup, scratch: Path) -> str:
    """The backup onto a new LV, checked, swapped in; returns the LV that keeps the original (POOL_metaN)."""
    vg, pool, target = lv.vg_name, lv.name, lv.name + RESTORE_SUFFIX
    if any(item.name == target for item in group.lvs):
        ctx.runner.run(commands.lvchange_activate(vg, target, True))  # left before the swap: written again
    else:
        ctx.runner.run(commands.lvcreate_linear(vg, target, lv.metadata_size, tag=repair.RESTORE_TAG))
    xml = scratch / (".restore.xml" + backup.PARTIAL_SUFFIX)
    data_blocks = lv.size // lv.chunk_size
    with gzip.open(backups.folder_for(ctx, vg, pool) / chosen.files[0], "rb") as packed, xml.open("wb") as plain:
        plain.write(repair.superblock_with_data_blocks(packed.readline(), data_blocks))
        shutil.copyfileobj(packed, plain, 1024 * 1024)
    device = f"/dev/{vg}/{target}"
    try:
        transaction_id = lv.transaction_id if lv.transaction_id is not None else chosen.transaction_id
        ctx.runner.run(
            commands.thin_restore(str(xml), device, transaction_id=transaction_id, data_blocks=data_blocks),
            timeout=3600,
        )
    finally:
        xml.unlink(missing_ok=True)
    ctx.runner.run(commands.thin_check(device))
    ctx.runner.run(commands.lvchange_activate(vg, target, False))
    ctx.runner.run(commands.lvconvert_swap_metadata(vg, pool, target))
    return _keep_original(ctx, group, lv)


def _keep_original(ctx: Context, group: VolumeGroup, lv: LogicalVolume) -> str:
    """After the swap, POOL_restore holds the damaged original: named like lvm's own, its tag dropped."""
    kept = repair.next_meta_name(lv.name, (item.name for item in group.lvs))
    ctx.runner.run(commands.lvrename(lv.vg_name, lv.name + RESTORE_SUFFIX, kept))
    ctx.runner.run(commands.lvdeltag(lv.vg_name, kept, repair.RESTORE_TAG))
    return kept


def _start(ctx: Context, vg: str, pool: str, volumes: list[LogicalVolume]) -> list[str]:
    """The pool and its thin volumes active again; returns the volumes that would not activate."""
    ctx.runner.run(commands.lvchange_activate(vg, pool, True))
    return [
        lv.name for lv in volumes if not ctx.runner.run(commands.lvchange_activate(vg, lv.name, True), check=False).ok
    ]


def _restore_backup(
    ctx: Context,
    done: RepairReport,
    state: repair.Diagnosis,
    from_backup: str | None,
    ids: dict[str, int],
    scratch: Path,
) -> repair.Diagnosis:
    """The backup swapped in. Without one, clean metadata that lost volumes is kept (the pool can still
    run the rest), and damaged metadata is refused (the pool cannot activate on it)."""
    group, lv = backups.pool_lv(ctx, done.vg, done.pool)
    try:
        chosen = _chosen_backup(ctx, lv, ids, from_backup)
    except repair.RepairRefused as refused:
        if state.state == repair.DAMAGED:
            lvm_said = next((item for item in done.ran if item.startswith("lvconvert --repair")), "")
            raise repair.RepairRefused(
                f"{done.vg}/{done.pool}'s metadata is still damaged after {lvm_said or 'lvm repair'} ({state.reason}), "
                "and no backup maps its thin volumes",
                fix="the pool stays inactive, its metadata as it was (thin-provisioning-tools 1.x's thin_repair finds "
                "nothing to rebuild from when the mapping trees are gone; 0.9's made empty metadata). Copy the "
                f"metadata aside (lvchange -ay {done.vg}/{done.pool}_tmeta; dd) before anything else; " + refused.fix,
            ) from refused
        done.warnings.append(f"{refused.problem}; fix: {refused.fix}")
        return state
    done.restored_from = chosen
    done.kept.append(_restore(ctx, group, lv, chosen, scratch))
    done.ran.append(f"restored backup {chosen.stem}, kept the original as {done.vg}/{done.kept[-1]}")
    lv = backups.pool_lv(ctx, done.vg, done.pool)[1]
    return repair.diagnose(_check(ctx, done.vg, done.pool, scratch), lv.transaction_id, ids)


def _reconcile(
    ctx: Context, done: RepairReport, state: repair.Diagnosis, ids: dict[str, int], scratch: Path
) -> repair.Diagnosis:
    """lvm's expected transaction id set to the kernel's: vgcfgbackup, that one number, vgcfgrestore.
    lvm's metadata as it was is kept beside the backups."""
    lv = backups.pool_lv(ctx, done.vg, done.pool)[1]
    old, new = lv.transaction_id, state.kernel_transaction_id
    if old is None or new is None:  # AHEAD is only diagnosed with both
        raise repair.RepairRefused(
            f"lvm reports no transaction id for {done.vg}/{done.pool}", fix="check 'lvs -o+transaction_id'"
        )
    before = scratch / f"lvm-before-repair-{int(ctx.clock())}.vgcfg"
    ctx.runner.run(commands.vgcfgbackup(done.vg, str(before)))
    edited = scratch / (".reconciled.vgcfg" + backup.PARTIAL_SUFFIX)
    edited.write_text(repair.set_transaction_id(before.read_text(), done.pool, old, new))
    try:
        ctx.runner.run(commands.vgcfgrestore(done.vg, str(edited)))
    finally:
        edited.unlink(missing_ok=True)
    done.ran.append(f"set lvm's transaction id {old} -> {new}, the kernel's (lvm's metadata before: {before})")
    lv = backups.pool_lv(ctx, done.vg, done.pool)[1]
    return repair.diagnose(_check(ctx, done.vg, done.pool, scratch), lv.transaction_id, ids)


def _unknown_devices(state: repair.Diagnosis, ids: dict[str, int]) -> list[str]:
    """Thin devices lvm has no volume for (an engine's): lvm numbers its next thin volume past its own."""
    if not state.unknown_devices:
        return []
    following = max(ids.values(), default=0) + 1
    clash = (
        f"; lvm's next thin volume would take device id {following}, which one of them holds"
        if (following in state.unknown_devices)
        else ""
    )
    listed = ", ".join(map(str, state.unknown_devices))
    return [
        f"the pool holds {len(state.unknown_devices)} thin device(s) lvm has no volume for (ids {listed}): "
        f"Docker's devicemapper or containerd's devmapper makes them; they are kept{clash}"
    ]


def _lvm_repair(ctx: Context, done: RepairReport, ids: dict[str, int], scratch: Path) -> repair.Diagnosis:
    """lvconvert --repair, then the result checked like the original (lvm keeps that as POOL_metaN)."""
    repaired = ctx.runner.run(commands.lvconvert_repair(done.vg, done.pool), check=False, timeout=3600)
    done.ran.append("lvconvert --repair" + ("" if repaired.ok else f" failed: {repaired.stderr.strip()}"))
    group, lv = backups.pool_lv(ctx, done.vg, done.pool)
    done.kept += [item.name for item in group.lvs if item.name.startswith(done.pool + "_meta")]
    return repair.diagnose(_check(ctx, done.vg, done.pool, scratch), lv.transaction_id, ids)


def _spare_warning(ctx: Context, vg: str, pool: str) -> list[str]:
    if any(item.is_spare for item in backups.pool_lv(ctx, vg, pool)[0].lvs):
        return []
    return [
        f"{vg} has no pool-metadata spare now (the repair used it, and the VG has no room for a new one): "
        "add a disk (thinpool grow) so that the next repair has one"
    ]


def run(ctx: Context, vg: str, pool: str, *, from_backup: str | None = None) -> RepairReport:
    """Refuse, stop, diagnose; then lvm's repair, a backup, or lvm's transaction id, as the state asks."""
    ctx.require_root("thinpool repair")
    with backups.pool_lock(ctx, vg, pool):
        return _run(ctx, vg, pool, from_backup)


def _run(ctx: Context, vg: str, pool: str, from_backup: str | None) -> RepairReport:
    group, lv = backups.pool_lv(ctx, vg, pool)
    volumes = _thin_volumes(group, pool)
    ids = {item.name: item.thin_id for item in volumes if item.thin_id is not None}
    _refuse_busy(ctx, group, lv, volumes)
    _stop(ctx, vg, pool, volumes)
    scratch = backups.folder_for(ctx, vg, pool)
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    done = RepairReport(vg, pool, repair.diagnose(_check(ctx, vg, pool, scratch), lv.transaction_id, ids))
    state = done.before
    if state.state == repair.HEALTHY and any(item.name == pool + RESTORE_SUFFIX for item in group.lvs):
        done.kept.append(_keep_original(ctx, group, lv))  # a run killed after its swap: finish it
        done.ran.append(f"kept the original a killed repair swapped out as {vg}/{done.kept[-1]}")
    if state.state == repair.DAMAGED:
        state = _lvm_repair(ctx, done, ids, scratch)
    if state.state in (repair.DAMAGED, repair.LOST):
        state = _restore_backup(ctx, done, state, from_backup, ids, scratch)
    if state.state == repair.AHEAD:
        state = _reconcile(ctx, done, state, ids, scratch)
    done.after = state
    done.warnings += _unknown_devices(state, ids)
    done.lost = _start(ctx, vg, pool, volumes)
    done.warnings += _spare_warning(ctx, vg, pool)
    done.warnings += _kept_room_warning(ctx, done)
    return done


def _kept_room_warning(ctx: Context, done: RepairReport) -> list[str]:
    """The kept originals take the VG's free extents: say so when autoextend is left without room."""
    if not done.kept:
        return []
    group, _ = backups.pool_lv(ctx, done.vg, done.pool)
    sizes = {item.name: item.size // group.extent_size for item in group.lvs if item.name in done.kept}
    warning = repair.kept_room_warning(observe.read_pool_status(ctx.runner, done.vg, done.pool, ctx.root), sizes)
    return [warning] if warning else []
