"""A pool's metadata diagnosed, and the backup a repair may restore. Pure.

Three states, measured in the VM (lvm2 2.03.16, thin-provisioning-tools 0.9, kernel 6.1):

* **damaged**: thin_check fails on the inactive metadata (zeroed btree blocks, bad checksums);
  lvm refuses to activate the pool ("Check of pool ... failed"). ``lvconvert --repair`` runs
  thin_repair into the spare and keeps the original as ``POOL_metaN``; what thin_repair cannot
  salvage is gone from the result, so the result is checked like the rest.
* **lost**: thin_check passes but the metadata lacks thin volumes lvm knows, or is behind lvm's
  transaction id. A zeroed superblock ends here: dm-thin formats an all-zero superblock as new,
  empty metadata on activation, and the thin volumes then fail to activate ("No data
  available"). Only a backup from before maps their blocks again.
* **ahead**: clean and every thin volume lvm knows is there, but the kernel's transaction id is
  past lvm's: something changed the pool with dm messages behind lvm's back, as Docker's
  devicemapper driver and containerd's devmapper snapshotter do. lvm then refuses every thin
  operation on the pool ("unexpected transaction id N, expecting M"). Setting lvm's expected id to
  the kernel's (vgcfgbackup, one number changed, vgcfgrestore) changes no data and loses
  nothing: it is done only in that case.
* **healthy**: clean, every thin volume lvm knows is there, and the ids agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from thinpool.core.backup import Backup, DumpSummary, age_order
from thinpool.core.health import PoolStatus
from thinpool.errors import ThinpoolError

HEALTHY, DAMAGED, LOST, AHEAD = "healthy", "damaged", "lost", "ahead"
RESTORE_TAG = "thinpool.restore-target"  # the scratch LV a backup is restored into before the swap


class RepairRefused(ThinpoolError):
    """The repair would lose something it cannot account for, or cannot run here."""


@dataclass(frozen=True)
class MetadataCheck:
    """thin_check on the inactive metadata, and (when clean) what its dump holds."""

    clean: bool
    errors: str = ""  # thin_check's report when it failed
    summary: DumpSummary | None = None


@dataclass(frozen=True)
class Diagnosis:
    state: str  # HEALTHY, DAMAGED, LOST or AHEAD
    reason: str
    missing: tuple[str, ...] = ()  # thin volumes lvm knows that the metadata has no device for
    kernel_transaction_id: int | None = None  # the metadata's (None when it cannot be read)
    unknown_devices: tuple[int, ...] = ()  # thin devices in the metadata that lvm has no volume for


def diagnose(check: MetadataCheck, lvm_transaction_id: int | None, thin_volumes: Mapping[str, int]) -> Diagnosis:
    """``thin_volumes``: lvm's thin volumes of the pool, name -> thin device id."""
    if not check.clean or check.summary is None:
        first = next((line.strip() for line in check.errors.splitlines() if line.strip()), "no output")
        return Diagnosis(DAMAGED, f"thin_check fails on the metadata: {first}")
    summary = check.summary
    missing = tuple(sorted(name for name, dev_id in thin_volumes.items() if dev_id not in summary.devices))
    behind = lvm_transaction_id is not None and summary.transaction_id < lvm_transaction_id
    unknown = tuple(sorted(set(summary.devices) - set(thin_volumes.values())))
    kernel = summary.transaction_id
    if missing or behind:
        why = f"the metadata (transaction id {kernel}, lvm expects {lvm_transaction_id})"
        lacks = f" has no device for {', '.join(missing)}" if missing else " is behind lvm"
        return Diagnosis(LOST, why + lacks + ": it was lost or formatted anew", missing, kernel, unknown)
    if lvm_transaction_id is not None and kernel > lvm_transaction_id:
        why = (
            f"the kernel's transaction id is {kernel}, lvm expects {lvm_transaction_id}: the pool was changed "
            f"behind lvm's back ({len(unknown)} thin device(s) lvm does not know), and lvm refuses thin operations"
        )
        return Diagnosis(AHEAD, why, (), kernel, unknown)
    return Diagnosis(
        HEALTHY, f"thin_check is clean and all {len(thin_volumes)} thin volume(s) are there", (), kernel, unknown
    )


def lost_with(candidate: Backup, thin_volumes: Mapping[str, int]) -> tuple[str, ...]:
    """The thin volumes lvm knows that ``candidate`` has no map for (made after it)."""
    return tuple(sorted(name for name, dev_id in thin_volumes.items() if dev_id not in candidate.devices))


