"""The pool-spec command-line options, shared by plan, apply and rehearse, and their inverse.

``spec_to_argv`` turns a PoolSpec back into flags, so a rehearsal can hand the guest the
very spec the operator typed (a unit test checks the round trip).
"""

from __future__ import annotations

import argparse

from thinpool.core import crypt, sizing
from thinpool.core.boot_check import BootCheck
from thinpool.core.layouts import DataLayout, MetadataLayout
from thinpool.core.spec import NO_ENGINE, Encryption, EngineOptions, PoolSpec, normal_path
from thinpool.core.spec import OPTION_DEFAULTS as DEFAULTS
from thinpool.core.units import Percent, parse_size, parse_size_or_percent
from thinpool.engines import CHOICES as ENGINE_CHOICES
from thinpool.errors import SpecError


def add_spec_options(parser: argparse.ArgumentParser, *, devices: bool = True, engine: bool = True) -> None:
    where = parser.add_argument_group("where the pool goes")
    if devices:
        where.add_argument("devices", nargs="*", metavar="DEVICE", help="whole disks or partitions for the VG")
    where.add_argument(
        "--vg",
        default=DEFAULTS["vg"],
        help="volume group (default: %(default)s); an existing VG is used, and extended with any DEVICE given",
    )
    where.add_argument("--pool", default=DEFAULTS["pool"], help="thin pool LV name (default: %(default)s)")
    where.add_argument(
        "--extent-size",
        default=DEFAULTS["extent_size"],
        metavar="SIZE",
        help="extent size of a new VG (default: %(default)s, lvm's default)",
    )
    if engine:
        where.add_argument(
            "--engine",
            default=DEFAULTS["engine"],
            choices=ENGINE_CHOICES,
            help="container engine the pool is for (default: %(default)s)",
        )
    else:
        parser.set_defaults(engine=NO_ENGINE)
    where.add_argument(
        "--wipe",
        action="store_true",
        help="erase filesystem/RAID/partition-table signatures on DEVICEs (destroys their data)",
    )
    where.add_argument(
        "--encrypt",
        action="store_true",
        help="LUKS2 under each new PV, opened with a key file now and at every boot (/etc/crypttab)",
    )
    where.add_argument(
        "--key-file",
        metavar="PATH",
        help="with --encrypt: the key (default: /etc/thinpool/keys/VG.key, made from the kernel's random source, "
        "mode 0400, when missing; never printed). Keep a copy off the host: without it the data is lost",
    )
    where.add_argument(
        "--tpm2",
        action="store_true",
        help="with --encrypt: this machine's TPM2 opens the disks at boot (systemd-cryptenroll, sealed to PCR 7, "
        "the Secure Boot state); the key file becomes the recovery key, read only by apply and grow: keep it off "
        "the host",
    )

    add_layout_options(parser.add_argument_group("layout over several disks (each part pinned to its disks)"))

    size = parser.add_argument_group("sizing (thinpool sizes everything you leave out)")
    size.add_argument(
        "--data-size",
        metavar="SIZE|N%VG|N%FREE",
        help="pool data (default: all that fits after metadata, spare and autoextend room)",
    )
    size.add_argument(
        "--chunk-size",
        metavar="SIZE",
        help="data chunk, a multiple of 64k in 64k..1g "
        "(default, chosen by measurement: 128k with an engine, doubled on small disks until "
        "metadata takes at most 2%%; 512k without; raised when the pool could not address its "
        "grown size)",
    )
    size.add_argument(
        "--metadata-size",
        metavar="SIZE",
        help="pool metadata (default: the largest of lvm2's "
        "64 B/chunk estimate, the workload model and 2 MiB; at most 15.81 GiB)",
    )
    size.add_argument(
        "--max-thin-devices",
        type=int,
        default=DEFAULTS["max_thin_devices"],
        metavar="N",
        help="image layers + containers to hold metadata for (default: %(default)s)",
    )
    size.add_argument(
        "--thin-device-size",
        default=DEFAULTS["thin_device_size"],
        metavar="SIZE",
        help="virtual size of one thin device, like Docker's dm.basesize (default: %(default)s)",
    )
    size.add_argument(
        "--max-pool-size",
        metavar="SIZE",
        help="the most the pool may ever grow to (default: the whole VG); chunk and metadata are sized for it",
    )
    size.add_argument(
        "--headroom", metavar="SIZE|N%VG", help="free space to keep in the VG; never less than one autoextend step"
    )
    size.add_argument("--zero", action="store_true", help="zero newly provisioned chunks (slower; default: off)")

    add_autoextend_options(parser.add_argument_group("autoextend (an lvm profile on the pool; dmeventd acts on it)"))
    boot = parser.add_argument_group("the metadata check at each activation, boots included (lvm runs thin_check)")
    boot.add_argument(
        "--boot-check",
        choices=[str(check) for check in BootCheck],
        default=DEFAULTS["boot_check"],
        help="fast: thin_check --skip-mappings, set host-wide in /etc/lvm/lvmlocal.conf (a full check has held "
        "boots for minutes), the full check weekly in 'thinpool maintain'; full: leave lvm's check as it is, and "
        "take thinpool's setting out (default: %(default)s)",
    )


