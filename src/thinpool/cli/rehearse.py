"""``thinpool rehearse``: its arguments; the rehearsal itself is thinpool.rehearse.run."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from thinpool.cli.options import add_spec_options, spec_from_args, spec_to_argv
from thinpool.core.units import parse_size
from thinpool.errors import ThinpoolError

if TYPE_CHECKING:
    from thinpool.app.context import Context


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "rehearse",
        help="apply a plan to same-sized sparse disks in a throwaway VM (real lvm, nothing here touched)",
        description="Plan for blank disks of the given sizes, boot a throwaway qemu VM with real "
        "device-mapper and sparse disks of those sizes, run 'thinpool apply' on the saved plan inside, "
        "run it again (it must change nothing), and show lvm's report. Disk files are deleted "
        "afterwards; their real writes are capped by --write-budget.",
        epilog="examples:\n  thinpool rehearse --disk-size 744GiB\n"
        "  thinpool rehearse --disk-size 100GiB --disk-size 100GiB --chunk-size 1m\n"
        "  thinpool rehearse --install-deps --disk-size 20GiB --engine docker-overlay2-thin\n"
        "  thinpool rehearse /dev/sdb --engine containerd-devmapper   (sdb's size; this host's config.toml)\n"
        "  thinpool rehearse --release debian-13 --disk-size 20GiB --engine docker-overlay2-thin\n"
        "      (on Debian 13's own kernel, lvm2, thin-provisioning-tools, engines and python3, whatever this host\n"
        "       runs; its root is built once with mmdebstrap into /var/cache/thinpool/guests)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_spec_options(parser)
    vm = parser.add_argument_group("the VM")
    vm.add_argument(
        "--disk-size",
        action="append",
        default=[],
        metavar="SIZE",
        help="a sparse disk of SIZE (repeat for several; they are /dev/vda, /dev/vdb ...); or name DEVICEs "
        "instead: same-sized sparse disks, and the VM keeps this host's engine files",
    )
    vm.add_argument(
        "--install-deps",
        action="store_true",
        help="apt-get install qemu, lvm2, busybox ... if missing (needs root and apt)",
    )
    vm.add_argument(
        "--release",
        choices=sorted(_releases()),
        help="rehearse on a pinned Debian release's own root instead of this host's programs: "
        + "; ".join(f"{name}: {text}" for name, text in sorted(_releases().items())),
    )
    vm.add_argument(
        "--kernel",
        metavar="VMLINUZ",
        help="boot this kernel instead of Debian's package "
        "(e.g. the host's /boot/vmlinuz-VERSION; needs --modules-root)",
    )
    vm.add_argument(
        "--modules-root",
        metavar="DIR",
        default="/",
        help="folder holding lib/modules/VERSION for --kernel (default: /)",
    )
    vm.add_argument(
        "--write-budget",
        default="4GiB",
        metavar="SIZE",
        help="stop the VM if its disk files really write more than this (default: 4GiB)",
    )
    vm.add_argument(
        "--timeout", type=int, default=900, metavar="SECONDS", help="hard limit for the whole VM (default: 900)"
    )
    parser.add_argument("--json", action="store_true", help="print the whole rehearsal as JSON")
    parser.set_defaults(handler=_cmd_rehearse)


def _releases() -> dict[str, str]:
    from thinpool.rehearse.guest import RELEASES

    return {name: release.description.partition(": ")[2] for name, release in RELEASES.items()}


def _cmd_rehearse(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.rehearse.run import Rehearsal, rehearse

    spec = spec_from_args(args)
    if bool(args.devices) == bool(args.disk_size):
        raise ThinpoolError(
            "rehearse takes either DEVICEs (their sizes and this host's engine files are replicated) or --disk-size",
            fix="e.g. thinpool rehearse --disk-size 744GiB, or thinpool rehearse /dev/sdb",
        )
    if args.release and (args.devices or args.kernel):
        raise ThinpoolError(
            "--release boots that release's own kernel and files: it rehearses --disk-size plans, not this host's "
            "DEVICEs (whose engine files it would not see) or another --kernel",
            fix=f"thinpool rehearse --release {args.release} --disk-size SIZE",
        )
    request = Rehearsal(
        spec=replace(spec, devices=()),
        host_devices=tuple(args.devices),
        disk_sizes=tuple(parse_size(text, what="--disk-size") for text in args.disk_size),
        spec_argv=tuple(spec_to_argv(replace(spec, devices=()))),
        install_deps=args.install_deps,
        kernel=Path(args.kernel) if args.kernel else None,
        modules_root=Path(args.modules_root),
        timeout=args.timeout,
        release=args.release,
        write_budget=parse_size(args.write_budget, what="--write-budget"),
    )

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    return rehearse(ctx, request, say)
