"""Desired state: what the operator asks for, validated, with every default in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from thinpool.core import sizing
from thinpool.core.units import GiB, MiB, Percent, format_size, parse_percent
from thinpool.errors import SpecError

NO_ENGINE = "none"  # the engines themselves are registered in thinpool.engines
DEFAULT_VG = "docker"
DEFAULT_POOL = "thinpool"

_NAME_RE = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$")
_RESERVED_LV_PARTS = (
    "_cdata", "_cmeta", "_corig", "_iorig", "_mimage", "_mlog", "_pmspare", "_rimage",
    "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig",
)  # fmt: skip
_RESERVED_LV_PREFIXES = ("snapshot", "pvmove")
NAME_MAX = 127


def validate_lvm_name(name: str, *, what: str) -> None:
    """lvm's rules for VG and LV names, checked before any command runs."""
    fix = "use letters, digits and + _ . - (not starting with -), at most 127 characters"
    if not name or len(name) > NAME_MAX or not _NAME_RE.match(name) or name in (".", ".."):
        raise SpecError(f"{what} name {name!r} is not a valid lvm name", fix=fix)
    reserved = name.startswith(_RESERVED_LV_PREFIXES) or any(part in name for part in _RESERVED_LV_PARTS)
    if what == "pool" and reserved:
        raise SpecError(
            f"pool name {name!r} contains a part lvm reserves for hidden volumes",
            fix="avoid snapshot*/pvmove* prefixes and _tdata, _tmeta, _pmspare and similar suffixes",
        )


