"""Pure thin-pool sizing: chunk, metadata, spare and headroom, in exact extents.

Nothing here does I/O. Every function takes integers (bytes or extents) and returns
integers, so the same arithmetic serves the planner, the doctor and the tests.
The facts behind each constant are in docs/sizing.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import lcm

from thinpool.core.units import GiB, KiB, MiB, ceil_div, format_size, lvm_size_arg
from thinpool.errors import DoesNotFit, SpecError

CHUNK_MIN = 64 * KiB
CHUNK_MAX = 1 * GiB
CHUNK_DEFAULT = 512 * KiB
METADATA_MIN = 2 * MiB
# lvm2's DEFAULT_THIN_POOL_MAX_METADATA_SIZE: 33,161,216 sectors (15.81 GiB), safe for every lvm2.
METADATA_MAX = 33_161_216 * 512
# lvm2's estimate (thin_manip.c): 64 bytes of metadata per data chunk.
LVM_BYTES_PER_CHUNK = 64
METADATA_BLOCK = 4 * KiB
# Calibrated on lvm2 2.03.16 / kernel 6.1 (docs/benchmarks/metadata.md):
# a btree leaf holds up to 252 mappings; sequential writes fill leaves (4,096 chunks took 16
# leaves and one interior node); leaves appended by chained snapshots are split two into
# three, about 2/3 full.
LEAF_SEQUENTIAL = 252
LEAF_APPENDED = 168
# Refcount overflow: data chunks shared by three or more trees, ~255 per 4 KiB block.
OVERFLOW_ENTRIES_PER_BLOCK = 255
# An empty pool with one thin volume: superblock, details and top-level trees, the volume's
# root, space-map indexes (8 blocks, measured), plus one space-map bitmap per 16,320 data
# chunks and one per 16,320 metadata blocks.
FIXED_METADATA_BLOCKS = 8
# Shadow copies of the running transaction: +10 %.
MARGIN_NUMERATOR, MARGIN_DENOMINATOR = 11, 10
# Space-map bitmap blocks hold 2 bits per block: 16,320 entries in a 4 KiB block.
SPACE_MAP_ENTRIES_PER_BLOCK = 16_320
# The kernel keeps min(16 MiB, 10%) of metadata back for its own transactions.
KERNEL_RESERVE_CAP = 16 * MiB
KERNEL_RESERVE_DIVISOR = 10

DEFAULT_MAX_THIN_DEVICES = 1000
DEFAULT_THIN_DEVICE_SIZE = 10 * GiB
DEFAULT_EXTENT_SIZE = 4 * MiB
DEFAULT_AUTOEXTEND_THRESHOLD = 80
DEFAULT_AUTOEXTEND_PERCENT = 20
# lvm2 treats a threshold under 50 as 50 and one of 100 or more as "off".
AUTOEXTEND_MIN_THRESHOLD = 50
AUTOEXTEND_OFF = 100


def lvm_metadata_estimate(data_size: int, chunk_size: int) -> int:
    """lvm2's own estimate (and the old lvcreate man page formula): 64 B per chunk."""
    return ceil_div(data_size, chunk_size) * LVM_BYTES_PER_CHUNK


def max_addressable_data(chunk_size: int) -> int:
    """The largest pool data a chunk size can address with metadata at its cap."""
    return METADATA_MAX // LVM_BYTES_PER_CHUNK * chunk_size


def validate_chunk(chunk_size: int) -> None:
    if chunk_size % CHUNK_MIN or not CHUNK_MIN <= chunk_size <= CHUNK_MAX:
        raise SpecError(
            f"chunk size {format_size(chunk_size)} is not a multiple of 64 KiB between 64 KiB and 1 GiB",
            fix="pick a power of two such as 64k, 128k, 256k, 512k (the default) or 1m",
        )


