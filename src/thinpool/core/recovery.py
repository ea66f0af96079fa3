"""Pure rules for what an interrupted ``lvcreate --type thin-pool`` leaves behind.

Seen on lvm2 2.03.16 by killing lvcreate at every point of its run (tests/vm/test_interrupt.py):
  * ``lvol0``: the metadata LV under lvm's temporary name, linear, untagged, inactive or
    still active from lvm's own zeroing (but never open);
  * ``POOL``: a linear, inactive LV of the metadata's size, already carrying thinpool's tag;
  * ``POOL`` as a thin pool whose device-mapper device has no table, or whose hidden
    parts are active while the pool is not: it must be deactivated, then activated;
  * a device-mapper device that carries one of the VG's LV UUIDs under another name (lvm's
    temporary ``VG-lvol0`` still holding what is now ``POOL_tmeta``): lvs shows the LV's
    state as ``XX`` and activation fails ("prohibited while ... _tmeta is active") until the
    stray mapping, which nothing has open, is removed;
  * a mapping under the LV's own name (``VG-POOL_tmeta``) with no live table, only the inactive
    one lvm loaded before it was killed: lvs shows the LV's state as ``i``, and activation fails
    the same way until the half-made mapping is removed;
  * the pool inactive while ``POOL_tmeta`` (or ``_tdata``) is active on its own, state ``a``: lvm
    refuses to activate the pool ("prohibited while ... _tmeta is active") and ``lvchange -an POOL``
    leaves the part active; the part itself must be deactivated (``lvchange -an VG/POOL_tmeta``).
    The same state is what component activation (``lvchange -ay VG/POOL_tmeta``) leaves.
A leftover is removed only when thinpool can tell it is its own: tagged, or named
``lvolN`` at exactly the metadata size of the plan being made; linear, and not open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from thinpool.core.lvm.commands import MANAGED_TAG, dm_name, pool_metadata_name
from thinpool.core.model import DmDevice, LogicalVolume, VolumeGroup

_LVM_TEMPORARY_NAME = re.compile(r"^lvol\d+$")
_LVM_DM_UUID_LENGTH = len("LVM-") + 32 + 32


@dataclass(frozen=True)
class Leftovers:
    tagged: tuple[LogicalVolume, ...] = ()
    temporary: tuple[LogicalVolume, ...] = ()


# What a pool made from its parts (core.layouts) is made of before lvconvert joins them.
_PART_SEGTYPES = ("linear", "striped", "raid1", "raid10")


def _unused(lv: LogicalVolume, segtypes: tuple[str, ...] = ("linear",)) -> bool:
    """Of one of ``segtypes``, visible, and not open by anyone (a full lv_attr whose open character is not 'o')."""
    return lv.segtype in segtypes and not lv.hidden and len(lv.attr) > 5 and not lv.held_open


def find_leftovers(vg: VolumeGroup, pool: str) -> Leftovers:
    """Candidates only: temporary ones must still match the planned metadata size. Tagged ones are the pool's
    own name (lvcreate's, or the data LV of a pool made from its parts) or its parts' metadata LV."""
    parts = (pool, pool_metadata_name(pool))
    tagged = tuple(
        lv for lv in vg.lvs if lv.bare_name in parts and _unused(lv, _PART_SEGTYPES) and MANAGED_TAG in lv.tags
    )
    temporary = tuple(lv for lv in vg.lvs if _LVM_TEMPORARY_NAME.match(lv.name) and _unused(lv) and not lv.tags)
    return Leftovers(tagged, temporary)


def without(vg: VolumeGroup, removed: tuple[LogicalVolume, ...]) -> VolumeGroup:
    """The VG as it will be once ``removed`` are gone: their extents are free again."""
    names = {lv.name for lv in removed}
    freed = sum(lv.size for lv in removed) // vg.extent_size
    return replace(vg, lvs=tuple(lv for lv in vg.lvs if lv.name not in names), free_count=vg.free_count + freed)


def needs_reactivation(pool: LogicalVolume, vg: VolumeGroup) -> bool:
    """A thin pool that is not cleanly active, with no thin volume of it in use."""
    cleanly_active = pool.active and len(pool.attr) > 4 and pool.attr[4] == "a"
    in_use = any(lv.active for lv in vg.thin_volumes(pool.bare_name))
    return not cleanly_active and not in_use


def active_parts(pool: LogicalVolume, vg: VolumeGroup) -> tuple[LogicalVolume, ...]:
    """The pool's hidden data and metadata LVs that are active on their own (component activation, by hand or by
    a killed lvcreate or backup): active, but not held open by a pool. ``lvchange -ay POOL`` is refused until they
    are deactivated, and ``lvchange -an POOL`` leaves them be. Seen with the pool inactive, and with the pool's
    mapping present without a table (state 'd') after a kill 0.4 s into lvcreate."""
    names = {f"{pool.bare_name}_tmeta", f"{pool.bare_name}_tdata"}
    return tuple(lv for lv in vg.lvs if lv.hidden and lv.bare_name in names and lv.active and not lv.held_open)


def stray_dm_devices(vg: VolumeGroup, devices: tuple[DmDevice, ...]) -> tuple[DmDevice, ...]:
    """Unopened mappings that hold one of this VG's LVs under a name no LV of the VG has, or
    with no live table (half-made: nothing can do I/O through them).

    Only the owner's UUID is trusted, never the layer suffix: an active pool with no thin
    volumes is mapped as VG-POOL with the UUID of its "-tpool" layer, and must stay.
    """
    if not vg.uuid:
        return ()
    prefix = "LVM-" + vg.uuid.replace("-", "")
    owners = {prefix + lv.uuid.replace("-", "") for lv in vg.lvs if lv.uuid}
    names = {dm_name(vg.name, lv.bare_name) for lv in vg.lvs}

    def lvm_would_name_it(name: str) -> bool:
        return any(name == known or name.startswith(known + "-") for known in names)

    return tuple(
        device
        for device in devices
        # LVM-<32 chars of VG uuid><32 chars of LV uuid>, then "-tpool" and the like for layers
        if device.uuid[:_LVM_DM_UUID_LENGTH] in owners
        and not device.open_count
        and (not device.live_table or not lvm_would_name_it(device.name))
    )
