"""Layouts of a thin pool's data and metadata over several disks, and where each part goes, in exact extents.

Pure: the planner hands it the free extents of each PV the VG will have; it answers which layouts the pool gets,
on which PVs each part is pinned, and how many extents each PV gives. The rules are lvm2's:

* a raid1 LV keeps two images on two different PVs, each with a metadata subvolume (rmeta) on its image's PV,
  of ``rmeta_extents`` (lib/metadata/raid_manip.c, ``_raid_rmeta_extents``; 1 extent of 4 MiB below 64 TiB);
* a striped LV puts ``size / stripes`` on each of ``stripes`` PVs (lvm rounds the size up to whole stripes);
* an autoextend step grows every image (raid1: two, each on its own PV) or every stripe on its own PV;
* the pool-metadata spare stays linear, one PV, as large as the metadata.

A pool that is linear throughout is one ``lvcreate --type thin-pool`` and lvm places it (the planner's old path).
Any other layout is made as lvmthin(7) says: the metadata LV, then the data LV, each pinned to the PVs chosen
here, then ``lvconvert --type thin-pool --poolmetadata``, its spare pinned too; so what lvm allocates is what
was counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from math import lcm

from thinpool.core.units import KiB, MiB, ceil_div, format_size, lvm_size_arg
from thinpool.errors import DoesNotFit, SpecError

SECTOR = 512
RAID_REGION_SIZE = 2 * MiB  # lvm2's DEFAULT_RAID_REGION_SIZE (lvm.conf activation/raid_region_size)
RAID_SUPERBLOCKS = 2 * 4096  # dm-raid's superblock and its bitmap's
DEFAULT_STRIPE_SIZE = 64 * KiB  # lvm2's DEFAULT_STRIPESIZE
STRIPE_SIZE_MIN = 4 * KiB
MIRROR_IMAGES = 2


class DataLayout(StrEnum):
    """How the pool's data is laid over the disks (``--layout``)."""

    LINEAR = "linear"  # filled one disk after another: all their space, no copy
    STRIPED = "striped"  # written across the disks in turn (for their bandwidth together), no copy
    RAID1 = "raid1"  # two copies on two disks: one may die
    RAID10 = "raid10"  # two copies, striped over pairs of disks: one disk of each pair may die


class MetadataLayout(StrEnum):
    """How the pool's metadata is laid (``--metadata-layout``)."""

    LINEAR = "linear"
    RAID1 = "raid1"


@dataclass(frozen=True)
class Layouts:
    data: DataLayout
    metadata: MetadataLayout
    stripes: int = 1  # data stripes (striped only)
    stripe_size: int = 0  # bytes (striped only)
    reason: str = ""

    @property
    def all_linear(self) -> bool:
        return self.data == DataLayout.LINEAR and self.metadata == MetadataLayout.LINEAR

    @property
    def data_images(self) -> int:
        """Copies of the data lvm keeps: an autoextend step is allocated this many times."""
        return MIRROR_IMAGES if self.data in (DataLayout.RAID1, DataLayout.RAID10) else 1

    @property
    def metadata_images(self) -> int:
        return MIRROR_IMAGES if self.metadata == MetadataLayout.RAID1 else 1

    @property
    def data_pvs(self) -> int:
        """Distinct PVs the data needs."""
        return self.stripes * self.data_images if self.data != DataLayout.LINEAR else 1

    @property
    def striped(self) -> bool:
        """The data is laid in stripes (striped, raid10): its size and chunk are whole stripes."""
        return self.data in (DataLayout.STRIPED, DataLayout.RAID10)

    def describe_data(self) -> str:
        if self.data == DataLayout.STRIPED:
            return f"striped over {self.stripes} disks ({format_size(self.stripe_size)} stripes)"
        if self.data == DataLayout.RAID10:
            pairs = f"{self.stripes} mirrored pairs, {format_size(self.stripe_size)} stripes"
            return f"raid10 over {self.data_pvs} disks ({pairs})"
        return str(self.data)

    def describe(self) -> str:
        return f"data {self.describe_data()}, metadata {self.metadata}"