def smallest_chunk_addressing(data_size: int, floor: int = CHUNK_MIN) -> int:
    """The smallest power-of-two chunk (>= floor) whose pool can address ``data_size``."""
    chunk = floor
    while max_addressable_data(chunk) < data_size:
        if chunk >= CHUNK_MAX:
            raise SpecError(
                f"no chunk size can address {format_size(data_size)} of pool data",
                fix=f"split the storage into pools of at most {format_size(max_addressable_data(CHUNK_MAX))}",
            )
        chunk *= 2
    return chunk


@dataclass(frozen=True)
class ChunkChoice:
    size: int
    reason: str


# Each engine's default chunk, chosen from the chunk-size table in docs/benchmarks ("The chunk size",
# benchmarks/chunks.py: lvm2 2.03.16, kernel 6.1, Docker 20.10, in the rehearsal VM). Devicemapper engines
# write into snapshots of their images: a 4 KiB first write maps a whole chunk. overlay2's thin volume gets
# space back only through fstrim, which frees whole chunks alone.
SNAPSHOT_ENGINE_CHUNK = ChunkChoice(
    128 * KiB,
    "128 KiB: a container's first 4 KiB writes into its image map 30x their size (103x at 512 KiB) and run twice "
    "as fast (780 against 380 a second); 64 KiB halves that again but doubles the metadata to keep "
    "(docs/benchmarks, the chunk size)",
)
# An engine whose store is a filesystem on a thin volume gets its space back through fstrim.
THIN_VOLUME_CHUNK = ChunkChoice(
    128 * KiB,
    "128 KiB: fstrim frees whole chunks only; after scattered deletes of 64 KiB files it gave back 41% of "
    "them (1% at 512 KiB); 64 KiB gives back all, but doubles the metadata to keep (docs/benchmarks, the "
    "chunk size)",
)
ENGINE_CHUNKS = {
    "docker-devicemapper": SNAPSHOT_ENGINE_CHUNK,
    "containerd-devmapper": SNAPSHOT_ENGINE_CHUNK,
    "docker-overlay2-thin": THIN_VOLUME_CHUNK,
    "containerd-overlayfs-thin": THIN_VOLUME_CHUNK,
    "podman-overlay-thin": THIN_VOLUME_CHUNK,
    "docker-containerd-thin": THIN_VOLUME_CHUNK,
}
NO_ENGINE_CHUNK = ChunkChoice(CHUNK_DEFAULT, "512 KiB: few, large chunks keep metadata small (zeroing off)")


def default_chunk(engine: str) -> ChunkChoice:
    """The chunk a pool for ``engine`` gets unless --chunk-size says otherwise, with the figure behind it."""
    return ENGINE_CHUNKS.get(engine, NO_ENGINE_CHUNK)


def choose_chunk(
    requested: int | None, max_data: int, engine: str = "", workload: Workload | None = None
) -> ChunkChoice:
    """The chunk: the user's if it can address ``max_data``, else refused; otherwise the engine's default,
    raised when it could not address ``max_data``, and (given the ``workload``) while the metadata it
    needs would take more than METADATA_SHARE_PERCENT of the pool."""
    if requested is not None:
        validate_chunk(requested)
        if max_addressable_data(requested) < max_data:
            needed = smallest_chunk_addressing(max_data)
            raise SpecError(
                f"chunk size {format_size(requested)} can address at most "
                f"{format_size(max_addressable_data(requested))} of data, but the pool may grow to "
                f"{format_size(max_data)}",
                fix=f"use --chunk-size {lvm_size_arg(needed)} or larger (the smallest that can), "
                "or lower --max-pool-size",
            )
        return ChunkChoice(requested, "requested with --chunk-size")
    default = default_chunk(engine)
    chunk = smallest_chunk_addressing(max_data, floor=default.size)
    choice = default
    if chunk != default.size:
        reason = (
            f"raised from {format_size(default.size)}: the pool may grow to {format_size(max_data)}, "
            f"which needs {format_size(chunk)} chunks to address"
        )
        choice = ChunkChoice(chunk, reason)
    return choice if workload is None else _within_metadata_share(choice, max_data, workload, choice is default)


