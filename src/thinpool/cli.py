"""Command line: parse arguments, call the library, format results. Nothing else lives here.

Exit codes: 0 success (with --detailed-exitcode: nothing to do), 1 error or refusal,
2 (only with --detailed-exitcode) the plan has changes, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from thinpool import __version__
from thinpool.errors import ThinpoolError

if TYPE_CHECKING:
    from thinpool.model import Observed
    from thinpool.spec import PoolSpec

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0    success; with --detailed-exitcode: nothing to change
  1    error or refusal (the message names the problem and the fix)
  2    with --detailed-exitcode: the plan has changes
  130  interrupted"""

SIZE_HELP = "sizes take binary units: 744GiB, 512KiB, 100G, 4m (k/m/g/t are powers of 1024)"


def _add_spec_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where the pool goes")
    where.add_argument("devices", nargs="*", metavar="DEVICE", help="whole disks to build the VG from")
    where.add_argument("--vg", default="docker", help="volume group name (default: docker); "
                       "an existing VG is used and extended with any DEVICE given")  # fmt: skip
    where.add_argument("--pool", default="thinpool", help="thin pool LV name (default: thinpool)")
    where.add_argument("--extent-size", default="4m", metavar="SIZE",
                       help="extent size of a new VG (default: 4m, lvm's default)")  # fmt: skip
    where.add_argument("--engine", default="none",
                       choices=("none", "docker-devicemapper", "containerd-devmapper", "docker-overlay2-thin"),
                       help="container engine the pool is for (default: none)")  # fmt: skip

    size = parser.add_argument_group("sizing (thinpool sizes everything you leave out)")
    size.add_argument(
        "--data-size",
        metavar="SIZE|N%VG|N%FREE",
        help="pool data size (default: all that fits after metadata, spare and autoextend room)",
    )
    size.add_argument("--chunk-size", metavar="SIZE",
                      help="data chunk: a multiple of 64k in 64k..1g (default: 512k, raised if the pool "
                      "could not address its grown size)")  # fmt: skip
    size.add_argument("--metadata-size", metavar="SIZE",
                      help="pool metadata (default: the largest of lvm2's 64 B/chunk estimate, the "
                      "workload model and 2 MiB, at most 15.81 GiB)")  # fmt: skip
    size.add_argument(
        "--max-thin-devices",
        type=int,
        default=1000,
        metavar="N",
        help="image layers + containers the pool must hold metadata for (default: 1000)",
    )
    size.add_argument(
        "--thin-device-size",
        default="10GiB",
        metavar="SIZE",
        help="virtual size of one thin device, Docker's dm.basesize (default: 10GiB)",
    )
    size.add_argument("--max-pool-size", metavar="SIZE",
                      help="largest size the pool may ever grow to (default: the whole VG); "
                      "chunk and metadata are sized for it")  # fmt: skip
    size.add_argument(
        "--headroom", metavar="SIZE|N%VG", help="free space to keep in the VG; never less than one autoextend step"
    )
    size.add_argument("--zero", action="store_true", help="zero new chunks (slower; default: off)")

    grow = parser.add_argument_group("autoextend (an lvm profile attached to the pool; dmeventd acts on it)")
    grow.add_argument(
        "--autoextend-threshold",
        type=int,
        default=80,
        metavar="PERCENT",
        help="grow when data or metadata is this full: 50-99, or 100 to disable (default: 80)",
    )
    grow.add_argument(
        "--autoextend-percent",
        type=int,
        default=20,
        metavar="PERCENT",
        help="grow by this share of the current size (default: 20)",
    )


def _spec_from_args(args: argparse.Namespace) -> PoolSpec:
    from thinpool import sizing
    from thinpool.spec import PoolSpec
    from thinpool.units import parse_size, parse_size_or_percent

    def optional_size(value: str | None, what: str) -> int | None:
        return parse_size(value, what=what) if value is not None else None

    return PoolSpec(
        devices=tuple(args.devices),
        vg=args.vg,
        pool=args.pool,
        engine=args.engine,
        extent_size=parse_size(args.extent_size, what="--extent-size"),
        chunk_size=optional_size(args.chunk_size, "--chunk-size"),
        metadata_size=optional_size(args.metadata_size, "--metadata-size"),
        data_size=parse_size_or_percent(args.data_size, what="--data-size", allowed=("VG", "FREE"))
        if args.data_size
        else None,
        headroom=parse_size_or_percent(args.headroom, what="--headroom", allowed=("VG",)) if args.headroom else None,
        max_pool_size=optional_size(args.max_pool_size, "--max-pool-size"),
        workload=sizing.Workload(
            max_thin_devices=args.max_thin_devices,
            thin_device_size=parse_size(args.thin_device_size, what="--thin-device-size"),
        ),
        autoextend=sizing.Autoextend(args.autoextend_threshold, args.autoextend_percent),
        zero=args.zero,
        wipe=getattr(args, "wipe", False),
    )


def _spec_and_observed(args: argparse.Namespace) -> tuple[PoolSpec, Observed]:
    """The spec and what it is planned against: virtual disks, or the real system."""
    from thinpool import inspect
    from thinpool.runner import SystemRunner
    from thinpool.units import parse_size

    spec = _spec_from_args(args)
    if not args.disk_size:
        return spec, inspect.observe(SystemRunner(), spec.devices, profiles=(spec.profile_name,))
    if args.devices:
        raise ThinpoolError(
            "--disk-size plans on virtual disks and cannot be mixed with real devices",
            fix="drop either the DEVICE arguments or --disk-size",
        )
    observed = inspect.virtual(parse_size(text, what="--disk-size") for text in args.disk_size)
    return replace(spec, devices=tuple(observed.devices)), observed


def _cmd_plan(args: argparse.Namespace) -> int:
    from thinpool import planner
    from thinpool.plan import render_text

    spec, observed = _spec_and_observed(args)
    result = planner.plan(spec, observed)
    if args.out:
        _write_atomically(Path(args.out), result.to_json())
    sys.stdout.write(result.to_json() if args.json else render_text(result))
    if args.detailed_exitcode and result.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _cmd_rehearse(args: argparse.Namespace) -> int:
    from thinpool.rehearse.command import rehearse

    return rehearse(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thinpool",
        description="LVM thin-pool storage for container hosts, right the first time.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"thinpool {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    plan = commands.add_parser(
        "plan",
        help="compute a layout in exact extents, touching nothing",
        description="Plan a thin pool for DEVICEs, an existing --vg, or virtual --disk-size disks. "
        "Nothing is changed. " + SIZE_HELP + ".",
        epilog="examples:\n  thinpool plan --disk-size 744GiB\n  thinpool plan /dev/sdb /dev/sdc --vg docker\n"
        "  thinpool plan --vg docker --json --out plan.json\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_spec_options(plan)
    plan.add_argument(
        "--disk-size",
        action="append",
        metavar="SIZE",
        help="plan for a blank virtual disk of SIZE (repeat for several); reads nothing",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON (schema_version 1)")
    plan.add_argument("--out", metavar="FILE", help="also save the plan as JSON, for 'thinpool apply FILE'")
    plan.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when the plan has changes")
    plan.set_defaults(handler=_cmd_plan)

    from thinpool.rehearse.command import add_parser as add_rehearse

    add_rehearse(commands, _add_spec_options)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return handler(args)
    except ThinpoolError as error:
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps({"schema_version": 1, "kind": "thinpool-error", **error.to_dict()}) + "\n")
        print(f"thinpool: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("thinpool: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
