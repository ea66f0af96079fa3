"""Pool-metadata backups: where they go, what one records, when one is due, which are kept. Pure.

A backup is three files with one stem, ``20261129T043000Z-tx12``:

* ``STEM.thin.xml.gz``: the pool's metadata as ``thin_dump`` writes it (thin_restore's input);
* ``STEM.vg``: lvm's description of the VG (``vgcfgbackup``), which holds lvm's transaction id;
* ``STEM.json``: the manifest, written last. A backup without its manifest is unfinished and is
  never used; the next backup removes it.

The dump of an active pool is taken from a metadata snapshot the kernel holds for the duration
(``reserve_metadata_snap``): the live metadata keeps changing, the snapshot does not. An inactive
pool's metadata is read through lvm's read-only component activation of ``POOL_tmeta``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from thinpool.core.envelope import envelope
from thinpool.core.lvm.commands import dm_name
from thinpool.errors import ThinpoolError

BACKUP_ROOT = "/var/lib/thinpool/backups"
LOCK_ROOT = "/run/lock/thinpool"  # one lock per pool: a backup and a repair never run at once
KIND = "thinpool-metadata-backup"
SCHEMA_VERSION = 1
DEFAULT_KEEP = 24
# maintain backs up a pool whose metadata changed (the kernel's transaction id moved) at most this
# often, and any pool once its newest backup is a day old, so that a backup's age always means
# something: doctor calls one older than STALE_AFTER stale (two refreshes missed).
DEFAULT_EVERY = 3600
REFRESH_AFTER = 86400
STALE_AFTER = 2 * REFRESH_AFTER
MANIFEST_SUFFIX = ".json"
DUMP_SUFFIX = ".thin.xml.gz"
VG_SUFFIX = ".vg"
PARTIAL_SUFFIX = ".partial"

LIVE = "metadata-snapshot"  # the pool was active: dumped from a snapshot the kernel held
INACTIVE = "component-activation"  # the pool was inactive: its _tmeta activated read-only


class BackupError(ThinpoolError):
    """A backup could not be taken or read."""


class PoolBusy(BackupError):
    """Another thinpool backup or repair of the pool is running."""


def folder(vg: str, pool: str) -> str:
    """The pool's backup folder; named like its device-mapper device, so no two pools share one."""
    return f"{BACKUP_ROOT}/{dm_name(vg, pool)}"


LOCATION = "location"  # in the default folder: the folder ``backup --to`` chose, which every reader then uses


def lock(vg: str, pool: str) -> str:
    return f"{LOCK_ROOT}/{dm_name(vg, pool)}.lock"


def busy(vg: str, pool: str) -> PoolBusy:
    return PoolBusy(
        f"another thinpool backup or repair of {vg}/{pool} is running",
        fix="wait for it to finish ('ps -ef | grep thinpool' shows it), then run this again",
    )


def stem(created: int, transaction_id: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created)) + f"-tx{transaction_id}"


@dataclass(frozen=True)
class DumpSummary:
    """What a thin_dump XML says about the pool: enough to check a backup against the pool later."""

    transaction_id: int
    data_block_size: int  # sectors of 512 bytes: the pool's chunk
    # The pool's size in chunks. A dump of a live pool's metadata snapshot says 0 (the snapshot has
    # no data space map), so the backup records the kernel's figure, and a restore passes it to
    # thin_restore --nr-data-blocks.
    nr_data_blocks: int
    devices: dict[int, int]  # thin device id -> mapped data blocks


def summarize_dump(stream: IO[bytes]) -> DumpSummary:
    """Read a thin_dump XML as it streams (a large pool's dump never sits in memory whole)."""
    from xml.etree import ElementTree  # only a backup reads XML: not on the watch commands' path

    superblock: dict[str, str] = {}
    devices: dict[int, int] = {}
    try:
        # thin_dump's own output from the pool's metadata: no DTD, no entities, not untrusted input.
        for event, element in ElementTree.iterparse(stream, events=("start", "end")):  # noqa: S314
            if event == "start" and element.tag == "superblock":
                superblock = dict(element.attrib)
            elif event == "end" and element.tag == "device":
                devices[int(element.attrib["dev_id"])] = int(element.attrib.get("mapped_blocks", "0"))
                element.clear()
        return DumpSummary(
            int(superblock["transaction"]),
            int(superblock["data_block_size"]),
            int(superblock["nr_data_blocks"]),
            devices,
        )
    except (ElementTree.ParseError, KeyError, ValueError) as error:
        raise BackupError(
            f"thin_dump's output is not a complete metadata dump ({error})",
            fix="run 'thin_check' on the pool's metadata (thinpool doctor says how), then back up again",
        ) from error