@dataclass(frozen=True)
class Workload:
    """What the pool will carry: thin devices (image layers + containers) and their size."""

    max_thin_devices: int = DEFAULT_MAX_THIN_DEVICES
    thin_device_size: int = DEFAULT_THIN_DEVICE_SIZE


def _with_kernel_reserve(needed: int) -> int:
    """Smallest metadata size whose usable part (after the kernel's reserve) holds ``needed``."""
    if needed >= KERNEL_RESERVE_CAP * (KERNEL_RESERVE_DIVISOR - 1):
        return needed + KERNEL_RESERVE_CAP
    return ceil_div(needed * KERNEL_RESERVE_DIVISOR, KERNEL_RESERVE_DIVISOR - 1)


@dataclass(frozen=True)
class PoolUsage:
    """What a pool's metadata must describe, shaped like a container host.

    A base volume written sequentially (the first image layer); ``layers`` thin snapshots
    chained on it, each appending ``layer_bytes``; ``containers`` snapshots of the top layer,
    each making ``writes_per_container`` small writes spread over ``container_span`` bytes
    (default: the whole image), which is what copies shared btree leaves.
    """

    data_size: int
    chunk_size: int
    base_bytes: int = 0
    layers: int = 0
    layer_bytes: int = 0
    containers: int = 0
    writes_per_container: int = 0
    container_span: int | None = None
    metadata_size: int | None = None  # the metadata device, when known (its space map covers all of it)


def _distinct_leaves(leaves: int, writes: int) -> int:
    """Expected leaves touched by ``writes`` uniform writes over ``leaves`` leaves, rounded up.

    leaves x (1 - (1 - 1/leaves)^writes) in 64-bit fixed point; every rounding goes up.
    """
    if leaves <= 1 or writes <= 0:
        return min(leaves, max(writes, 0))
    one = 1 << 64
    base, untouched, power = ((leaves - 1) << 64) // leaves, one, writes
    while power:
        if power & 1:
            untouched = untouched * base >> 64
        base = base * base >> 64
        power >>= 1
    return min(leaves, writes, ceil_div(leaves * (one - untouched), one))


def metadata_structure_blocks(usage: PoolUsage) -> int:
    """4 KiB blocks of dm-thin's btrees and space maps for ``usage`` (before the safety margin)."""
    chunks = ceil_div(usage.data_size, usage.chunk_size)
    base = ceil_div(usage.base_bytes, usage.chunk_size)
    appended = ceil_div(usage.layer_bytes, usage.chunk_size)
    image = base + usage.layers * appended
    fixed = FIXED_METADATA_BLOCKS + ceil_div(chunks, SPACE_MAP_ENTRIES_PER_BLOCK)
    if image <= LEAF_SEQUENTIAL:  # the whole image fits in one leaf, which is each tree's root
        blocks = fixed + usage.layers + usage.containers * min(1, usage.writes_per_container)
        return blocks + _metadata_bitmaps(usage, blocks)
    image_leaves = ceil_div(base, LEAF_SEQUENTIAL) + ceil_div(usage.layers * appended, LEAF_APPENDED)
    depth = 1 if image_leaves <= LEAF_SEQUENTIAL else 2  # interior levels copied with each path
    base_blocks = ceil_div(base, LEAF_SEQUENTIAL) + (depth if base > LEAF_SEQUENTIAL else 0)
    layer_blocks = usage.layers * (depth + 1 + ceil_div(appended, LEAF_APPENDED))
    span = image if usage.container_span is None else ceil_div(usage.container_span, usage.chunk_size)
    span_leaves = max(1, ceil_div(image_leaves * min(span, image), image))  # the image's leaves the writes fall in
    per_container = _distinct_leaves(span_leaves, usage.writes_per_container) + depth
    # Each copied leaf costs at least one written chunk: never more copies than chunks.
    container_blocks = min(chunks, usage.containers * per_container)
    overflow = ceil_div(min(image, chunks), OVERFLOW_ENTRIES_PER_BLOCK) if usage.containers >= 2 else 0
    blocks = fixed + base_blocks + layer_blocks + container_blocks + overflow
    return blocks + _metadata_bitmaps(usage, blocks)


