"""``thinpool backup``: arguments and output (the work is in app.backup)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from thinpool.cli.arguments import changes_the_host
from thinpool.core.changes import DEFAULT_WAIT
from thinpool.core.envelope import envelope

if TYPE_CHECKING:
    from thinpool.app.context import Context
    from thinpool.core.backup import Backup

DESCRIPTION = """\
A consistent copy of a thin pool's metadata (thin_dump, compressed) and of lvm's
VG metadata (vgcfgbackup), with the pool's transaction id and thin devices
recorded, in /var/lib/thinpool/backups/VG-POOL/ (mode 0700). The oldest are
removed past --keep.

An active pool is read from a metadata snapshot the kernel holds while
thin_dump runs, so writes go on; an inactive one through lvm's read-only
activation of its metadata LV. thinpool maintain takes one when the metadata
changed (at most every --backup-every) and at least daily.

Metadata is what maps the pool's data: with a backup, a pool whose metadata
is lost can be given its thin volumes back (thinpool repair restores it),
as long as the data written since has not reused their blocks."""


def _line(item: Backup) -> str:
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(item.created))
    lvm = "?" if item.lvm_transaction_id is None else str(item.lvm_transaction_id)
    return (
        f"{item.stem}  {created}  transaction id {item.transaction_id} (lvm {lvm})  "
        f"{len(item.devices)} thin device(s)  {item.method}"
    )


def _cmd_backup(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import backup as use_case
    from thinpool.cli.watch import split_target

    vg, pool = split_target(args.target)
    where = use_case.folder_for(ctx, vg, pool, args.to)
    if args.list:
        found = use_case.backups(ctx, vg, pool, args.to)
        if args.json:
            listed = {"folder": str(where), "backups": [item.to_dict() for item in found]}
            report = envelope("thinpool-backups", listed)
            sys.stdout.write(json.dumps(report, indent=1) + "\n")
        else:
            print("\n".join(_line(item) for item in found) if found else f"no backup of {vg}/{pool} in {where}")
        return 0
    made = use_case.take(ctx, vg, pool, into=args.to, keep=args.keep)
    if args.json:
        sys.stdout.write(json.dumps({**made.to_dict(), "folder": str(where)}, indent=1) + "\n")
    else:
        print(f"backed up {vg}/{pool} into {where}:\n  {_line(made)}")
    return 0


def add_parsers(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from thinpool.core.backup import DEFAULT_KEEP

    parser = subcommands.add_parser(
        "backup",
        help="back up a pool's metadata (and lvm's), keeping the newest N",
        description=DESCRIPTION,
        epilog="examples:\n  thinpool backup\n  thinpool backup docker/thinpool --keep 48\n"
        "  thinpool backup --list --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", nargs="?", default="docker/thinpool", metavar="VG/POOL")
    parser.add_argument(
        "--to",
        metavar="DIR",
        help="keep the backups in DIR from now on: status, doctor, maintain and repair look there too "
        "(default: /var/lib/thinpool/backups/VG-POOL)",
    )
    parser.add_argument(
        "--keep",
        type=int,
        default=DEFAULT_KEEP,
        metavar="N",
        help=f"backups kept, the newest (default: {DEFAULT_KEEP})",
    )
    parser.add_argument("--list", action="store_true", help="list the pool's backups, newest first; change nothing")
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.set_defaults(handler=_cmd_backup)
    changes_the_host(parser, "backup", DEFAULT_WAIT)
