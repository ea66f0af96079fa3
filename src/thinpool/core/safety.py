"""Pure safety rules for devices thinpool is asked to take. A refusal changes nothing.

Signatures (filesystems, RAID, partition tables, old LVM labels) and unused partitions can
be overridden with --wipe, and only with it. A mounted, held, swap or read-only device,
a PV of another volume group, or a PV marked used whose VG may live on absent disks, never is.
A PV left marked used by an interrupted vgcreate (no VG ever committed to it) is taken.
"""

from __future__ import annotations

from thinpool.core.model import Device, PhysicalVolume
from thinpool.core.units import MiB, format_size
from thinpool.errors import SpecError

# One extent of 4 MiB after pvcreate's 1 MiB alignment, and some room for data.
MINIMUM_DEVICE = 16 * MiB
TAKEABLE_TYPES = ("disk", "part", "loop", "lvm", "crypt", "mpath", "raid0", "raid1", "raid5", "raid10")


class UnsafeDevice(SpecError):
    """A device thinpool will not touch as it is."""


def check_device(device: Device | None, path: str, pv: PhysicalVolume | None, *, wipe: bool) -> None:
    """Raise UnsafeDevice naming the device, the reason and the override (if there is one)."""
    if device is None:
        raise UnsafeDevice(f"{path}: no such block device", fix="check the path with lsblk")
    if device.virtual:
        return
    never = _never_reason(device)
    if never:
        raise UnsafeDevice(f"{path}: {never}", fix="thinpool never touches such a device; free it first")
    if device.size < MINIMUM_DEVICE:
        raise UnsafeDevice(
            f"{path}: {format_size(device.size)} is too small (at least {format_size(MINIMUM_DEVICE)})",
            fix="use a larger device",
        )
    if pv is not None and pv.marked_used_without_vg and not pv.left_by_interrupted_vgcreate:
        raise UnsafeDevice(
            f"{path}: lvm marks it as used by a volume group it cannot find (its metadata may be on"
            " other, absent disks)",
            fix=f"attach the volume group's other disks; if it is certainly gone, 'pvremove -ff {path}'",
        )
    if pv is not None and pv.in_a_vg:
        raise UnsafeDevice(
            f"{path}: is a physical volume of volume group {pv.vg_name!r}",
            fix=f"use --vg {pv.vg_name} to put the pool there; thinpool never takes a PV from another VG",
        )
    if device.partitions and not wipe:
        raise UnsafeDevice(
            f"{path}: has partitions ({', '.join(device.partitions)})",
            fix=f"name a partition instead, or pass --wipe to erase the partition table of {path}",
        )
    if device.signatures and not (pv is not None and device.signatures == ("LVM2_member",)) and not wipe:
        raise UnsafeDevice(
            f"{path}: carries {', '.join(device.signatures)} signature(s); its data would be lost",
            fix=f"if that data is not needed, pass --wipe to erase the signatures of {path} first",
        )


def _never_reason(device: Device) -> str:
    if device.type not in TAKEABLE_TYPES:
        return f"is a {device.type or 'unknown'} device, not a disk or partition"
    if device.read_only:
        return "is read-only"
    if device.mountpoints:
        return f"is mounted at {', '.join(device.mountpoints)}"
    if device.swap:
        return "backs swap"
    if device.holders:
        return f"is held by {', '.join(device.holders)} (device-mapper, RAID or another user)"
    return ""