def _metadata_bitmaps(usage: PoolUsage, blocks: int) -> int:
    """The metadata space map's bitmaps: they cover the whole device (or what the pool needs)."""
    device_blocks = usage.metadata_size // METADATA_BLOCK if usage.metadata_size else blocks
    return ceil_div(max(device_blocks, blocks), SPACE_MAP_ENTRIES_PER_BLOCK)


def metadata_need(usage: PoolUsage) -> int:
    """Metadata bytes ``usage`` occupies, with a margin for in-flight copies (no kernel reserve)."""
    blocks = metadata_structure_blocks(usage)
    return ceil_div(blocks * MARGIN_NUMERATOR, MARGIN_DENOMINATOR) * METADATA_BLOCK


def planning_usage(data_size: int, chunk_size: int, workload: Workload) -> PoolUsage:
    """The worst case a plan provisions for: the pool full, and every thin device rewriting
    one small piece of every leaf of its own size (Docker's dm.basesize)."""
    device_chunks = ceil_div(min(workload.thin_device_size, data_size), chunk_size)
    return PoolUsage(
        data_size=data_size,
        chunk_size=chunk_size,
        base_bytes=data_size,
        containers=workload.max_thin_devices,
        writes_per_container=device_chunks,
        container_span=min(workload.thin_device_size, data_size),
    )


def workload_metadata_estimate(data_size: int, chunk_size: int, workload: Workload) -> int:
    """Metadata bytes for a pool full of container layers: the calibrated model plus the kernel's reserve."""
    return _with_kernel_reserve(metadata_need(planning_usage(data_size, chunk_size, workload)))


@dataclass(frozen=True)
class MetadataChoice:
    size: int
    term: str
    reason: str
    candidates: dict[str, int] = field(default_factory=dict)
    capped: bool = False


def choose_metadata(requested: int | None, max_data: int, chunk_size: int, workload: Workload) -> MetadataChoice:
    """Metadata bytes: the largest of lvm2's estimate, the workload model and 2 MiB, capped."""
    candidates = {
        "lvm2-estimate": lvm_metadata_estimate(max_data, chunk_size),
        "workload": workload_metadata_estimate(max_data, chunk_size, workload),
        "minimum": METADATA_MIN,
    }
    if requested is not None:
        if not METADATA_MIN <= requested <= METADATA_MAX:
            raise SpecError(
                f"metadata size {format_size(requested)} is outside lvm's range 2 MiB .. 15.81 GiB",
                fix="pick a size in that range, or leave --metadata-size out to let thinpool size it",
            )
        return MetadataChoice(requested, "requested", "requested with --metadata-size", candidates)
    term = max(candidates, key=lambda name: candidates[name])
    size = candidates[term]
    reasons = {
        "lvm2-estimate": f"lvm2's 64 B per chunk for the pool grown to {format_size(max_data)}",
        "workload": (
            f"{workload.max_thin_devices} thin devices of up to {format_size(workload.thin_device_size)} "
            f"diverging from their snapshots, on a pool grown to {format_size(max_data)}"
        ),
        "minimum": "lvm's 2 MiB minimum",
    }
    if size > METADATA_MAX:
        return MetadataChoice(METADATA_MAX, term, reasons[term], candidates, capped=True)
    return MetadataChoice(size, term, reasons[term], candidates)


# The most an engine's default chunk may cost in metadata and its spare (both sized for the workload), as a
# percentage of the pool's grown size: the workload's worst case does not shrink with the disk, so on a small
# disk a small chunk would reserve more than its measured gains are worth (20 GiB at 128 KiB: 7.1 %).
METADATA_SHARE_PERCENT = 2


