"""Whose pool is it: the owner of a thin pool, read from lvm's own record, and what thinpool does for it.

Most thin pools on container and VM hosts were made by another tool. Each leaves its marks in lvm:

* Incus tags its volume group ``incus_pool`` (LXD: ``lxd_pool``), names its pool ``IncusThinPool``
  (``LXDThinPool``) unless told otherwise, and its volumes ``containers_NAME``, ``images_FINGERPRINT``,
  ``virtual-machines_NAME``, ``custom_NAME``;
* Proxmox VE's installer makes ``pve/data``; its guests' disks are ``vm-ID-disk-N`` (templates:
  ``base-ID-disk-N``; snapshots: ``snap_vm-ID-disk-N_NAME``);
* Docker's devicemapper driver makes thin devices the pool's metadata holds but lvm does not list:
  dm-thin's transaction id runs ahead of lvm's;
* thinpool tags what it makes ``thinpool.managed``.

``thinpool adopt`` records with a tag that thinpool looks after a pool it did not make; nothing here runs a
command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from thinpool.core.lvm.commands import MANAGED_TAG
from thinpool.core.units import ceil_div, format_size, lvm_size_arg

ADOPTED_TAG = "thinpool.adopted"  # on a pool thinpool looks after but did not make
# On an adopted pool whose when-full mode its owner left at lvm's default: thinpool's maintain may set it.
WHEN_FULL_TAG = "thinpool.when-full"

INCUS_VG_TAG = "incus_pool"
LXD_VG_TAG = "lxd_pool"
INCUS_VOLUME = re.compile(r"^(containers|images|virtual-machines|custom|buckets)_")
PROXMOX_VOLUME = re.compile(r"^(vm|base)-\d+-|^snap_(vm|base)-\d+-")


class Owner(StrEnum):
    THINPOOL = "thinpool"
    INCUS = "incus"
    LXD = "lxd"
    PROXMOX = "proxmox"
    DOCKER = "docker"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def has_own_tools(self) -> bool:
        """The owner manages the pool with its own tools: fixes are said in lvm's words or the owner's, never
        with thinpool's grow or apply, which plan thinpool's own layout."""
        return self in (Owner.INCUS, Owner.LXD, Owner.PROXMOX, Owner.DOCKER)


_LABELS = {
    Owner.THINPOOL: "thinpool",
    Owner.INCUS: "Incus",
    Owner.LXD: "LXD",
    Owner.PROXMOX: "Proxmox VE",
    Owner.DOCKER: "Docker's devicemapper or containerd's devmapper",
    Owner.UNKNOWN: "an unknown tool or a person",
}


@dataclass(frozen=True)
class Marks:
    """What lvm and dm-thin record about a pool that names its maker."""

    vg: str
    pool: str
    pool_tags: tuple[str, ...] = ()
    vg_tags: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()  # the names of the pool's thin volumes
    transaction_id: int | None = None  # lvm's
    kernel_transaction_id: int | None = None  # dm-thin's (None: not read, or the pool is inactive)


@dataclass(frozen=True)
class Ownership:
    owner: Owner
    evidence: str  # what in lvm's record says so
    adopted: bool = False  # tagged thinpool.adopted
    when_full_ours: bool = False  # tagged thinpool.when-full: the owner left the when-full mode to thinpool

    @property
    def foreign(self) -> bool:
        return self.owner != Owner.THINPOOL

    def to_dict(self) -> dict[str, str | bool]:
        return {
            "owner": str(self.owner),
            "evidence": self.evidence,
            "adopted": self.adopted,
            "when_full_ours": self.when_full_ours,
        }


def owner_of(marks: Marks) -> Ownership:
    """The pool's maker, from the strongest mark found (a tag before a name before a pattern)."""
    owner, evidence = _maker(marks)
    return Ownership(owner, evidence, ADOPTED_TAG in marks.pool_tags, WHEN_FULL_TAG in marks.pool_tags)


def _maker(marks: Marks) -> tuple[Owner, str]:
    if MANAGED_TAG in marks.pool_tags:
        return Owner.THINPOOL, f"the pool is tagged {MANAGED_TAG}"
    for tag, owner in ((INCUS_VG_TAG, Owner.INCUS), (LXD_VG_TAG, Owner.LXD)):
        if tag in marks.vg_tags:
            return owner, f"volume group {marks.vg} is tagged {tag}"
    for name, owner in (("IncusThinPool", Owner.INCUS), ("LXDThinPool", Owner.LXD)):
        if marks.pool == name:
            return owner, f"the pool has {owner.label}'s default name {name}"
    incus = [volume for volume in marks.volumes if INCUS_VOLUME.match(volume)]
    if incus:
        return Owner.INCUS, f"its volumes are named as Incus names them ({_some(incus)})"
    proxmox = [volume for volume in marks.volumes if PROXMOX_VOLUME.match(volume)]
    if proxmox:
        return Owner.PROXMOX, f"its volumes are named as Proxmox VE names them ({_some(proxmox)})"
    if (marks.vg, marks.pool) == ("pve", "data"):
        return Owner.PROXMOX, "it is pve/data, the pool Proxmox VE's installer makes"
    lvm, kernel = marks.transaction_id, marks.kernel_transaction_id
    if lvm is not None and kernel is not None and kernel > lvm:
        return Owner.DOCKER, (
            f"dm-thin's transaction id ({kernel}) is ahead of lvm's ({lvm}): thin devices lvm does not list, "
            "as Docker's devicemapper driver and containerd's devmapper snapshotter make them"
        )
    return Owner.UNKNOWN, "no tag, name or volume says who made it"


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


