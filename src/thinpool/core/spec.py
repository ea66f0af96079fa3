"""Desired state: what the operator asks for, validated, with every default in one place."""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from thinpool.core import names, sizing
from thinpool.core.boot_check import BootCheck
from thinpool.core.layouts import DataLayout, MetadataLayout
from thinpool.core.units import SECTOR, GiB, MiB, Percent, format_size, lvm_size_arg, parse_percent
from thinpool.errors import SpecError

NO_ENGINE = "none"  # the engines themselves are registered in thinpool.engines
DEFAULT_VG = "docker"
DEFAULT_POOL = "thinpool"

# Storage options whose value comes from the pool or from a flag of their own.
OWNED_STORAGE_OPTS = {
    "dm.thinpooldev": "the pool thinpool wires",
    "dm.basesize": "--base-size",
    "dm.min_free_space": "--min-free-space",
}
DOCKER_HOST_SCHEMES = ("unix", "tcp", "fd")  # what dockerd can listen on (ssh:// is a client's)


def normal_path(path: str) -> str:
    """An absolute path as the kernel names it: '/var/lib/docker/' and '/var/lib/x/../docker' are /var/lib/docker."""
    return posixpath.normpath(path) if path.startswith("/") else path


def check_device_path(path: str) -> None:
    """A device must be named by its absolute path, never something lsblk or lvm would read as an option."""
    if not path.startswith("/") or path != posixpath.normpath(path) or not path.isprintable() or " " in path:
        raise SpecError(f"device {path!r} is not an absolute device path", fix="name devices like /dev/sdb")


# What a path may hold where thinpool writes it into a systemd unit and /etc/fstab unquoted: no white space,
# quotes, backslash escapes, systemd's % specifiers or control characters.
_PLAIN_PATH = r"/[A-Za-z0-9._+@:,=~/-]*"
_PLAIN_HOST = r"[A-Za-z]+://[A-Za-z0-9._+@:,=~/\[\]-]*"


def check_plain_path(path: str, option: str) -> None:
    if not re.fullmatch(_PLAIN_PATH, path):
        raise SpecError(
            f"{option} {path!r} holds a character thinpool will not write into a unit file or fstab "
            "(white space, a quote, a backslash, % or a control character)",
            fix="pick a path of letters, digits and . _ + @ : , = ~ - /",
        )


def _check_host(host: str) -> None:
    if not re.fullmatch(_PLAIN_HOST, host):  # before urlsplit, which drops tabs and new lines
        raise SpecError(
            f"--host {host!r} holds a character dockerd's -H does not take in a unit file "
            "(white space, a quote, a backslash, % or a control character)",
            fix="e.g. tcp://127.0.0.1:2375 or unix:///run/docker.sock",
        )
    try:
        parts = urlsplit(host)
        port = parts.port
    except ValueError as error:
        raise SpecError(f"--host {host!r} is not a valid address ({error})", fix="e.g. tcp://127.0.0.1:2375") from None
    if parts.scheme not in DOCKER_HOST_SCHEMES:
        raise SpecError(
            f"--host {host!r}: dockerd cannot listen on {parts.scheme or 'that'}://",
            fix="use unix:///run/docker.sock, tcp://ADDRESS:PORT or fd://",
        )
    if parts.scheme == "tcp" and (not parts.hostname or port == 0):
        raise SpecError(f"--host {host!r} names no address or port", fix="e.g. tcp://127.0.0.1:2375")
    if parts.scheme == "unix" and not parts.path.startswith("/"):
        raise SpecError(f"--host {host!r} names no socket path", fix="e.g. unix:///run/docker.sock")


def _check_san(text: str) -> None:
    """--tls-san: a host name or an IP address."""
    try:
        ipaddress.ip_address(text)
        return
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    if not text or len(text) > 253 or not all(_hostname_label(label) for label in labels):
        raise SpecError(
            f"--tls-san {text!r} is neither a host name nor an IP address",
            fix="e.g. --tls-san build.example.com or --tls-san 10.0.0.5",
        )


def _hostname_label(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(char.isascii() and (char.isalnum() or char in "-*") for char in label)
    )


