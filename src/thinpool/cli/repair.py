"""``thinpool repair``: arguments and output (the work is in app.repair)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from thinpool.cli.arguments import changes_the_host
from thinpool.cli.exits import EXIT_ERROR, EXIT_OK
from thinpool.core.changes import DEFAULT_WAIT

if TYPE_CHECKING:
    from thinpool.app.context import Context
    from thinpool.app.repair import RepairReport

DESCRIPTION = """\
Checks a thin pool's metadata offline and repairs it, in this order:

  1. refuses while a thin volume of the pool is open or mounted (naming them);
  2. stops the pool, and runs thin_check on its metadata (read-only);
  3. damaged metadata: lvconvert --repair (thin_repair into the spare; lvm
     keeps the original as POOL_metaN), then checks the result the same way;
  4. metadata that lost thin volumes (a zeroed superblock is formatted anew by
     the kernel), or still does after lvm's repair: restores the newest backup
     (thinpool backup) that maps every thin volume lvm knows, into a new LV,
     checks it, swaps it in, and keeps the original as POOL_metaN;
  5. metadata the kernel moved past lvm's transaction id (Docker's
     devicemapper and containerd's devmapper make thin devices behind lvm's
     back; lvm then refuses thin operations): sets lvm's expected id to the
     kernel's (vgcfgbackup, that number, vgcfgrestore), when every thin
     volume lvm knows is in the metadata;
  6. starts the pool and its thin volumes, and says which did not come back.

Nothing is deleted: remove POOL_metaN yourself (lvremove) once the thin
volumes read back. Data written after the backup that was restored is not
in it. A repair killed halfway is finished by running it again."""


def _render(done: RepairReport) -> str:
    lines = [f"{done.vg}/{done.pool}: {done.before.state}: {done.before.reason}"]
    lines += [f"  ran: {step}" for step in done.ran]
    if done.after is not None and done.after is not done.before:
        lines.append(f"  now {done.after.state}: {done.after.reason}")
    if done.kept:
        names = ", ".join(f"{done.vg}/{name}" for name in done.kept)
        lines.append(f"  kept: {names} (the damaged original; lvremove it once the thin volumes read back)")
    if done.lost:
        lines.append("  did not come back: " + ", ".join(done.lost) + " (their data is not in any metadata)")
    lines += [f"  warning: {text}" for text in done.warnings]
    return "\n".join(lines)


def _cmd_repair(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import repair as use_case
    from thinpool.cli.watch import split_target

    vg, pool = split_target(args.target)
    if not args.yes:
        print(
            f"thinpool repair {vg}/{pool} stops the pool and its thin volumes, then:\n\n{DESCRIPTION}\n\n"
            "Nothing was done: run it again with --yes."
        )
        return EXIT_ERROR
    done = use_case.run(ctx, vg, pool, from_backup=args.from_backup)
    if args.json:
        sys.stdout.write(json.dumps(done.to_dict(), indent=1) + "\n")
    else:
        print(_render(done))
    return EXIT_OK if done.ok else EXIT_ERROR


def add_parsers(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "repair",
        help="check a pool's metadata offline; repair it, or restore a backup",
        description=DESCRIPTION,
        epilog="examples:\n  thinpool repair docker/thinpool --yes\n"
        "  thinpool repair docker/thinpool --yes --from-backup 20261129T043000Z-tx12\n\n"
        "exit codes:\n  0    the pool is healthy and every thin volume came back\n"
        "  1    not run (no --yes), refused, or something did not come back",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", nargs="?", default="docker/thinpool", metavar="VG/POOL")
    parser.add_argument("--yes", action="store_true", help="run it (it stops the pool)")
    parser.add_argument(
        "--from-backup",
        metavar="STEM",
        help="restore this backup (thinpool backup --list) instead of the newest that maps every thin volume",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_cmd_repair)
    changes_the_host(parser, "repair", DEFAULT_WAIT)