# What the owner's tools do for a pool that needs room, or whose users must stop ----------------------


@dataclass(frozen=True)
class Room:
    """Where the pool stands for growing: its name, its VG's free extents, its data devices."""

    vg: str
    pool: str
    extent_size: int
    vg_free_extents: int
    devices: tuple[str, ...]
    data_images: int = 1  # raid1 data: each extent added takes two
    grow_disks: int = 1  # new disks thinpool grow takes at a time (raid1: 2, striped: its stripes)

    @property
    def new_disks(self) -> str:
        """What to name on ``thinpool grow``: one new disk, or as many as the layout grows onto."""
        return " ".join(f"/dev/sd{letter}" for letter in "XYZUVW"[: self.grow_disks])


def grow_data_fix(ownership: Ownership, room: Room, extents: int) -> str:
    """The command that gives the pool ``extents`` more data extents, as its owner would run it."""
    target = f"{room.vg}/{room.pool}"
    if ownership.owner in (Owner.INCUS, Owner.LXD) and any(device.startswith("/dev/loop") for device in room.devices):
        tool = ownership.owner.value
        return (
            f"{tool} storage set {room.vg} size=<larger> ({ownership.owner.label} grows its loop file, the PV "
            f"and {target} together; name its storage pool if it is not {room.vg})"
        )
    if extents * room.data_images <= room.vg_free_extents:
        return f"lvextend -l +{extents} {target}"
    if ownership.owner.has_own_tools:
        return f"vgextend {room.vg} /dev/sdX && lvextend -l +{extents} {target}"
    return f"thinpool grow {room.new_disks} --vg {room.vg} --pool {room.pool}"


def grow_metadata_fix(ownership: Ownership, room: Room, size: int) -> str:
    """lvm grows the metadata spare with the metadata: the VG needs room for both."""
    target = f"{room.vg}/{room.pool}"
    needed = 2 * ceil_div(size, room.extent_size)
    command = f"lvextend --poolmetadatasize +{lvm_size_arg(size)} {target}"
    if needed <= room.vg_free_extents:
        return command
    if ownership.owner.has_own_tools:
        return f"vgextend {room.vg} /dev/sdX && {command} (the VG needs {format_size(needed * room.extent_size)} free)"
    return f"thinpool grow {room.new_disks} --vg {room.vg} --pool {room.pool}"


def stop_users(ownership: Ownership, target: str) -> str:
    """How to stop whatever uses the pool's thin volumes, in the owner's own words."""
    return {
        Owner.INCUS: "stop the instances on it (incus stop --all, or each one)",
        Owner.LXD: "stop the instances on it (lxc stop --all)",
        Owner.PROXMOX: f"shut down the guests whose disks are on {target} (qm shutdown ID, pct shutdown ID)",
        Owner.DOCKER: "stop the engine on it (systemctl stop docker.service docker.socket, or containerd.service)",
    }.get(ownership.owner, "stop its users")


# What thinpool does for a pool it looks after -----------------------------------------------------------


@dataclass(frozen=True)
class Duty:
    """One thing thinpool does, or does not do, for a pool, and why."""

    what: str
    done: bool
    why: str

    def to_dict(self) -> dict[str, str | bool]:
        return {"what": self.what, "done": self.done, "why": self.why}


def duties(ownership: Ownership, autoextend: bool) -> tuple[Duty, ...]:
    """What thinpool will and will not do for a pool it adopts (``autoextend``: arm it with a profile)."""
    owner = ownership.owner.label
    return (
        Duty("watch", True, "status, doctor, metrics and alerts read the pool: they change nothing"),
        Duty(
            "back up its metadata",
            True,
            "the maintain timer copies its metadata (thin_dump of a metadata snapshot, beside the live pool) "
            "when it changes, so a damaged pool can be restored",
        ),
        Duty("repair", True, "thinpool repair VG/POOL --yes, with the same checks and backups as for its own"),
        _when_full_duty(ownership),
        Duty(
            "trim",
            False,
            f"the thin volumes are {owner}'s: a guest's disk holds a filesystem only the guest sees, and a "
            f"container's is mounted by {owner} while it runs; trim from inside (discard) or with {owner}'s tools",
        ),
        Duty(
            "autoextend",
            autoextend,
            "a profile thinpool-VG-POOL is attached (--autoextend): dmeventd grows the data from the VG's free space"
            if autoextend
            else "not asked (--autoextend): the VG's free space may be kept for the owner (Proxmox VE keeps it for "
            "snapshots of its root)",
        ),
        Duty(
            "rename, resize or touch its volumes",
            False,
            f"never: the pool, its volumes and their names stay {owner}'s; thinpool adds only its tags "
            f"({ADOPTED_TAG}, {WHEN_FULL_TAG}) and, when asked, its profile",
        ),
    )


def _when_full_duty(ownership: Ownership) -> Duty:
    if ownership.when_full_ours:
        why = "the owner left lvm's default (queue): maintain fails writes at once when the pool cannot grow"
        return Duty("set the when-full mode", True, why)
    return Duty("set the when-full mode", False, "the owner chose it (lvchange --errorwhenfull y): it is kept")