def _check_dns(address: str) -> None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SpecError(f"--dns {address!r} is not an IP address", fix="e.g. --dns 172.17.0.1") from None


def _check_volume_size(size: int) -> None:
    if size <= 0:
        raise SpecError(
            "--volume-size must be more than 0", fix="leave it out for the pool's data size, or e.g. 200GiB"
        )
    if size % SECTOR:
        raise SpecError(
            f"--volume-size {size} bytes is not a whole number of 512-byte sectors",
            fix=f"e.g. {lvm_size_arg(size - size % SECTOR + SECTOR)} (lvm rounds up to whole extents anyway)",
        )


@dataclass(frozen=True)
class Encryption:
    """LUKS2 under each new PV (core.crypt), opened with ``key_file`` at apply and at every boot; with ``tpm2``,
    opened at boot by the TPM instead, ``key_file`` then being the recovery key."""

    key_file: str
    tpm2: bool = False

    def validate(self) -> None:
        if not self.key_file.startswith("/"):
            raise SpecError(
                f"--key-file {self.key_file!r} is not an absolute path", fix="name it like /root/docker.key"
            )
        check_plain_path(self.key_file, "--key-file")  # written into crypttab unquoted
        if self.key_file != posixpath.normpath(self.key_file) or self.key_file.endswith("/"):
            raise SpecError(f"--key-file {self.key_file!r} is not a normal file path", fix="name it like /etc/x.key")


