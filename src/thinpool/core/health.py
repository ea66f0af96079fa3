"""A pool's status: what lvm's report and the pool's profile say about it, and what follows from that.

``core.lvm.report.pool_status`` reads the report into a ``PoolStatus``; ``core.doctor`` judges it.
Nothing here runs a command.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

from thinpool.core import owners, sizing
from thinpool.core.layouts import MIRROR_IMAGES
from thinpool.core.model import Filesystem, WhenFull
from thinpool.errors import ThinpoolError

OUT_OF_DATA = "out of data space"
# lvm's 9th attr character on a thin pool, and what it means.
HEALTH_FLAGS = {"F": "failed", "D": OUT_OF_DATA, "M": "metadata read-only"}
# lv_health_status spells some of the same problems its own way: one name per problem.
HEALTH_WORDS = {"out_of_data": OUT_OF_DATA, "metadata_read_only": "metadata read-only"}
MAX_COUNTED_STEPS = 99


@dataclass(frozen=True)
class ThinVolume:
    """An lvm thin volume of the pool: what the pool maps for it, and the filesystem on it if mounted."""

    name: str
    size: int
    mapped: int
    managed: bool  # tagged thinpool.managed: thinpool made it and may trim it
    device: str = ""  # "MAJOR:MINOR" while active
    filesystem: Filesystem | None = None

    @property
    def reclaimable(self) -> int:
        """Mapped chunks the filesystem no longer uses (what fstrim could give back to the pool)."""
        if self.filesystem is None:
            return 0
        return max(0, self.mapped - self.filesystem.used)


# lvm's 9th attr character on a RAID LV, and lv_health_status's words for it.
RAID_PROBLEMS = {"p": "partial", "r": "refresh needed", "m": "mismatches exist"}


@dataclass(frozen=True)
class PoolPart:
    """The pool's data or metadata LV (``POOL_tdata``, ``POOL_tmeta``): its layout, and as RAID its state."""

    role: str  # "data" or "metadata"
    segtype: str  # linear, striped, raid1
    attr: str = ""
    health: str = ""  # lv_health_status: "partial" (an image's PV is missing), "refresh needed", ...
    sync_percent: str = ""  # copy_percent as lvm prints it ("100.00"): how far the images agree
    devices: tuple[str, ...] = ()  # the PVs under it

    @property
    def raid(self) -> bool:
        return self.segtype.startswith("raid")

    @property
    def problem(self) -> str:
        """What makes the RAID degraded ("" when it is whole or not RAID)."""
        if not self.raid:
            return ""
        return RAID_PROBLEMS.get(self.attr[8:9], "") or (self.health if self.health in RAID_PROBLEMS.values() else "")

    @property
    def in_sync(self) -> bool:
        return not self.raid or self.sync_percent == "100.00"


class PoolNotFound(ThinpoolError):
    """The VG/POOL asked about is not a thin pool."""