@dataclass(frozen=True)
class EngineOptions:
    """How the container engine is wired to the pool (ignored with engine 'none')."""

    base_size: int = 10 * GiB  # dm.basesize / base_image_size: each image or container's virtual size
    min_free_space: int = 10  # dm.min_free_space, percent of the pool Docker keeps free
    volume_name: str = "docker-data"  # docker-overlay2-thin: the thin volume under the data root
    volume_size: int | None = None  # its virtual size (default: the pool's data size)
    data_root: str = "/var/lib/docker"
    storage_opts: tuple[str, ...] = ()  # extra dm.* options for docker-devicemapper, KEY=VALUE
    hosts: tuple[str, ...] = ()  # Docker API sockets, e.g. unix:///run/docker.sock
    dns: tuple[str, ...] = ()
    tls_cacert: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    insecure_tcp: bool = False
    force: bool = False  # replace another storage driver or pool named in the engine's config

    @property
    def tls(self) -> bool:
        return bool(self.tls_cacert and self.tls_cert and self.tls_key)

    def validate(self) -> None:
        validate_lvm_name(self.volume_name, what="thin volume")
        if self.base_size < MiB:
            raise SpecError("--base-size must be at least 1 MiB", fix="Docker's default is 10GiB")
        if not 0 <= self.min_free_space <= 50:
            raise SpecError("--min-free-space must be a percent in 0..50", fix="Docker's default is 10")
        if not self.data_root.startswith("/") or self.data_root.rstrip("/") in ("", "/var", "/var/lib"):
            raise SpecError(
                f"--data-root {self.data_root!r} is not a dedicated absolute path", fix="e.g. /var/lib/docker"
            )
        if any(char.isspace() for char in self.data_root):
            raise SpecError(f"--data-root {self.data_root!r} contains white space", fix="pick a path without spaces")
        for option in self.storage_opts:
            if "=" not in option or not option.startswith("dm."):
                raise SpecError(f"--storage-opt {option!r} is not dm.KEY=VALUE", fix="e.g. dm.blkdiscard=false")
        if any((self.tls_cacert, self.tls_cert, self.tls_key)) and not self.tls:
            raise SpecError("TLS needs all of --tlscacert, --tlscert and --tlskey", fix="give the three files")

    def to_dict(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value for name, value in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineOptions:
        values: dict[str, Any] = {name: tuple(v) if isinstance(v, list) else v for name, v in data.items()}
        return cls(**values)


@dataclass(frozen=True)
class PoolSpec:
    """A thin pool as the operator wants it. Sizes are bytes; ``None`` means 'let thinpool size it'."""

    devices: tuple[str, ...] = ()
    vg: str = DEFAULT_VG
    pool: str = DEFAULT_POOL
    engine: str = NO_ENGINE
    extent_size: int = sizing.DEFAULT_EXTENT_SIZE
    chunk_size: int | None = None
    metadata_size: int | None = None
    data_size: int | Percent | None = None
    headroom: int | Percent | None = None
    max_pool_size: int | None = None
    workload: sizing.Workload = field(default_factory=sizing.Workload)
    autoextend: sizing.Autoextend = field(default_factory=sizing.Autoextend)
    zero: bool = False
    wipe: bool = False
    engine_options: EngineOptions = field(default_factory=EngineOptions)

    @property
    def profile_name(self) -> str:
        return f"thinpool-{self.vg}-{self.pool}"

    def validate(self) -> None:
        validate_lvm_name(self.vg, what="volume group")
        validate_lvm_name(self.pool, what="pool")
        if len(set(self.devices)) != len(self.devices):
            raise SpecError("a device is listed twice", fix="name each device once")
        self._validate_extent_size()
        self.autoextend.validate()
        self.engine_options.validate()
        if self.workload.max_thin_devices < 1:
            raise SpecError("--max-thin-devices must be at least 1", fix="count image layers plus containers")
        if self.workload.thin_device_size < MiB:
            raise SpecError("--thin-device-size must be at least 1 MiB", fix="Docker's dm.basesize is 10GiB")
        if self.chunk_size is not None:
            sizing.validate_chunk(self.chunk_size)

    def _validate_extent_size(self) -> None:
        size = self.extent_size
        if size < MiB or size & (size - 1) or size > 64 * 1024 * MiB:
            raise SpecError(
                f"extent size {format_size(size)} is not a power of two of at least 1 MiB",
                fix="leave --extent-size at 4m (lvm's default) unless you have a reason",
            )

    def to_dict(self) -> dict[str, Any]:
        def size_or_share(value: int | Percent | None) -> int | str | None:
            return str(value) if isinstance(value, Percent) else value

        return {
            "devices": list(self.devices),
            "vg": self.vg,
            "pool": self.pool,
            "profile": self.profile_name,
            "engine": self.engine,
            "extent_size": self.extent_size,
            "chunk_size": self.chunk_size,
            "metadata_size": self.metadata_size,
            "data_size": size_or_share(self.data_size),
            "headroom": size_or_share(self.headroom),
            "max_pool_size": self.max_pool_size,
            "max_thin_devices": self.workload.max_thin_devices,
            "thin_device_size": self.workload.thin_device_size,
            "autoextend_threshold": self.autoextend.threshold,
            "autoextend_percent": self.autoextend.percent,
            "zero": self.zero,
            "wipe": self.wipe,
            "engine_options": self.engine_options.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoolSpec:
        """The inverse of ``to_dict`` (used for saved plans)."""

        def size_or_share(value: int | str | None, what: str) -> int | Percent | None:
            if isinstance(value, str):
                return parse_percent(value, what=what, allowed=("VG", "FREE"))
            return value

        return cls(
            devices=tuple(data["devices"]),
            vg=data["vg"],
            pool=data["pool"],
            engine=data["engine"],
            extent_size=data["extent_size"],
            chunk_size=data["chunk_size"],
            metadata_size=data["metadata_size"],
            data_size=size_or_share(data["data_size"], "data_size"),
            headroom=size_or_share(data["headroom"], "headroom"),
            max_pool_size=data["max_pool_size"],
            workload=sizing.Workload(data["max_thin_devices"], data["thin_device_size"]),
            autoextend=sizing.Autoextend(data["autoextend_threshold"], data["autoextend_percent"]),
            zero=data["zero"],
            wipe=data["wipe"],
            engine_options=EngineOptions.from_dict(data.get("engine_options", {})),
        )