@dataclass(frozen=True)
class Backup:
    """One backup's manifest."""

    vg: str
    pool: str
    created: int  # seconds since the epoch
    transaction_id: int  # the kernel's, from the dump's superblock
    lvm_transaction_id: int | None  # what lvm's VG metadata expects (None: lvm did not report it)
    method: str  # LIVE or INACTIVE
    data_block_size: int
    nr_data_blocks: int
    devices: dict[int, int]
    thin_dump_version: str = ""

    @property
    def stem(self) -> str:
        return stem(self.created, self.transaction_id)

    @property
    def files(self) -> tuple[str, str, str]:
        """The file names, in the order they are written (the manifest last)."""
        return (self.stem + DUMP_SUFFIX, self.stem + VG_SUFFIX, self.stem + MANIFEST_SUFFIX)

    def to_dict(self) -> dict[str, Any]:
        return envelope(
            KIND,
            version=SCHEMA_VERSION,
            body={
                "vg": self.vg,
                "pool": self.pool,
                "created": self.created,
                "transaction_id": self.transaction_id,
                "lvm_transaction_id": self.lvm_transaction_id,
                "method": self.method,
                "data_block_size": self.data_block_size,
                "nr_data_blocks": self.nr_data_blocks,
                "devices": {str(dev_id): mapped for dev_id, mapped in sorted(self.devices.items())},
                "thin_dump_version": self.thin_dump_version,
                "files": {"metadata": self.files[0], "vg": self.files[1]},
            },
        )


def backup_from_summary(
    vg: str, pool: str, created: int, summary: DumpSummary, *, lvm_transaction_id: int | None, method: str, tool: str
) -> Backup:
    return Backup(
        vg,
        pool,
        created,
        summary.transaction_id,
        lvm_transaction_id,
        method,
        summary.data_block_size,
        summary.nr_data_blocks,
        summary.devices,
        tool,
    )


def parse_manifest(data: object) -> Backup | None:
    """A manifest read back; None when it is not one of ours (or from a schema this version cannot read)."""
    if not isinstance(data, dict) or data.get("kind") != KIND or data.get("schema_version") != SCHEMA_VERSION:
        return None
    try:
        lvm_id = data.get("lvm_transaction_id")
        return Backup(
            vg=str(data["vg"]),
            pool=str(data["pool"]),
            created=int(data["created"]),
            transaction_id=int(data["transaction_id"]),
            lvm_transaction_id=None if lvm_id is None else int(lvm_id),
            method=str(data["method"]),
            data_block_size=int(data["data_block_size"]),
            nr_data_blocks=int(data["nr_data_blocks"]),
            devices={int(dev_id): int(mapped) for dev_id, mapped in dict(data["devices"]).items()},
            thin_dump_version=str(data.get("thin_dump_version", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def age_order(item: Backup) -> tuple[int, int]:
    """Backups in the order they were made (two in one second: the later transaction id last)."""
    return (item.created, item.transaction_id)


def newest(backups: Iterable[Backup]) -> Backup | None:
    return max(backups, key=age_order, default=None)


def to_remove(backups: Iterable[Backup], keep: int) -> list[Backup]:
    """The backups past the ``keep`` newest, oldest first."""
    ordered = sorted(backups, key=age_order)
    return ordered[: max(len(ordered) - keep, 0)]


def due(last: Backup | None, transaction_id: int | None, now: int, every: int = DEFAULT_EVERY) -> str:
    """Why a backup is due now ("" when it is not).

    ``transaction_id`` is the kernel's (None when the pool is inactive: its metadata cannot change).
    """
    if last is None:
        return "the pool has no backup yet"
    age = now - last.created
    if age >= REFRESH_AFTER:
        return f"the newest backup is {age // 3600} hours old"
    if transaction_id is not None and transaction_id != last.transaction_id and age >= every:
        moved = f"{last.transaction_id} -> {transaction_id}"
        return f"the metadata changed since the newest backup (transaction id {moved})"
    return ""