def add_layout_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--layout",
        choices=[str(layout) for layout in DataLayout],
        help="the data: linear (all the disks' space, the default), striped (across them in turn, for their "
        "bandwidth together; one disk's death loses the pool) or raid1 (two copies on two disks; half the space)",
    )
    group.add_argument(
        "--metadata-layout",
        choices=[str(layout) for layout in MetadataLayout],
        help="the metadata, whose loss loses every thin volume (default: raid1 from two disks on, costing two "
        "copies of ~0.1%% of the pool; linear on one)",
    )
    group.add_argument("--stripes", type=int, metavar="N", help="striped data: over N disks (default: all)")
    group.add_argument(
        "--stripe-size", metavar="SIZE", help="striped data: bytes per disk in turn (default: 64k, lvm's)"
    )


def add_autoextend_options(group: argparse._ArgumentGroup, when: str = "") -> None:
    """--autoextend-threshold and --autoextend-percent (``when``: what they need, said before each help)."""
    group.add_argument(
        "--autoextend-threshold",
        type=int,
        default=DEFAULTS["autoextend_threshold"],
        metavar="PERCENT",
        help=f"{when}grow when data or metadata is this full: 50-99, or 100 to disable (default: %(default)s)",
    )
    group.add_argument(
        "--autoextend-percent",
        type=int,
        default=DEFAULTS["autoextend_percent"],
        metavar="PERCENT",
        help=f"{when}grow by this share of the current size (default: %(default)s)",
    )


