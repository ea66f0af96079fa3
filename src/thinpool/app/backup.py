"""``thinpool backup``: a consistent copy of a pool's metadata and of lvm's VG metadata, rotated.

An active pool is dumped from a metadata snapshot the kernel holds while thin_dump reads
(``reserve_metadata_snap`` ... ``release_metadata_snap``); an inactive one through lvm's
read-only component activation of ``POOL_tmeta``. Either way the hold is released on the way
out, and a run killed in between is undone by the next one: a snapshot still held is released
first, a component still active is deactivated at the end.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from thinpool.app.context import Context
from thinpool.core import backup
from thinpool.core.lvm import commands
from thinpool.core.model import LogicalVolume, VolumeGroup
from thinpool.errors import ThinpoolError
from thinpool.system import files, observe

log = logging.getLogger("thinpool.backup")


def pool_lock(ctx: Context, vg: str, pool: str) -> contextlib.AbstractContextManager[None]:
    """Held by a backup and by a repair for their whole run (maintain's timer may fire during a repair)."""
    return files.exclusive_lock(observe.under(ctx.root, backup.lock(vg, pool)), held_by_another=backup.busy(vg, pool))


def folder_for(ctx: Context, vg: str, pool: str, into: str | None = None) -> Path:
    """``into`` (made absolute), else the folder the pool's backups are kept in (observe.backup_folder)."""
    return Path(into).absolute() if into else observe.backup_folder(vg, pool, ctx.root)


def remember(ctx: Context, vg: str, pool: str, where: Path) -> None:
    """``backup --to DIR``: DIR becomes the pool's backup folder for status, doctor, maintain and repair too."""
    default = observe.under(ctx.root, backup.folder(vg, pool))
    location = default / backup.LOCATION
    if where == default:
        location.unlink(missing_ok=True)
        return
    default.mkdir(mode=0o700, parents=True, exist_ok=True)
    files.write_atomically(location, f"{where}\n", keep_owner=False, mode=0o600)


def backups(ctx: Context, vg: str, pool: str, into: str | None = None) -> list[backup.Backup]:
    """The pool's finished backups, newest first."""
    return sorted(observe.read_backups(folder_for(ctx, vg, pool, into)), key=backup.age_order, reverse=True)


def pool_lv(ctx: Context, vg: str, pool: str) -> tuple[VolumeGroup, LogicalVolume]:
    """The pool's VG and LV from lvm's reports; refused when ``vg/pool`` is not a thin pool."""
    group = observe.read_lvm(ctx.runner).vgs.get(vg)
    lv = next((lv for lv in group.lvs if lv.name == pool), None) if group else None
    if group is None or lv is None or not lv.is_thin_pool:
        what = "no volume group" if group is None else ("no LV" if lv is None else "an LV that is not a thin pool")
        raise backup.BackupError(
            f"{vg}/{pool}: there is {what} of that name", fix="name the pool as VG/POOL ('lvs -a' lists them)"
        )
    return group, lv


@contextlib.contextmanager
def metadata_snapshot(ctx: Context, vg: str, pool: str) -> Iterator[int]:
    """Hold a metadata snapshot in the kernel while the body reads it; yields the pool's size in chunks
    (a dump of the snapshot says 0: the snapshot does not carry the data space map)."""
    found = observe.thin_pool_target(ctx.runner, vg, pool)
    if found is None:
        raise backup.BackupError(
            f"{vg}/{pool} is active in lvm but device-mapper has no thin-pool target for it",
            fix="check 'dmsetup status'; deactivate and reactivate the pool",
        )
    device, target = found
    if target.failed:
        raise backup.BackupError(
            f"the kernel reports {vg}/{pool} as {target.mode}: its metadata cannot be read live",
            fix=f"thinpool doctor {vg}/{pool} says what to do",
        )
    if target.held_metadata_root:
        log.warning("%s: a metadata snapshot was still held (an interrupted backup?); releasing it", device)
        ctx.runner.run(commands.dmsetup_message(device, "release_metadata_snap"))
    ctx.runner.run(commands.dmsetup_message(device, "reserve_metadata_snap"))
    try:
        yield target.data_blocks
    finally:
        ctx.runner.run(commands.dmsetup_message(device, "release_metadata_snap"), check=False)


@contextlib.contextmanager
def metadata_component(ctx: Context, vg: str, pool: str) -> Iterator[str]:
    """The inactive pool's metadata LV, activated read-only by lvm while the body reads it (from the
    device path it yields), and deactivated again whatever happens (the pool cannot activate beside it)."""
    ctx.runner.run(commands.lvchange_component(vg, pool + "_tmeta", True))
    try:
        yield commands.metadata_device(vg, pool)
    finally:
        ctx.runner.run(commands.lvchange_component(vg, pool + "_tmeta", False), check=False)


def _dump(ctx: Context, lv: LogicalVolume, into: Path) -> tuple[str, int]:
    """thin_dump into ``into``; returns the method used and the pool's size in chunks (0: the dump says)."""
    device = commands.metadata_device(lv.vg_name, lv.name)
    if not lv.active:  # the inactive pool's own superblock carries its size
        with metadata_component(ctx, lv.vg_name, lv.name):
            ctx.runner.run(commands.thin_dump(device, str(into), metadata_snap=False), timeout=3600)
        return backup.INACTIVE, 0
    with metadata_snapshot(ctx, lv.vg_name, lv.name) as data_blocks:
        ctx.runner.run(commands.thin_dump(device, str(into), metadata_snap=True), timeout=3600)
    return backup.LIVE, data_blocks


def _compress(source: Path, target: Path) -> None:
    partial = target.with_name(target.name + backup.PARTIAL_SUFFIX)
    with source.open("rb") as plain, gzip.open(partial, "wb") as packed:
        shutil.copyfileobj(plain, packed, 1024 * 1024)
    files.replace_synced(partial, target)


def _remove_unfinished(where: Path) -> None:
    """What a killed run left: partial files, and dumps whose manifest was never written."""
    finished = {name for item in observe.read_backups(where) for name in item.files}
    for path in where.iterdir():
        ours = path.name.endswith((backup.PARTIAL_SUFFIX, backup.DUMP_SUFFIX, backup.VG_SUFFIX))
        if ours and path.name not in finished and path.is_file():
            path.unlink()


def rotate(where: Path, keep: int) -> list[backup.Backup]:
    """Remove the backups past the ``keep`` newest (the manifest first: a backup is never half-there)."""
    removed = backup.to_remove(observe.read_backups(where), keep)
    for item in removed:
        for name in reversed(item.files):
            (where / name).unlink(missing_ok=True)
    return removed


def take(
    ctx: Context, vg: str, pool: str, *, into: str | None = None, keep: int = backup.DEFAULT_KEEP
) -> backup.Backup:
    """One backup of ``vg/pool``, written to its folder, then the folder rotated to ``keep`` backups."""
    ctx.require_root("thinpool backup")
    if keep < 1:
        raise ThinpoolError(f"--keep {keep}: at least the new backup must be kept", fix="give --keep 1 or more")
    with pool_lock(ctx, vg, pool):
        return _take(ctx, vg, pool, into, keep)


def _take(ctx: Context, vg: str, pool: str, into: str | None, keep: int) -> backup.Backup:
    lv = pool_lv(ctx, vg, pool)[1]
    where = folder_for(ctx, vg, pool, into)
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    where.chmod(0o700)  # a pool's map is root's business only
    _remove_unfinished(where)
    raw = where / (".dump" + backup.PARTIAL_SUFFIX)
    try:
        method, data_blocks = _dump(ctx, lv, raw)
        with raw.open("rb") as stream:
            summary = backup.summarize_dump(stream)
        if data_blocks:
            summary = replace(summary, nr_data_blocks=data_blocks)
        tool = ctx.runner.run(commands.thin_dump_version(), check=False).stdout.strip()
        made = backup.backup_from_summary(
            vg, pool, int(ctx.clock()), summary, lvm_transaction_id=lv.transaction_id, method=method, tool=tool
        )
        dump_name, vg_name, manifest_name = made.files
        _compress(raw, where / dump_name)
        ctx.runner.run(commands.vgcfgbackup(vg, str(where / vg_name)))
        files.sync_file(where / vg_name)  # on the disk before the manifest names it (lvm does not fsync it)
        files.write_atomically(
            where / manifest_name, json.dumps(made.to_dict(), indent=2) + "\n", keep_owner=False, mode=0o600
        )
    finally:
        raw.unlink(missing_ok=True)
    rotate(where, keep)
    if into:
        remember(ctx, vg, pool, where)
    return made