@dataclass(frozen=True)
class EngineOptions:
    """How the container engine is wired to the pool (ignored with engine 'none')."""

    base_size: int = 10 * GiB  # dm.basesize / base_image_size: each image or container's virtual size
    min_free_space: int = 10  # dm.min_free_space, percent of the pool Docker keeps free
    volume_name: str = ""  # the thin volume an engine keeps its store on ("": the engine's own name)
    volume_size: int | None = None  # its virtual size (default: the pool's data size)
    data_root: str = "/var/lib/docker"
    storage_opts: tuple[str, ...] = ()  # extra dm.* options for docker-devicemapper, KEY=VALUE
    hosts: tuple[str, ...] = ()  # Docker API sockets, e.g. unix:///run/docker.sock
    dns: tuple[str, ...] = ()
    dns_cache: bool = False  # dnsmasq caches DNS for the containers, on the Docker bridge's address
    tls_cacert: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_generate: bool = False  # thinpool makes a CA, the server's certificate and a client bundle
    tls_sans: tuple[str, ...] = ()  # more names or addresses for the server's certificate
    tls_renew: bool = False  # make new server and client certificates now
    insecure_tcp: bool = False
    force: bool = False  # replace another storage driver or pool named in the engine's config
    follow_links: bool = False  # a config file that is a symbolic link: write its target (else refused)

    @property
    def tls_files(self) -> bool:
        return bool(self.tls_cacert and self.tls_cert and self.tls_key)

    @property
    def tls(self) -> bool:
        return self.tls_files or self.tls_generate

    def validate(self) -> None:
        if self.volume_name:
            names.check_lv_name(self.volume_name, what="thin volume")
        if self.volume_size is not None:
            _check_volume_size(self.volume_size)
        if self.base_size < MiB:
            raise SpecError("--base-size must be at least 1 MiB", fix="Docker's default is 10GiB")
        if not 0 <= self.min_free_space <= 50:
            raise SpecError("--min-free-space must be a percent in 0..50", fix="Docker's default is 10")
        root = normal_path(self.data_root)
        if not root.startswith("/") or root in ("/", "/var", "/var/lib"):
            raise SpecError(
                f"--data-root {self.data_root!r} is not a dedicated absolute path", fix="e.g. /var/lib/docker"
            )
        if any(char.isspace() for char in self.data_root):
            raise SpecError(f"--data-root {self.data_root!r} contains white space", fix="pick a path without spaces")
        check_plain_path(self.data_root, "--data-root")
        if root != self.data_root:
            raise SpecError(f"--data-root {self.data_root!r} is not in its plain form", fix=f"write it as {root}")
        self._check_storage_opts()
        for host in self.hosts:
            _check_host(host)
        for address in self.dns:
            _check_dns(address)
        if self.dns and self.dns_cache:
            raise SpecError(
                "--dns-cache sets daemon.json's dns to the bridge address, where the cache answers",
                fix="give either --dns-cache or --dns",
            )
        given = any((self.tls_cacert, self.tls_cert, self.tls_key))
        if given and not self.tls_files:
            raise SpecError("TLS needs all of --tlscacert, --tlscert and --tlskey", fix="give the three files")
        if given and self.tls_generate:
            raise SpecError(
                "--tls-generate makes the certificates that --tlscacert/--tlscert/--tlskey name",
                fix="give either --tls-generate or the three files",
            )
        if (self.tls_sans or self.tls_renew) and not self.tls_generate:
            raise SpecError(
                "--tls-san and --tls-renew are for the certificates thinpool makes", fix="add --tls-generate"
            )
        for name in self.tls_sans:
            _check_san(name)

    def _check_storage_opts(self) -> None:
        keys = []
        for option in self.storage_opts:
            key = option.split("=", 1)[0].strip()
            if "=" not in option or not option.startswith("dm.") or not key[3:]:
                raise SpecError(f"--storage-opt {option!r} is not dm.KEY=VALUE", fix="e.g. dm.blkdiscard=false")
            if key in OWNED_STORAGE_OPTS:
                raise SpecError(
                    f"--storage-opt {key} is set by thinpool ({OWNED_STORAGE_OPTS[key]})",
                    fix=f"drop it; use {OWNED_STORAGE_OPTS[key]}"
                    if key != "dm.thinpooldev"
                    else "drop it; --vg and --pool choose the pool",
                )
            keys.append(key)
        if len(set(keys)) != len(keys):
            raise SpecError("--storage-opt names the same key twice", fix="give each dm.KEY once")

    def to_dict(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value for name, value in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineOptions:
        values: dict[str, Any] = {}
        for name, default in cls().__dict__.items():
            value = data.get(name, default)
            if isinstance(default, tuple):
                if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                    raise TypeError(f"engine_options.{name} is not a list of strings")
                value = tuple(value)
            elif name == "volume_size":
                value = _field({name: value}, name, (int, type(None)))
            elif type(value) is not type(default):
                raise TypeError(f"engine_options.{name} is {type(value).__name__}, not {type(default).__name__}")
            values[name] = value
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
    boot_check: BootCheck = BootCheck.FAST  # the check lvm runs at activation (core.boot_check)
    encryption: Encryption | None = None  # --encrypt: LUKS2 under each new PV
    layout: DataLayout | None = None  # the data's (None: linear)
    metadata_layout: MetadataLayout | None = None  # None: raid1 from two disks on (core.layouts)
    stripes: int | None = None  # striped data: over this many disks (None: all)
    stripe_size: int | None = None

    @property
    def profile_name(self) -> str:
        return f"thinpool-{self.vg}-{self.pool}"

    def validate(self) -> None:
        names.check_pool(self.vg, self.pool)
        if len(set(self.devices)) != len(self.devices):
            raise SpecError("a device is listed twice", fix="name each device once")
        self._validate_extent_size()
        self.autoextend.validate()
        self.engine_options.validate()
        if self.encryption is not None:
            self.encryption.validate()
        if self.workload.max_thin_devices < 1:
            raise SpecError("--max-thin-devices must be at least 1", fix="count image layers plus containers")
        if self.workload.thin_device_size < MiB:
            raise SpecError("--thin-device-size must be at least 1 MiB", fix="Docker's dm.basesize is 10GiB")
        if self.chunk_size is not None:
            sizing.validate_chunk(self.chunk_size)
        if self.stripes is not None and self.stripes < 2:
            raise SpecError(f"--stripes {self.stripes} is not a stripe set", fix="stripe over 2 disks or more")

    def check_devices(self) -> None:
        """Before anything reads them: every device an absolute path."""
        for path in self.devices:
            check_device_path(path)

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
            "boot_check": str(self.boot_check),
            "encryption": {"key_file": self.encryption.key_file, "tpm2": self.encryption.tpm2}
            if self.encryption
            else None,
            "layout": self.layout and str(self.layout),
            "metadata_layout": self.metadata_layout and str(self.metadata_layout),
            "stripes": self.stripes,
            "stripe_size": self.stripe_size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoolSpec:
        """The inverse of ``to_dict`` (used for saved plans); a wrongly typed field raises TypeError naming it."""

        def size_or_share(key: str) -> int | Percent | None:
            value = _field(data, key, (int, str, type(None)))
            return parse_percent(value, what=key, allowed=("VG", "FREE")) if isinstance(value, str) else value

        devices = _field(data, "devices", (list,))
        if not all(isinstance(path, str) for path in devices):
            raise TypeError("devices is not a list of strings")
        return cls(
            devices=tuple(devices),
            vg=_field(data, "vg", (str,)),
            pool=_field(data, "pool", (str,)),
            engine=_field(data, "engine", (str,)),
            extent_size=_field(data, "extent_size", (int,)),
            chunk_size=_field(data, "chunk_size", (int, type(None))),
            metadata_size=_field(data, "metadata_size", (int, type(None))),
            data_size=size_or_share("data_size"),
            headroom=size_or_share("headroom"),
            max_pool_size=_field(data, "max_pool_size", (int, type(None))),
            workload=sizing.Workload(
                _field(data, "max_thin_devices", (int,)), _field(data, "thin_device_size", (int,))
            ),
            autoextend=sizing.Autoextend(
                _field(data, "autoextend_threshold", (int,)), _field(data, "autoextend_percent", (int,))
            ),
            zero=_field(data, "zero", (bool,)),
            wipe=_field(data, "wipe", (bool,)),
            engine_options=EngineOptions.from_dict(_field(data, "engine_options", (dict,))),
            boot_check=BootCheck(data.get("boot_check", BootCheck.FAST)),  # plans saved before it: the default
            encryption=_encryption(data.get("encryption")),
            # plans saved before layouts: the defaults
            layout=DataLayout(data["layout"]) if data.get("layout") else None,
            metadata_layout=MetadataLayout(data["metadata_layout"]) if data.get("metadata_layout") else None,
            stripes=_field({"stripes": data.get("stripes")}, "stripes", (int, type(None))),
            stripe_size=_field({"stripe_size": data.get("stripe_size")}, "stripe_size", (int, type(None))),
        )


def _encryption(data: Any) -> Encryption | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("key_file"), str):
        raise TypeError("encryption is not {'key_file': PATH, 'tpm2': BOOL}")
    tpm2 = data.get("tpm2", False)  # plans saved before it: no TPM
    if not isinstance(tpm2, bool):
        raise TypeError("encryption's tpm2 is not a boolean")
    return Encryption(data["key_file"], tpm2)