def autoextend_from_args(args: argparse.Namespace) -> sizing.Autoextend:
    return sizing.Autoextend(args.autoextend_threshold, args.autoextend_percent)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    engine = parser.add_argument_group("engine wiring (with --engine; see 'thinpool engine --help')")
    engine.add_argument(
        "--base-size",
        default=DEFAULTS["base_size"],
        metavar="SIZE",
        help="virtual size of each image/container device: dm.basesize or containerd's base_image_size "
        "(default: %(default)s)",
    )
    engine.add_argument(
        "--min-free-space",
        type=int,
        default=DEFAULTS["min_free_space"],
        metavar="PERCENT",
        help="docker-devicemapper: dm.min_free_space (default: %(default)s)",
    )
    engine.add_argument(
        "--storage-opt",
        action="append",
        default=[],
        metavar="dm.KEY=VALUE",
        help="docker-devicemapper: one more storage option (repeatable)",
    )
    engine.add_argument(
        "--volume-name",
        default=DEFAULTS["volume_name"],
        help="the thin volume of an engine whose store is on one (default: docker-data for Docker, "
        "containerd-data for containerd)",
    )
    engine.add_argument(
        "--volume-size", metavar="SIZE", help="docker-overlay2-thin: its virtual size (default: the pool's data size)"
    )
    engine.add_argument(
        "--data-root",
        default=DEFAULTS["data_root"],
        help="docker-overlay2-thin: where it is mounted (default: %(default)s)",
    )
    engine.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="SOCKET",
        help="Docker API socket for daemon.json 'hosts', e.g. unix:///run/docker.sock or "
        "tcp://10.0.0.5:2376 (repeatable; TCP beyond loopback needs TLS)",
    )
    engine.add_argument(
        "--dns", action="append", default=[], metavar="ADDRESS", help="DNS server for containers (repeatable)"
    )
    engine.add_argument(
        "--dns-cache",
        action="store_true",
        help="a dnsmasq cache on the Docker bridge's address (daemon.json bip, or 172.17.0.1) "
        "as the containers' DNS server, forwarding to the host's resolvers",
    )
    engine.add_argument("--tlscacert", default="", metavar="FILE", help="CA that client certificates must chain to")
    engine.add_argument("--tlscert", default="", metavar="FILE", help="the daemon's TLS certificate")
    engine.add_argument("--tlskey", default="", metavar="FILE", help="the daemon's TLS key")
    engine.add_argument(
        "--tls-generate",
        action="store_true",
        help="make a CA, dockerd's certificate and a client bundle under /etc/thinpool/tls "
        "and require client certificates (kept across runs, renewed 30 days ahead)",
    )
    engine.add_argument(
        "--tls-san",
        action="append",
        default=[],
        metavar="NAME",
        help="with --tls-generate: one more name or address in dockerd's certificate (the "
        "host's names and addresses, localhost and loopback are always in it; repeatable)",
    )
    engine.add_argument(
        "--tls-renew", action="store_true", help="with --tls-generate: make new server and client certificates now"
    )
    engine.add_argument(
        "--insecure-tcp",
        action="store_true",
        help="allow a TCP API without TLS: it grants root on this host to the network",
    )
    engine.add_argument(
        "--force",
        action="store_true",
        help="replace another storage driver or pool named in the engine's config (a timestamped backup is kept)",
    )
    engine.add_argument(
        "--follow-links",
        action="store_true",
        help="a config file thinpool writes that is a symbolic link: write the file it points to (the plan "
        "names it; the link is kept). Without it such a file is refused",
    )


def engine_options_from_args(args: argparse.Namespace) -> EngineOptions:
    if not hasattr(args, "base_size"):
        return EngineOptions()
    return EngineOptions(
        base_size=parse_size(args.base_size, what="--base-size"),
        min_free_space=args.min_free_space,
        volume_name=args.volume_name,
        volume_size=_optional_size(args.volume_size, "--volume-size"),
        data_root=normal_path(args.data_root),
        storage_opts=tuple(args.storage_opt),
        hosts=tuple(args.host),
        dns=tuple(args.dns),
        dns_cache=args.dns_cache,
        tls_cacert=args.tlscacert,
        tls_cert=args.tlscert,
        tls_key=args.tlskey,
        tls_generate=args.tls_generate,
        tls_sans=tuple(args.tls_san),
        tls_renew=args.tls_renew,
        insecure_tcp=args.insecure_tcp,
        force=args.force,
        follow_links=args.follow_links,
    )


def engine_options_to_argv(options: EngineOptions) -> list[str]:
    argv = ["--base-size", _bytes(options.base_size), "--min-free-space", str(options.min_free_space)]
    argv += ["--volume-name", options.volume_name] if options.volume_name else []
    argv += ["--data-root", options.data_root]
    if options.volume_size is not None:
        argv += ["--volume-size", _bytes(options.volume_size)]
    for flag, values in (
        ("--storage-opt", options.storage_opts),
        ("--host", options.hosts),
        ("--dns", options.dns),
        ("--tls-san", options.tls_sans),
    ):
        for value in values:
            argv += [flag, value]
    for flag, text in (
        ("--tlscacert", options.tls_cacert),
        ("--tlscert", options.tls_cert),
        ("--tlskey", options.tls_key),
    ):
        if text:
            argv += [flag, text]
    argv += ["--dns-cache"] if options.dns_cache else []
    argv += ["--tls-generate"] if options.tls_generate else []
    argv += ["--tls-renew"] if options.tls_renew else []
    argv += ["--insecure-tcp"] if options.insecure_tcp else []
    argv += ["--force"] if options.force else []
    argv += ["--follow-links"] if options.follow_links else []
    return argv


def _optional_size(value: str | None, what: str) -> int | None:
    return parse_size(value, what=what) if value is not None else None