@dataclass(frozen=True)
class PoolStatus:
    vg: str
    pool: str
    attr: str
    data_size: int
    data_used: int
    metadata_size: int
    metadata_used: int
    chunk_size: int
    thin_count: int
    virtual_size: int
    extent_size: int
    vg_free_extents: int
    monitor: str
    health: str
    profile: str
    devices: tuple[str, ...]
    autoextend: sizing.Autoextend | None = None  # None: no thinpool-readable profile attached
    autoextend_steps: int = 0  # how many autoextend steps in a row the VG's free extents allow
    when_full: str = ""  # a WhenFull value (lv_when_full); "" while inactive
    volumes: tuple[ThinVolume, ...] = ()
    backup_checked: bool = False  # the pool's backup folder was looked at
    backup_age: int | None = None  # seconds since the newest metadata backup (None: there is none)
    transaction_id: int | None = None  # lvm's record of the pool's metadata transaction
    kernel_transaction_id: int | None = None  # dm-thin's, from the active pool's status (None: not read)
    tags: tuple[str, ...] = ()  # the pool LV's lvm tags
    vg_tags: tuple[str, ...] = ()
    parts: tuple[PoolPart, ...] = ()  # its data and metadata LVs, as laid out (core.layouts)

    def part(self, role: str) -> PoolPart | None:
        return next((part for part in self.parts if part.role == role), None)

    def images(self, role: str) -> int:
        """Copies lvm keeps of a part: 2 for raid1 and raid10 (core.layouts), else 1."""
        part = self.part(role)
        return MIRROR_IMAGES if part is not None and part.segtype in ("raid1", "raid10") else 1

    @property
    def raid_degraded(self) -> bool:
        return any(part.problem for part in self.parts)

    @property
    def raid_in_sync(self) -> bool:
        return all(part.in_sync for part in self.parts)

    @property
    def layout(self) -> dict[str, str]:
        """Each part's layout: {"data": "raid1", "metadata": "linear"}."""
        return {part.role: part.segtype for part in self.parts}

    @cached_property
    def ownership(self) -> owners.Ownership:
        """Who made the pool, from its tags, names and volumes (core.owners), and whether thinpool adopted it;
        read once per status (doctor's rules each ask)."""
        marks = owners.Marks(
            self.vg,
            self.pool,
            self.tags,
            self.vg_tags,
            tuple(volume.name for volume in self.volumes),
            self.transaction_id,
            self.kernel_transaction_id,
        )
        return owners.owner_of(marks)

    @property
    def room(self) -> owners.Room:
        data, images = self.part("data"), self.images("data")
        striped = data is not None and data.segtype in ("striped", "raid10")
        width = len(data.devices) if data is not None and striped else images
        return owners.Room(self.vg, self.pool, self.extent_size, self.vg_free_extents, self.devices, images, width)

    @property
    def reclaimable(self) -> int:
        return sum(volume.reclaimable for volume in self.volumes if volume.managed)

    @property
    def active(self) -> bool:
        return self.attr[4:5] == "a"

    @property
    def can_autoextend(self) -> bool:
        """dmeventd can still grow the pool: monitored, autoextend on, and room for the next step."""
        return self.monitor == "monitored" and self.autoextend_steps > 0

    @property
    def data_ratio(self) -> float:
        return self.data_used / self.data_size if self.data_size else 0.0

    @property
    def metadata_ratio(self) -> float:
        return self.metadata_used / self.metadata_size if self.metadata_size else 0.0

    @property
    def overprovision_ratio(self) -> float:
        return self.virtual_size / self.data_size if self.data_size else 0.0

    @property
    def health_problems(self) -> tuple[str, ...]:
        flag = HEALTH_FLAGS.get(self.attr[8:9], "")
        found = [flag] if flag else []
        word = HEALTH_WORDS.get(self.health, self.health)
        if word in RAID_PROBLEMS.values():  # a RAID part's, judged as raid-degraded (core.doctor)
            word = ""
        if word and word not in found:
            found.append(word)
        return tuple(found)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["devices"] = list(self.devices)
        data["autoextend"] = asdict(self.autoextend) if self.autoextend else None
        data["volumes"] = [_volume_dict(volume) for volume in self.volumes]
        data["parts"] = [{**asdict(part), "devices": list(part.devices), "problem": part.problem,
                          "in_sync": part.in_sync, "redundant": part.raid} for part in self.parts]  # fmt: skip
        data["layout"] = self.layout
        data.update(
            reclaimable=self.reclaimable,
            when_full_wanted=when_full_wanted(self)[0],
            data_ratio=round(self.data_ratio, 6),
            metadata_ratio=round(self.metadata_ratio, 6),
            overprovision_ratio=round(self.overprovision_ratio, 6),
            vg_free_bytes=self.vg_free_extents * self.extent_size,
            health_problems=list(self.health_problems),
            owner=self.ownership.to_dict(),
        )
        return data


def _volume_dict(volume: ThinVolume) -> dict[str, Any]:
    data = asdict(volume)
    data["reclaimable"] = volume.reclaimable
    return data