def _field(data: dict[str, Any], key: str, types: tuple[type, ...]) -> Any:
    """``data[key]`` when it has one of ``types`` (a bool is not an int here)."""
    value = data[key]
    if type(value) not in types:
        names = " or ".join("null" if kind is type(None) else kind.__name__ for kind in types)
        raise TypeError(f"{key} is {type(value).__name__}, not {names}")
    return value


def _option_defaults() -> dict[str, str | int]:
    """Every option's default as the CLI and the Ansible module take it, by option name (sizes as lvm
    writes them: ``4m``, ``10g``), read from the spec's own defaults so that it is written once."""
    spec, options = PoolSpec(), EngineOptions()
    return {
        "vg": spec.vg,
        "pool": spec.pool,
        "engine": spec.engine,
        "extent_size": lvm_size_arg(spec.extent_size),
        "max_thin_devices": spec.workload.max_thin_devices,
        "thin_device_size": lvm_size_arg(spec.workload.thin_device_size),
        "autoextend_threshold": spec.autoextend.threshold,
        "autoextend_percent": spec.autoextend.percent,
        "boot_check": str(spec.boot_check),
        "base_size": lvm_size_arg(options.base_size),
        "min_free_space": options.min_free_space,
        "volume_name": options.volume_name,
        "data_root": options.data_root,
    }


OPTION_DEFAULTS = _option_defaults()