def _optional_share(value: str | None, what: str, allowed: tuple[str, ...]) -> int | Percent | None:
    return parse_size_or_percent(value, what=what, allowed=allowed) if value is not None else None


def spec_from_args(args: argparse.Namespace) -> PoolSpec:
    return PoolSpec(
        devices=tuple(getattr(args, "devices", ())),
        vg=args.vg,
        pool=args.pool,
        engine=args.engine,
        extent_size=parse_size(args.extent_size, what="--extent-size"),
        chunk_size=_optional_size(args.chunk_size, "--chunk-size"),
        metadata_size=_optional_size(args.metadata_size, "--metadata-size"),
        data_size=_optional_share(args.data_size, "--data-size", ("VG", "FREE")),
        headroom=_optional_share(args.headroom, "--headroom", ("VG",)),
        max_pool_size=_optional_size(args.max_pool_size, "--max-pool-size"),
        workload=sizing.Workload(
            max_thin_devices=args.max_thin_devices,
            thin_device_size=parse_size(args.thin_device_size, what="--thin-device-size"),
        ),
        autoextend=autoextend_from_args(args),
        zero=args.zero,
        wipe=args.wipe,
        engine_options=engine_options_from_args(args),
        boot_check=BootCheck(args.boot_check),
        encryption=_encryption_from_args(args),
        layout=DataLayout(args.layout) if getattr(args, "layout", None) else None,
        metadata_layout=MetadataLayout(args.metadata_layout) if getattr(args, "metadata_layout", None) else None,
        stripes=getattr(args, "stripes", None),
        stripe_size=_optional_size(getattr(args, "stripe_size", None), "--stripe-size"),
    )


def _encryption_from_args(args: argparse.Namespace) -> Encryption | None:
    key_file = getattr(args, "key_file", None)
    tpm2 = getattr(args, "tpm2", False)
    if not getattr(args, "encrypt", False):
        if key_file is not None:
            raise SpecError("--key-file is the key of --encrypt", fix="add --encrypt, or leave --key-file out")
        if tpm2:
            raise SpecError("--tpm2 opens what --encrypt formats", fix="add --encrypt, or leave --tpm2 out")
        return None
    return Encryption(normal_path(key_file) if key_file else crypt.default_key_file(args.vg), tpm2=tpm2)


def _bytes(size: int) -> str:
    return f"{size}b"


def spec_to_argv(spec: PoolSpec) -> list[str]:
    """Flags that make ``spec_from_args`` build ``spec`` again (devices last)."""
    argv = ["--vg", spec.vg, "--pool", spec.pool, "--engine", spec.engine, "--extent-size", _bytes(spec.extent_size)]
    for flag, value in (
        ("--chunk-size", spec.chunk_size),
        ("--metadata-size", spec.metadata_size),
        ("--max-pool-size", spec.max_pool_size),
        ("--data-size", spec.data_size),
        ("--headroom", spec.headroom),
    ):
        if value is not None:
            argv += [flag, str(value) if isinstance(value, Percent) else _bytes(value)]
    argv += [
        "--max-thin-devices",
        str(spec.workload.max_thin_devices),
        "--thin-device-size",
        _bytes(spec.workload.thin_device_size),
        "--autoextend-threshold",
        str(spec.autoextend.threshold),
        "--autoextend-percent",
        str(spec.autoextend.percent),
    ]
    argv += ["--zero"] if spec.zero else []
    argv += ["--wipe"] if spec.wipe else []
    argv += ["--boot-check", str(spec.boot_check)]
    argv += ["--encrypt", "--key-file", spec.encryption.key_file] if spec.encryption else []
    argv += ["--tpm2"] if spec.encryption and spec.encryption.tpm2 else []
    argv += ["--layout", str(spec.layout)] if spec.layout else []
    argv += ["--metadata-layout", str(spec.metadata_layout)] if spec.metadata_layout else []
    argv += ["--stripes", str(spec.stripes)] if spec.stripes is not None else []
    argv += ["--stripe-size", _bytes(spec.stripe_size)] if spec.stripe_size is not None else []
    argv += engine_options_to_argv(spec.engine_options)
    return [*argv, *spec.devices]
