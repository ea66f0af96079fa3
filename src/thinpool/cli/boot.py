"""``thinpool activate`` and ``thinpool install-units``: arguments and output (the work is in app.boot)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from thinpool.cli.arguments import changes_the_host, seconds
from thinpool.core.changes import DEFAULT_WAIT
from thinpool.core.envelope import envelope

if TYPE_CHECKING:
    from thinpool.app.context import Context


def _cmd_activate(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import boot

    done = boot.activate(ctx, args.target, args.wait)
    if args.json:
        sys.stdout.write(json.dumps(envelope("thinpool-activation", done.__dict__)) + "\n")
    else:
        for argv in done.commands:
            print("ran: " + " ".join(argv))
        print(f"active: {', '.join(done.volumes) or 'nothing to activate'}")
        for warning in done.warnings:
            print(f"thinpool: warning: {warning}", file=sys.stderr)
    if done.missing:
        print(f"thinpool: error: no device node after {args.wait:g}s: {', '.join(done.missing)}", file=sys.stderr)
        return 1
    return 0


def _cmd_install_units(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import boot

    done = boot.install(ctx, args.thinpool, args.metrics, Path(args.root), args.maintain_every)
    for path in done.written:
        print(f"wrote {path}")
    for path in done.removed:
        print(f"removed {path}: {boot.RETIRED_UNITS[path.name]}")
    if done.enabled:
        print(f"enabled: {', '.join(done.enabled)}")
    else:
        print("systemd is not running here: enable them with systemctl enable on the host that boots them")
    return 0


def add_parsers(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    activate_parser = subcommands.add_parser(
        "activate",
        help="activate thinpool's pools and volumes, switch on monitoring, wait for their devices",
        description="Activates every thin pool and thin volume tagged thinpool.managed (or the VG/POOL "
        "named), enables dmeventd monitoring, and waits until their /dev/mapper nodes exist. "
        "thinpool-activate.service runs this at boot, before docker and containerd.",
    )
    activate_parser.add_argument("target", nargs="*", metavar="VG/LV", help="default: everything thinpool made")
    activate_parser.add_argument(
        "--wait",
        type=seconds,
        default=90,
        metavar="SECONDS",
        help="how long to wait for the device nodes (default: 90)",
    )
    activate_parser.add_argument("--json", action="store_true", help="print the result as JSON")
    activate_parser.set_defaults(handler=_cmd_activate)
    changes_the_host(activate_parser, "activate", DEFAULT_WAIT)
    units = subcommands.add_parser(
        "install-units",
        help="install thinpool-activate.service, the maintain timer (and the metrics writer)",
        description="Writes thinpool-activate.service (oneshot, ordered before docker.service and "
        "containerd.service), thinpool-maintain.service and .timer (thinpool maintain every "
        "--maintain-every) and, with --metrics, thinpool-metrics.service (one process that rewrites a "
        "node_exporter textfile every minute) into /etc/systemd/system, then reloads systemd, enables "
        "them and (re)starts the metrics writer. A thinpool-metrics.timer left by an earlier thinpool "
        "is stopped and removed.",
    )
    units.add_argument(
        "--maintain-every",
        default="5min",
        metavar="SPAN",
        help="how often thinpool maintain runs: 90s, 5min, 1h (default: 5min)",
    )
    units.add_argument("--metrics", action="store_true", help="also the metrics writer service")
    units.add_argument("--root", default="/", help="install under this root instead (an image being built)")
    units.add_argument(
        "--thinpool", metavar="COMMAND", help="the thinpool command the units run (default: the one on PATH)"
    )
    units.set_defaults(handler=_cmd_install_units)
    changes_the_host(units, "install-units", DEFAULT_WAIT)