def _metadata_share_over(max_data: int, chunk_size: int, workload: Workload) -> bool:
    metadata = choose_metadata(None, max_data, chunk_size, workload).size
    return 2 * metadata * 100 > METADATA_SHARE_PERCENT * max_data


def _within_metadata_share(chunk: ChunkChoice, max_data: int, workload: Workload, measured: bool) -> ChunkChoice:
    """A default ``chunk``, doubled (up to 512 KiB) while the metadata and spare it needs for ``workload``
    would take more than METADATA_SHARE_PERCENT of ``max_data`` (``measured``: it is the engine's own)."""
    size = chunk.size
    while size < CHUNK_DEFAULT and _metadata_share_over(max_data, size, workload):
        size *= 2
    if size == chunk.size:
        return chunk
    metadata = choose_metadata(None, max_data, chunk.size, workload).size
    tenths = 2 * metadata * 1000 // max_data
    origin = "the engine's measured choice" if measured else "the smallest that addresses the pool"
    return ChunkChoice(
        size,
        f"{format_size(size)}: at {format_size(chunk.size)} ({origin}) metadata and its spare "
        f"for the workload would take {tenths // 10}.{tenths % 10}% of a pool of {format_size(max_data)}, more "
        f"than {METADATA_SHARE_PERCENT}%; {format_size(size)} is the smallest chunk within that (512 KiB at most)",
    )


def metadata_extents(choice: MetadataChoice, extent_size: int) -> int:
    """Whole extents for ``choice``: rounded up, and refused when that cannot stay within lvm's range.

    lvm sizes metadata in whole extents of the VG. A requested size that rounds up past 15.81 GiB
    cannot be honoured (capping it would silently give less than asked); a sized one is capped at
    the largest whole number of extents under the cap, which must be at least one extent.
    """
    most = METADATA_MAX // extent_size
    if most == 0:
        raise SpecError(
            f"extents of {format_size(extent_size)} are larger than the most metadata lvm allows (15.81 GiB): "
            "the pool's metadata cannot be a whole extent",
            fix="use a smaller --extent-size (lvm's default 4m suits every pool size)",
        )
    wanted = ceil_div(choice.size, extent_size)
    if wanted > most and choice.term == "requested":
        raise SpecError(
            f"--metadata-size {format_size(choice.size)} rounds up to {wanted} extents of {format_size(extent_size)} "
            f"({format_size(wanted * extent_size)}), above lvm's 15.81 GiB",
            fix=f"ask for at most {format_size(most * extent_size)}, or use a smaller --extent-size",
        )
    return min(wanted, most)


def chunk_fitting_metadata_cap(max_data: int, chunk_size: int, workload: Workload) -> int | None:
    """The smallest larger chunk at which the metadata model fits under the cap."""
    chunk = chunk_size * 2
    while chunk <= CHUNK_MAX:
        need = max(lvm_metadata_estimate(max_data, chunk), workload_metadata_estimate(max_data, chunk, workload))
        if need <= METADATA_MAX:
            return chunk
        chunk *= 2
    return None


def autoextend_step(data_extents: int, percent: int) -> int:
    """Extents one autoextend adds: ``percent`` of the data LV, rounded up (lvm2's policy)."""
    return ceil_div(data_extents * percent, 100)