def choose_backup(backups: Iterable[Backup], thin_volumes: Mapping[str, int], chunk_sectors: int) -> Backup:
    """The newest backup that maps every thin volume lvm knows, with the pool's chunk; refused with the
    numbers when there is none."""
    ordered = sorted(backups, key=age_order, reverse=True)
    for candidate in ordered:
        if candidate.data_block_size == chunk_sectors and not lost_with(candidate, thin_volumes):
            return candidate
    if not ordered:
        raise RepairRefused(
            "the pool's metadata lost its thin volumes and there is no backup to restore them from",
            fix="nothing can map their data again; remove the thin volumes that fail to activate (lvremove) and "
            "start backing up: thinpool maintain (the timer) or thinpool backup",
        )
    newest = ordered[0]
    raise RepairRefused(
        f"the newest backup ({newest.stem}, transaction id {newest.transaction_id}) has no map for "
        f"{', '.join(lost_with(newest, thin_volumes)) or 'this chunk size'}, made or changed after it; "
        "restoring it would lose them",
        fix="pick a backup with --from-backup (thinpool backup --list), or remove those thin volumes "
        "(lvremove) if their data can go, then run thinpool repair again",
    )


_NR_DATA_BLOCKS = re.compile(rb'nr_data_blocks="[0-9]*"')


def next_meta_name(pool: str, taken: Iterable[str]) -> str:
    """Where a swapped-out original is kept: POOL_metaN, as lvconvert --repair names it."""
    names = set(taken)
    return next(f"{pool}_meta{n}" for n in range(len(names) + 1) if f"{pool}_meta{n}" not in names)


def superblock_with_data_blocks(line: bytes, data_blocks: int) -> bytes:
    """thin_dump's first line, its superblock, with nr_data_blocks set to the pool's size in blocks now.

    thin_dump of a metadata snapshot writes nr_data_blocks="0". thin-provisioning-tools 0.9's thin_restore
    takes --nr-data-blocks before it maps a block; 1.x sizes its data space map from this line and applies
    --nr-data-blocks only at the end, so every mapping is "block out of bounds" (exit 64)."""
    if not line.lstrip().startswith(b"<superblock"):
        raise RepairRefused(
            "the backup's metadata does not start with thin_dump's <superblock> line",
            fix="choose another backup with --from-backup (thinpool backup --list)",
        )
    attribute = f'nr_data_blocks="{data_blocks}"'.encode()
    changed, count = _NR_DATA_BLOCKS.subn(attribute, line, count=1)
    if count:
        return changed
    head, closing, tail = line.rpartition(b">")
    return head.rstrip(b"/") + b" " + attribute + (b"/>" if head.endswith(b"/") else closing) + tail


def set_transaction_id(vg_text: str, pool: str, old: int, new: int) -> str:
    """lvm's VG metadata text (vgcfgbackup) with ``pool``'s transaction_id changed from ``old`` to
    ``new``, every other byte kept; refused unless exactly one such line is found in the pool."""
    lines = vg_text.splitlines(keepends=True)
    stack: list[str] = []
    hits = []
    for index, line in enumerate(lines):
        text = line.strip()
        if text.endswith("{") and not text.startswith("#"):
            stack.append(text[:-1].strip())
        elif text == "}" and stack:
            stack.pop()
        elif text == f"transaction_id = {old}" and stack[1:3] == ["logical_volumes", pool]:
            hits.append(index)
    if len(hits) != 1:
        raise RepairRefused(
            f"lvm's metadata for {pool} has {len(hits)} transaction_id = {old} lines, not one",
            fix="compare 'vgcfgbackup -f FILE VG' with lvm's report and set the id by hand (man vgcfgrestore)",
        )
    lines[hits[0]] = lines[hits[0]].replace(f"= {old}", f"= {new}", 1)
    return "".join(lines)


def kept_room_warning(status: PoolStatus, kept: Mapping[str, int]) -> str:
    """What the kept originals (LV name -> extents) cost when they leave autoextend no room ("" when they don't).

    They are never removed by thinpool: the operator drops them once the thin volumes are checked.
    """
    if not kept or status.autoextend is None or not status.autoextend.enabled or status.autoextend_steps > 0:
        return ""
    names = ", ".join(f"{status.vg}/{name}" for name in kept)
    taken = sum(kept.values())
    drop = "; ".join(f"lvremove {status.vg}/{name}" for name in kept)
    return (
        f"the kept original {names} takes {taken} extents of {status.vg}, which has {status.vg_free_extents} free: "
        f"autoextend of {status.vg}/{status.pool} has no room left and the pool will not grow when it fills. "
        f"Once the thin volumes are checked, drop it: {drop} (or add a disk: thinpool grow)"
    )