def rmeta_extents(image_extents: int, extent_size: int, region_size: int = RAID_REGION_SIZE) -> int:
    """Extents of one raid image's metadata subvolume: dm-raid's superblocks and one bit per region."""
    regions = image_extents * extent_size // region_size
    sectors = ceil_div(RAID_SUPERBLOCKS + ceil_div(regions, 8), SECTOR)
    return ceil_div(sectors, extent_size // SECTOR)


def choose_layouts(
    data: DataLayout | None,
    metadata: MetadataLayout | None,
    stripes: int | None,
    stripe_size: int | None,
    pv_count: int,
) -> Layouts:
    """The layouts asked for, or by the number of PVs the VG will have: raid1 metadata from two disks on (the
    metadata is the pool's single point of failure at ~0.1 % of its space), linear data (all the space)."""
    chosen_data = data or DataLayout.LINEAR
    if (stripes is not None or stripe_size is not None) and chosen_data not in (DataLayout.STRIPED, DataLayout.RAID10):
        raise SpecError(
            "--stripes and --stripe-size are for striped or raid10 data", fix="add --layout striped, or drop them"
        )
    chosen_metadata = metadata or (MetadataLayout.RAID1 if pv_count >= MIRROR_IMAGES else MetadataLayout.LINEAR)
    for layout, option in ((chosen_data, "--layout"), (chosen_metadata, "--metadata-layout")):
        if layout == "raid1" and pv_count < MIRROR_IMAGES:
            raise SpecError(
                f"{option} raid1 keeps two copies on two disks, but the volume group will have {pv_count}",
                fix=f"name a second device, or use {option} linear",
            )
    count, size = _stripes(chosen_data, stripes, stripe_size, pv_count)
    reason = _reason(chosen_data, chosen_metadata, data, metadata, pv_count)
    return Layouts(chosen_data, chosen_metadata, count, size, reason)


def _stripes(data: DataLayout, stripes: int | None, stripe_size: int | None, pv_count: int) -> tuple[int, int]:
    if data not in (DataLayout.STRIPED, DataLayout.RAID10):
        return 1, 0
    per_stripe = MIRROR_IMAGES if data == DataLayout.RAID10 else 1  # raid10: a pair of disks per stripe
    count = pv_count // per_stripe if stripes is None else stripes
    if count < 2 or count * per_stripe > pv_count:
        disks = "two disks per stripe, 4 at the least" if per_stripe > 1 else "a disk per stripe, 2 at the least"
        raise SpecError(
            f"--layout {data} with {count} stripes needs {disks}; the volume group will have {pv_count}",
            fix="name more devices, or set --stripes to what the disks allow",
        )
    size = DEFAULT_STRIPE_SIZE if stripe_size is None else stripe_size
    if size < STRIPE_SIZE_MIN or size & (size - 1):
        raise SpecError(
            f"--stripe-size {format_size(size)} is not a power of two of at least 4 KiB",
            fix="leave it at lvm's 64k, or pick e.g. 128k or 256k",
        )
    return count, size


def _reason(
    data: DataLayout, metadata: MetadataLayout, asked: DataLayout | None, asked_meta: MetadataLayout | None, pvs: int
) -> str:
    data_why = (
        "--layout" if asked else "the default: all the disks' space, no copy (--layout raid1 or raid10 keeps two)"
    )
    if asked_meta:
        meta_why = "--metadata-layout"
    elif metadata == MetadataLayout.RAID1:
        meta_why = f"the default with {pvs} disks: losing the metadata loses every thin volume, and it is ~0.1 %"
    else:
        meta_why = "the default with one disk"
    return f"data {data} ({data_why}); metadata {metadata} ({meta_why})"


def check_chunk(layouts: Layouts, chunk_size: int, requested: bool) -> int:
    """The chunk, a whole number of stripes: a requested one that is not is refused, a default one raised."""
    if not layouts.striped or chunk_size % layouts.stripe_size == 0:
        return chunk_size
    if requested:
        raise SpecError(
            f"--chunk-size {format_size(chunk_size)} is not a multiple of the {format_size(layouts.stripe_size)} "
            "stripe: a chunk written would cross disks unevenly",
            fix=f"use --chunk-size {lvm_size_arg(layouts.stripe_size)} or a multiple, or a smaller --stripe-size",
        )
    return layouts.stripe_size


@dataclass(frozen=True)
class Parts:
    """What the pool's parts take, in extents, before placing them."""

    data: int
    metadata: int
    spare: int  # the spare's new extents (0 when an existing spare is large enough)
    step: int  # one autoextend step of the data (0: off)
    metadata_growth: int  # what that step adds to the metadata


@dataclass(frozen=True)
class Placement:
    """Where lvm is told to put each part (PV paths), and the extents each PV gives."""

    metadata_pvs: tuple[str, ...]
    data_pvs: tuple[str, ...]  # (): anywhere (linear data)
    spare_pvs: tuple[str, ...]
    used: Mapping[str, int]  # extents per PV, autoextend room included
    redundancy_extents: int  # extents beyond one copy of each part: second images and rmeta

    @property
    def total(self) -> int:
        return sum(self.used.values())


def place(layouts: Layouts, parts: Parts, free: Mapping[str, int], extent_size: int) -> Placement | None:
    """Pin each part to PVs so that it fits with the room its autoextend needs, or None when it cannot."""
    order = sorted(free, key=lambda pv: -free[pv])  # most free first, then VG order (a stable sort)
    left = dict(free)
    wide = order[: max(layouts.metadata_images, layouts.data_pvs)]
    if len(wide) < max(layouts.metadata_images, layouts.data_pvs):
        return None
    metadata_pvs = tuple(wide[: layouts.metadata_images])
    redundancy = 0
    meta_rmeta = rmeta_extents(parts.metadata, extent_size) if layouts.metadata_images > 1 else 0
    for pv in metadata_pvs:
        left[pv] -= parts.metadata + meta_rmeta + parts.metadata_growth
    redundancy += (layouts.metadata_images - 1) * parts.metadata + layouts.metadata_images * meta_rmeta
    if any(left[pv] < 0 for pv in metadata_pvs):
        return None
    if layouts.data == DataLayout.LINEAR:  # lvm places linear data and its spare: only the total counts
        if _take_anywhere(left, order, parts.data + parts.step + parts.spare + parts.metadata_growth) is None:
            return None
        data_pvs: tuple[str, ...] = ()
        spare_pvs: tuple[str, ...] | None = ()
    else:
        data_pvs = tuple(wide[: layouts.data_pvs])
        per_pv, extra = _data_per_pv(layouts, parts, extent_size)
        for pv in data_pvs:
            left[pv] -= per_pv
        redundancy += extra
        if any(left[pv] < 0 for pv in data_pvs):
            return None
        spare_pvs = _spare_pvs(left, order, parts.spare + parts.metadata_growth)
    if spare_pvs is None:
        return None
    used = {pv: free[pv] - left[pv] for pv in order if free[pv] != left[pv]}
    return Placement(metadata_pvs, data_pvs, spare_pvs, used, redundancy)


def _data_per_pv(layouts: Layouts, parts: Parts, extent_size: int) -> tuple[int, int]:
    """Extents the data (with its autoextend step) takes on each of its PVs, and its redundancy extents."""
    image = ceil_div(parts.data, layouts.stripes) + ceil_div(parts.step, layouts.stripes)
    if layouts.data == DataLayout.STRIPED:
        return image, 0
    rmeta = rmeta_extents(image, extent_size)  # raid1 and raid10: each image with its own
    return image + rmeta, parts.data + layouts.data_pvs * rmeta


def _take_anywhere(left: dict[str, int], order: list[str], extents: int) -> tuple[str, ...] | None:
    """Linear extents may span PVs: take them from the PVs with the most free first; the PVs taken from, or None
    when they do not hold them all."""
    taken_from = []
    for pv in sorted(order, key=lambda name: -left[name]):
        taken = min(max(left[pv], 0), extents)
        if taken:
            taken_from.append(pv)
            left[pv] -= taken
            extents -= taken
    return tuple(taken_from) if extents == 0 else None


def _spare_pvs(left: dict[str, int], order: list[str], extents: int) -> tuple[str, ...] | None:
    """The spare is linear on one PV if one has room (lvm then keeps it whole), else over the fewest."""
    if extents == 0:
        return ()
    roomy = [pv for pv in order if left[pv] >= extents]
    if roomy:
        best = max(roomy, key=lambda pv: left[pv])
        left[best] -= extents
        return (best,)
    return _take_anywhere(left, order, extents)


def largest_data(
    layouts: Layouts,
    parts_for: Callable[[int], Parts],
    free: Mapping[str, int],
    extent_size: int,
    align: int,
    reserve: int = 0,
) -> int:
    """The most data extents (a multiple of ``align``) that ``place`` fits with ``reserve`` extents left free
    (--headroom): it is monotone, so bisect."""
    total = sum(free.values())
    low, high = 0, total // align
    while low < high:
        middle = (low + high + 1) // 2
        placement = place(layouts, parts_for(middle * align), free, extent_size)
        if placement is None or placement.total + reserve > total:
            high = middle - 1
        else:
            low = middle
    return low * align


def data_alignment(layouts: Layouts, align: int) -> int:
    """Data extents are whole chunks and, striped, whole stripes across the disks."""
    return lcm(align, layouts.stripes)


def no_room(layouts: Layouts, parts: Parts, free: Mapping[str, int], best: int, extent_size: int) -> DoesNotFit:
    shown = ", ".join(f"{pv} {count}" for pv, count in free.items())
    error = DoesNotFit(
        f"{layouts.describe()}: {parts.data} data extents do not fit with metadata {parts.metadata}, its spare "
        f"and the autoextend room on the disks each copy or stripe needs (free extents: {shown})",
        fix="leave --data-size out to use all that fits, add a device, or choose another --layout",
    )
    if best > 0:
        error.fix = (
            f"ask for at most {best} extents ({lvm_size_arg(best * extent_size)}) of data, add a device, "
            "or leave --data-size out"
        )
    return error


@dataclass(frozen=True)
class Growth:
    """What grow adds to RAID or striped data, on which new PVs."""

    data: int  # extents added to the data LV (each image or over the stripes)
    pvs: tuple[str, ...]  # the new PVs lvextend is told to use
    used: int  # extents it takes from them (images, stripes, rmeta)


def grow_data(
    segtype: str,
    stripes: int,
    new_free: Mapping[str, int],
    data_now: int,
    reserve: int,
    step_of: Callable[[int], int],
    align: int,
    extent_size: int,
) -> Growth:
    """How far RAID or striped data grows onto the new PVs: each image (raid1, raid10) or stripe onto a new disk
    of its own; ``reserve`` extents kept on every one of them for the metadata and spare growth lvm may put there,
    and each one's share of the next autoextend step (``step_of(data)``) too. ``stripes`` is lvm's count for the
    data LV's segment (raid1: its 2 images, raid10: its images, striped: its stripes)."""
    copies = MIRROR_IMAGES if segtype.startswith("raid") else 1
    width = MIRROR_IMAGES if segtype == "raid1" else stripes
    data_stripes = max(1, width // copies)  # how the data is divided over one copy's disks
    chosen = sorted(new_free, key=lambda pv: -new_free[pv])[:width]
    if len(chosen) < width:
        what = "each image onto a new disk of its own" if copies > 1 else f"its {width} stripes"
        raise SpecError(
            f"the pool's {segtype} data grows by {width} disks at a time ({what}); {len(new_free)} new given",
            fix=f"name {width} new devices of about the same size (extra ones join the VG as free space)",
        )
    room = min(new_free[pv] for pv in chosen) - reserve
    unit = lcm(align, data_stripes)

    def fits(added: int) -> bool:
        total = data_now + added
        per_pv = added // data_stripes + ceil_div(step_of(total), data_stripes)
        if copies > 1:
            before = rmeta_extents(ceil_div(data_now, data_stripes), extent_size)
            per_pv += rmeta_extents(ceil_div(total, data_stripes), extent_size) - before
        return per_pv <= room

    low, high = 0, max(room, 0) * data_stripes // unit
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle * unit) else (low, middle - 1)
    added = low * unit
    return Growth(added, tuple(chosen), added * copies)
