"""Observed state: what the system looks like, as plain frozen data (no I/O here)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from thinpool.core.units import MiB

if TYPE_CHECKING:  # EngineState's parts, read only by the engines' commands: status does not import them
    from thinpool.core.tls import Certificate, TlsFiles

ENCODING = "utf-8"  # of every text file thinpool reads and writes
# Bytes that are not UTF-8 survive a read and a write unchanged (a line thinpool does not own
# must come back byte for byte).
ERRORS = "surrogateescape"

# pvcreate's default data alignment: the first extent starts 1 MiB into the device.
DEFAULT_PE_START = 1 * MiB


class WhenFull(StrEnum):
    """What a thin pool does with a write once its data is full (lvm's lv_when_full)."""

    QUEUE = "queue"  # dm-thin holds the write (no_space_timeout, 60 s) for dmeventd to grow the pool
    ERROR = "error"  # fails the write at once


@dataclass(frozen=True)
class Device:
    """A block device (or a virtual disk that exists only in a plan)."""

    path: str
    size: int
    virtual: bool = False
    type: str = "disk"
    mountpoints: tuple[str, ...] = ()
    holders: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    signatures: tuple[str, ...] = ()
    read_only: bool = False
    rotational: bool = False
    swap: bool = False

    def extents_as_pv(self, extent_size: int, pe_start: int = DEFAULT_PE_START) -> int:
        """Extents this device gives once it is a PV (lvm: floor((size - pe_start) / extent))."""
        return max(0, (self.size - pe_start) // extent_size)


UNKNOWN_VG = "[unknown]"  # lvm's vg_name for a PV marked used whose VG it cannot find


@dataclass(frozen=True)
class PhysicalVolume:
    name: str
    vg_name: str
    size: int
    pe_start: int
    pe_count: int
    pe_alloc_count: int
    dev_size: int
    attr: str = ""
    mda_used_count: int = 0

    @property
    def in_a_vg(self) -> bool:
        return self.vg_name not in ("", UNKNOWN_VG)

    @property
    def marked_used_without_vg(self) -> bool:
        """lvm flags the PV as a VG member ('u') but finds no VG metadata for it."""
        return self.attr.startswith("u") and not self.in_a_vg

    @property
    def left_by_interrupted_vgcreate(self) -> bool:
        """Marked used, no VG, yet its own metadata area is in use and holds no VG.

        A VG is written to every in-use metadata area of its PVs at each commit, so such a PV
        never held a committed VG: vgcreate or vgextend died between marking it and committing
        (lvm2 2.03.16, tests/vm/test_interrupt.py). With no metadata area in use (0), the VG
        may live on other, absent disks: that case is never treated as a leftover.
        """
        return self.marked_used_without_vg and self.mda_used_count >= 1


@dataclass(frozen=True)
class LogicalVolume:
    name: str
    vg_name: str
    attr: str
    size: int
    segtype: str = ""
    metadata_size: int = 0
    chunk_size: int = 0
    data_percent: str = ""
    metadata_percent: str = ""
    seg_monitor: str = ""
    health: str = ""
    profile: str = ""
    pool_lv: str = ""
    origin: str = ""
    active: bool = False
    tags: tuple[str, ...] = ()
    uuid: str = ""
    when_full: str = ""  # a thin pool's: WhenFull's values, as lvm reports them
    kernel_device: str = ""  # "MAJOR:MINOR" while active, "" otherwise
    transaction_id: int | None = None  # a thin pool's, as lvm's VG metadata expects it
    thin_id: int | None = None  # a thin volume's device id in its pool's metadata
    stripes: int = 0  # its first segment's stripes (raid1: images), from lvm fullreport; 0 when not read

    @property
    def hidden(self) -> bool:
        return self.name.startswith("[")

    @property
    def held_open(self) -> bool:
        """Something holds the LV open (lv_attr's sixth character is 'o')."""
        return self.attr[5:6] == "o"

    @property
    def bare_name(self) -> str:
        return self.name.strip("[]")

    @property
    def is_thin_pool(self) -> bool:
        return self.segtype == "thin-pool"

    @property
    def is_spare(self) -> bool:
        return self.bare_name.endswith("_pmspare")


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    extent_size: int
    extent_count: int
    free_count: int
    seqno: int
    pv_names: tuple[str, ...] = ()
    lvs: tuple[LogicalVolume, ...] = ()
    uuid: str = ""
    tags: tuple[str, ...] = ()  # vg_tags (Incus and LXD mark the VGs they use)

    def lv(self, name: str) -> LogicalVolume | None:
        for lv in self.lvs:
            if lv.bare_name == name:
                return lv
        return None

    @property
    def spare_extents(self) -> int:
        """Extents of the existing pool-metadata spare (0 when there is none)."""
        return sum(lv.size for lv in self.lvs if lv.is_spare) // self.extent_size

    def thin_volumes(self, pool: str) -> tuple[LogicalVolume, ...]:
        return tuple(lv for lv in self.lvs if lv.pool_lv == pool)


@dataclass(frozen=True)
class Filesystem:
    """A mounted filesystem from the kernel's mount table (sizes from statvfs, in bytes)."""

    device: str  # "MAJOR:MINOR", as lvm's lv_kernel_major/minor give it
    mount_point: str
    fstype: str
    size: int
    used: int


@dataclass(frozen=True)
class DmDevice:
    """A device-mapper device as dmsetup lists it; lvm's carry UUID LVM-<vg uuid><lv uuid>[-layer]."""

    name: str
    uuid: str
    open_count: int
    live_table: bool = True  # False while lvm is between creating the device and resuming its table


@dataclass(frozen=True)
class Source:
    """A config file as observed: its text, or why there is none."""

    path: str
    text: str | None = None  # None: the file does not exist or could not be read
    unreadable: str = ""  # the reason it could not be read

    @property
    def exists(self) -> bool:
        return self.text is not None or bool(self.unreadable)


@dataclass(frozen=True)
class StoreRoot:
    """A store's mount point as observed, with the thin volume meant to be mounted there."""

    source: str = ""  # what is mounted on it ("" when nothing)
    entries: int = 0  # entries in it (0 when absent or empty)
    filesystem: str = ""  # the filesystem on the store's thin volume ("" when none, or no volume)
    on_root_filesystem: bool = False  # it exists, on the filesystem mounted at / (what it holds fills that)


def text_digest(text: str) -> str:
    """A file's text as sha256 hex, over its bytes as read (the plan's record of what it was made from)."""
    import hashlib  # only apply's journal and its checks need it, not the watch commands

    return hashlib.sha256(text.encode(ENCODING, ERRORS)).hexdigest()


@dataclass(frozen=True)
class EngineState:
    """What the engine adapters look at: config files, versions, the data root."""

    observed: bool = False  # False for a plan on virtual disks: nothing was read
    files: dict[str, str] = field(default_factory=dict)  # path -> text, for files that exist
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why it could not be read
    # path -> what the symbolic link there says (its target, as written), with whether that target exists
    links: dict[str, tuple[str, bool]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # program -> version ("20.10.24")
    programs: dict[str, str] = field(default_factory=dict)  # program -> absolute path
    systemd: bool = False  # systemd is the init system (daemon-reload is worth running)
    udev: bool = False  # udev manages /dev (the /dev/mapper names are links to dm-N)
    docker_devicemapper_state: bool = False  # <data root>/devicemapper/metadata holds devices
    # Each store root looked at (the engine's stores on thin volumes, Docker's data root, containerd's root).
    roots: dict[str, StoreRoot] = field(default_factory=dict)
    tls_files: TlsFiles | None = None  # what thinpool made under TLS_ROOT (read for --tls-generate)
    host_names: tuple[str, ...] = ()  # the host's name and FQDN (read for --tls-generate)
    host_addresses: tuple[str, ...] = ()  # its global addresses (read for --tls-generate)
    certificates: tuple[Certificate, ...] = ()  # those daemon.json's tlscert and tlscacert name
    dns_silent: tuple[str, ...] = ()  # addresses in daemon.json's dns that did not answer a query
    observed_at: float = 0.0  # seconds since the epoch: what certificates' expiry is measured from

    def root(self, path: str) -> StoreRoot:
        """What was seen at a store's mount point (nothing mounted, empty, no volume when it was not looked at)."""
        return self.roots.get(path, StoreRoot())

    def source(self, path: str) -> Source:
        """A config file as it was read, for the parsers in thinpool.config."""
        return Source(path, self.files.get(path), self.unreadable.get(path, ""))

    def fingerprint(self) -> dict[str, object]:
        found: dict[str, object] = {path: text_digest(text)[:16] for path, text in sorted(self.files.items())}
        return found | {f"{path} (link)": target for path, (target, _) in sorted(self.links.items())}


@dataclass(frozen=True)
class CryptState:
    """What the planner sees of encryption: the key, crypttab, and each device's LUKS UUID (read from its
    header, or drawn by the caller for a device about to be formatted) and whether the key opens it."""

    key_present: bool = False
    crypttab: str | None = None
    uuids: dict[str, str] = field(default_factory=dict)
    key_opens: dict[str, bool] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)  # a PV on a mapping of thinpool's -> the disk under it
    tpm2_device: bool = False  # with --tpm2: the kernel shows a TPM 2.0 (/dev/tpmrm0)
    tpm2_tool: bool = False  # with --tpm2: systemd-cryptenroll is installed
    tpm2_enrolled: frozenset[str] = frozenset()  # LUKS devices whose header has a TPM2 key slot already


@dataclass(frozen=True)
class LvmLocal:
    """lvm's local config file as observed (``text`` None: it does not exist) and the options lvm uses now."""

    text: str | None
    options: tuple[str, ...] | None  # global/thin_check_options after every config file; None: unreadable


@dataclass(frozen=True)
class Observed:
    """Everything the planner may look at. A virtual plan fills only ``devices``."""

    devices: dict[str, Device] = field(default_factory=dict)
    pvs: dict[str, PhysicalVolume] = field(default_factory=dict)
    vgs: dict[str, VolumeGroup] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    engine: EngineState = field(default_factory=EngineState)
    dm_devices: tuple[DmDevice, ...] = ()
    taken_dev_names: frozenset[str] = frozenset()  # names asked about that exist under /dev (lvm refuses them as VGs)
    lvm_local: LvmLocal | None = None  # lvmlocal.conf and the thin_check options; None: not observed (no boot check)
    crypt: CryptState = field(default_factory=CryptState)  # read only for --encrypt (core.crypt)

    def fingerprint(self) -> dict[str, object]:
        """What a saved plan was made against; apply refuses it if this changed."""
        return {
            "devices": {path: dev.size for path, dev in sorted(self.devices.items())},
            "vgs": {name: vg.seqno for name, vg in sorted(self.vgs.items())},
            "pvs": {name: pv.vg_name for name, pv in sorted(self.pvs.items())},
            "engine_files": self.engine.fingerprint(),
        }


def virtual_disks(sizes: Iterable[int], names: Iterable[str] | None = None) -> Observed:
    """Blank virtual disks (``disk1``, ``disk2`` ... unless named) for planning without touching anything."""
    sizes = list(sizes)
    labels = list(names) if names is not None else [f"disk{index}" for index in range(1, len(sizes) + 1)]
    return Observed(devices={name: Device(name, size, virtual=True) for name, size in zip(labels, sizes, strict=True)})
