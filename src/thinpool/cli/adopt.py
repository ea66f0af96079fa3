"""``thinpool adopt``: arguments and output (the work is in app.adopt, the rules in core.adopt and core.owners)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from thinpool.cli.arguments import changes_the_host
from thinpool.cli.exits import EXIT_CODES_HELP, EXIT_ERROR, EXIT_OK
from thinpool.cli.options import add_autoextend_options, autoextend_from_args
from thinpool.cli.running import confirm, render_result, show_progress
from thinpool.core.changes import DEFAULT_WAIT
from thinpool.core.envelope import envelope

if TYPE_CHECKING:
    from thinpool.app.context import Context
    from thinpool.app.executor import ApplyResult
    from thinpool.core.adopt import Adoption

RESULT_SCHEMA_VERSION = 1

DESCRIPTION = """\
Look after a thin pool that another tool made: Incus or LXD, Proxmox VE's
pve/data, Docker's devicemapper pool, or one made by hand. Its owner is read
from lvm's record (the VG's and the pool's tags, the pool's and its volumes'
names) and shown with what thinpool will and will not do for it:

  will      watch it (status, doctor, metrics, alerts), back up its metadata on
            the maintain timer, repair it with the same checks and backups as
            thinpool's own pools, and set its when-full mode only when the
            owner left lvm's default;
  will not  trim its volumes, rename or resize anything, or touch the owner's
            volumes: adopting adds thinpool's tags to the pool (thinpool.adopted,
            thinpool.when-full) and, with --autoextend, its profile.

Running it again changes nothing. Undo: lvchange --deltag thinpool.adopted
--deltag thinpool.when-full VG/POOL."""


def _duties_text(adoption: Adoption) -> str:
    ownership = adoption.ownership
    lines = [f"owner: {ownership.owner.label} ({ownership.evidence})"]
    for duty in adoption.duties:
        lines.append(f"  {'will    ' if duty.done else 'will not'} {duty.what}: {duty.why}")
    return "\n".join(lines) + "\n\n"


def _report(adoption: Adoption, result: ApplyResult | None) -> dict[str, Any]:
    body = {
        "vg": adoption.plan.vg,
        "pool": adoption.plan.pool,
        "owner": adoption.ownership.to_dict(),
        "duties": [duty.to_dict() for duty in adoption.duties],
        "planned": [action.to_dict() for action in adoption.plan.actions],
        "changed": bool(result and result.changed),
        "ok": result is None or result.ok,
        "result": result.to_dict() if result else None,
    }
    return envelope("thinpool-adoption", body, version=RESULT_SCHEMA_VERSION)


def _cmd_adopt(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import adopt
    from thinpool.cli.watch import split_target
    from thinpool.core.plan import render_text

    vg, pool = split_target(args.target)
    if not args.dry_run:
        ctx.require_root("adopt")
    autoextend = autoextend_from_args(args) if args.autoextend else None
    adoption = adopt.plan(ctx, vg, pool, autoextend)
    if not args.json:
        sys.stdout.write(_duties_text(adoption) + render_text(adoption.plan))
    result = None
    if adoption.plan.has_changes and not args.dry_run:
        confirm(args.yes, f"Adopt {vg}/{pool} ({len(adoption.plan.actions)} changes)? Type 'yes': ", "yes")
        result = adopt.run(ctx, adoption, progress=None if args.json else show_progress)
        if not args.json:
            sys.stdout.write(render_result(result))
    if args.json:
        sys.stdout.write(json.dumps(_report(adoption, result), indent=1) + "\n")
    return EXIT_OK if result is None or result.ok else EXIT_ERROR


def add_parsers(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "adopt",
        help="look after a thin pool another tool made (Incus, Proxmox VE, Docker, by hand): backups, care, repair",
        description=DESCRIPTION,
        epilog="examples:\n  thinpool adopt pve/data --dry-run\n  thinpool adopt incus/IncusThinPool --yes\n"
        "  thinpool adopt vg0/pool --autoextend --yes\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="VG/POOL", help="the thin pool to look after")
    parser.add_argument(
        "--autoextend",
        action="store_true",
        help="also write and attach thinpool's autoextend profile (and switch monitoring on): dmeventd then "
        "grows the pool's data from its VG's free space; leave it off when the owner keeps that space",
    )
    add_autoextend_options(parser.add_argument_group("the profile (with --autoextend)"), when="with --autoextend: ")
    parser.add_argument(
        "--dry-run", action="store_true", help="show the owner, the duties and the plan; change nothing"
    )
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (thinpool-adoption, schema 1)")
    parser.set_defaults(handler=_cmd_adopt)
    changes_the_host(parser, "adopt", DEFAULT_WAIT)