def metadata_growth_on_step(
    data_extents: int, metadata_extents: int, step: int, extent_size: int, chunk_size: int
) -> int:
    """Extents lvm adds to metadata when autoextend grows data by ``step`` extents."""
    estimate = lvm_metadata_estimate((data_extents + step) * extent_size, chunk_size)
    wanted = min(ceil_div(estimate, extent_size), METADATA_MAX // extent_size)
    return max(0, wanted - metadata_extents)


@dataclass(frozen=True)
class Autoextend:
    threshold: int = DEFAULT_AUTOEXTEND_THRESHOLD
    percent: int = DEFAULT_AUTOEXTEND_PERCENT

    @property
    def enabled(self) -> bool:
        return self.threshold < AUTOEXTEND_OFF

    def validate(self) -> None:
        if not AUTOEXTEND_MIN_THRESHOLD <= self.threshold <= AUTOEXTEND_OFF:
            raise SpecError(
                f"autoextend threshold {self.threshold}% is outside 50-100",
                fix="lvm reads any threshold under 50 as 50 and 100 as 'never': pick 50-99, or 100 to disable",
            )
        if not 1 <= self.percent <= 100:
            raise SpecError(
                f"autoextend percent {self.percent}% is outside 1-100",
                fix="each autoextend step grows the data by this share of its size: pick 1-100 (default 20)",
            )


def minimum_headroom(
    data_extents: int, metadata_extents: int, extent_size: int, chunk_size: int, autoextend: Autoextend
) -> int:
    """Free extents one autoextend step needs: its data, plus metadata and spare growth."""
    if not autoextend.enabled:
        return 0
    step = autoextend_step(data_extents, autoextend.percent)
    growth = metadata_growth_on_step(data_extents, metadata_extents, step, extent_size, chunk_size)
    return step_extents(step, growth)


def step_extents(step: int, growth: int, data_images: int = 1, metadata_images: int = 1) -> int:
    """Free extents an autoextend step takes: its data and metadata growth once per RAID image, and the spare's
    growth (linear) with the metadata's."""
    return step * data_images + growth * (metadata_images + 1)


@dataclass(frozen=True)
class Layout:
    """A thin pool's footprint in one VG, in extents; ``required`` must fit ``free``."""

    extent_size: int
    chunk_size: int
    data_extents: int
    metadata_extents: int
    spare_extents: int
    headroom_extents: int
    free_extents: int
    redundancy_extents: int = 0  # RAID: the second images and every image's metadata subvolume (core.layouts)

    @property
    def required_extents(self) -> int:
        parts = self.data_extents + self.metadata_extents + self.spare_extents + self.headroom_extents
        return parts + self.redundancy_extents

    @property
    def fits(self) -> bool:
        return self.required_extents <= self.free_extents

    @property
    def shortfall_extents(self) -> int:
        return max(0, self.required_extents - self.free_extents)

    @property
    def left_extents(self) -> int:
        return self.free_extents - self.required_extents


def spare_needed(metadata_extents: int, existing_spare_extents: int) -> int:
    """New extents for the hidden pool-metadata spare: lvm keeps it as large as the largest metadata."""
    return max(0, metadata_extents - existing_spare_extents)


def alignment_extents(extent_size: int, chunk_size: int) -> int:
    """Data sizes are whole extents and whole chunks: a multiple of this many extents."""
    return lcm(extent_size, chunk_size) // extent_size


def largest_fitting_data(
    room: int, metadata_extents: int, extent_size: int, chunk_size: int, autoextend: Autoextend
) -> int:
    """The most data extents (aligned) such that data + its headroom fits in ``room``."""
    align = alignment_extents(extent_size, chunk_size)
    percent = autoextend.percent if autoextend.enabled else 0
    data = room * 100 // (100 + percent) // align * align
    while data > 0:
        headroom = minimum_headroom(data, metadata_extents, extent_size, chunk_size, autoextend)
        if data + headroom <= room:
            return data
        data -= align
    return 0


def explain_shortfall(layout: Layout) -> DoesNotFit:
    return DoesNotFit(
        f"the layout needs {layout.required_extents} extents but the volume group has "
        f"{layout.free_extents} free: data {layout.data_extents} + metadata {layout.metadata_extents} "
        f"+ spare {layout.spare_extents} + autoextend headroom {layout.headroom_extents} "
        f"(short by {layout.shortfall_extents})",
        fix="ask for less data (--data-size), add a device, or leave --data-size out to use all that fits",
    )