def when_full_wanted(status: PoolStatus) -> tuple[WhenFull, str]:
    """The when-full mode the pool should have, and why.

    Queueing (dm-thin's default) holds writes for no_space_timeout (60 s) so that dmeventd can
    grow the pool under a burst; a pool that cannot grow only makes its writers hang, then fail.
    """
    if status.can_autoextend:
        return WhenFull.QUEUE, "autoextend can still grow it: writes wait for dmeventd instead of failing"
    return WhenFull.ERROR, "it cannot grow by itself: writes fail at once instead of hanging 60 s, then failing"


def when_full_change(status: PoolStatus) -> str:
    """The mode to switch the pool to, "" when it has the right one (or is inactive: never monitored then, or
    its mode is not thinpool's to set: a pool another tool made, whose owner chose the mode)."""
    wanted, _ = when_full_wanted(status)
    if not status.active or status.when_full not in tuple(WhenFull) or status.when_full == wanted:
        return ""
    return wanted if when_full_is_ours(status.ownership) else ""


def when_full_is_ours(ownership: owners.Ownership) -> bool:
    """thinpool sets the when-full mode of the pools it made, of hand-made ones it is named for, and of adopted
    ones whose owner left lvm's default (tagged thinpool.when-full); never of another tool's otherwise."""
    if ownership.owner == owners.Owner.THINPOOL or ownership.when_full_ours:
        return True
    return not ownership.adopted and not ownership.owner.has_own_tools


def parse_profile(text: str | None) -> sizing.Autoextend | None:
    """threshold/percent of an lvm profile's activation section (None when it sets no threshold)."""
    if not text:
        return None
    values = dict(re.findall(r"^\s*thin_pool_autoextend_(threshold|percent)\s*=\s*(\d+)", text, re.MULTILINE))
    if "threshold" not in values:
        return None
    return sizing.Autoextend(int(values["threshold"]), int(values.get("percent", sizing.DEFAULT_AUTOEXTEND_PERCENT)))


def autoextend_steps(
    data_extents: int,
    metadata_extents: int,
    free_extents: int,
    extent_size: int,
    chunk_size: int,
    autoextend: sizing.Autoextend | None,
    data_images: int = 1,
    metadata_images: int = 1,
) -> int:
    """How many autoextend steps in a row the VG's free extents still allow (0 when autoextend is off); a step
    takes its extents once per RAID image (``data_images``, ``metadata_images``)."""
    if autoextend is None or not autoextend.enabled:
        return 0
    steps = 0
    while steps < MAX_COUNTED_STEPS:
        step = sizing.autoextend_step(data_extents, autoextend.percent)
        growth = sizing.metadata_growth_on_step(data_extents, metadata_extents, step, extent_size, chunk_size)
        need = sizing.step_extents(step, growth, data_images, metadata_images)
        if need > free_extents:
            break
        free_extents -= need
        data_extents += step
        metadata_extents += growth
        steps += 1
    return steps


def with_filesystems(status: PoolStatus, filesystems: dict[str, Filesystem]) -> PoolStatus:
    """The status with each active thin volume's mounted filesystem (by device number)."""
    volumes = tuple(replace(volume, filesystem=filesystems.get(volume.device)) for volume in status.volumes)
    return replace(status, volumes=volumes)


def with_profile(status: PoolStatus, profile_text: str | None) -> PoolStatus:
    """The status with the autoextend settings of its lvm profile (the text of the file it names), and how
    many steps of them the VG still has room for."""
    autoextend = parse_profile(profile_text)
    extent = status.extent_size
    steps = autoextend_steps(
        status.data_size // extent,
        status.metadata_size // extent,
        status.vg_free_extents,
        extent,
        status.chunk_size,
        autoextend,
        data_images=status.images("data"),
        metadata_images=status.images("metadata"),
    )
    return replace(status, autoextend=autoextend, autoextend_steps=steps)
