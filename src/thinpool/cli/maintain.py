"""``thinpool maintain``: arguments and output (the work is in app.maintain)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING

from thinpool.cli.arguments import wait_seconds
from thinpool.cli.exits import EXIT_ERROR, EXIT_OK
from thinpool.core.backup import DEFAULT_KEEP
from thinpool.core.changes import HostBusy
from thinpool.core.envelope import envelope
from thinpool.core.units import format_size, parse_size, parse_span

if TYPE_CHECKING:
    from thinpool.app.context import Context
    from thinpool.app.maintain import PoolCare

DESCRIPTION = """\
One idempotent pass over each pool (default: every pool thinpool made), safe to
run every few minutes: thinpool-maintain.timer (thinpool install-units) runs it.

  reclaim    A thin volume thinpool made whose filesystem uses less than the
             pool maps for it is trimmed (fstrim; minimum extent: the pool's
             chunk) once the difference reaches --reclaim-above, so deleted
             containers and images give their space back to the pool.
  when full  A pool that can still autoextend queues writes, so dmeventd can
             grow it under a burst. One that cannot (not monitored, autoextend
             off, or no room in the VG for the next step) fails them at once
             instead of hanging every writer for 60 s. It is switched back when
             room returns (after thinpool grow).
  backup     The pool's metadata is backed up (thinpool backup) when it changed
             since the newest backup, at most every --backup-every, and at
             least daily; the newest --keep backups are kept.
  check      An active pool's metadata gets a full thin_check every
             --check-every (weekly), on a metadata snapshot of the live pool,
             so no boot waits for it; doctor reads its time and verdict (a
             boot whose full check would exceed 60 s, a check that failed)."""


def _render(care: PoolCare) -> str:
    from thinpool.core.plan import describe

    before, after = care.before, care.after or care.before
    target = f"{before.vg}/{before.pool}"
    lines = [f"{target}:"]
    ran = care.result.steps if care.result else []
    for action in care.plan.actions:
        step = next((step for step in ran if step.action == action), None)
        state = step.status if step else "planned"
        lines.append(f"  {state:<8} {describe(action)}: {' '.join(action.argv)}")
        lines.append(f"           why: {action.reason}")
        if step and step.error:
            lines.append("           " + step.error.replace("\n", "\n           "))
    if not care.plan.actions:
        lines.append("  nothing to do")
    if care.after is None:
        lines.append(f"  reclaimable {format_size(before.reclaimable)}; pool data used {format_size(before.data_used)}")
    else:
        lines.append(
            f"  reclaimable {format_size(before.reclaimable)} -> {format_size(after.reclaimable)}; "
            f"pool data used {format_size(before.data_used)} -> {format_size(after.data_used)}"
        )
    lines.append(f"  when full: {after.when_full or '-'} (wanted {care.plan.reasons['when_full']})")
    if care.backup:
        lines.append(f"  backup: {care.backup.stem} ({care.backup_reason})")
    elif care.backup_error:
        lines.append("  backup failed: " + care.backup_error.replace("\n", "\n  "))
    elif care.backup_reason:
        lines.append(f"  backup: {'planned' if care.result is None else 'not taken'} ({care.backup_reason})")
    lines.extend(_check_lines(care))
    return "\n".join(lines)


def _check_lines(care: PoolCare) -> list[str]:
    check = care.check
    if check is not None:
        verdict = "no errors" if check.ok else "ERRORS: " + check.said.replace("\n", "\n  ")
        return [f"  full metadata check: {verdict} ({check.millis / 1000:.1f} s; {care.check_reason})"]
    if care.check_error:
        return ["  full metadata check failed to run: " + care.check_error.replace("\n", "\n  ")]
    if care.check_reason:
        return [f"  full metadata check: {'planned' if care.result is None else 'not run'} ({care.check_reason})"]
    return []


def _cmd_maintain(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import maintain as use_case
    from thinpool.cli.watch import split_target
    from thinpool.core.maintain import Policy

    policy = Policy(
        reclaim_above=parse_size(args.reclaim_above, what="--reclaim-above"),
        backup_every=parse_span(args.backup_every, what="--backup-every"),
        keep=args.keep,
        check_every=parse_span(args.check_every, what="--check-every"),
    )
    targets = [split_target(text) for text in args.target]
    try:
        with contextlib.nullcontext() if args.dry_run else ctx.changing("maintain", args.lock_wait):
            cared = use_case.run(ctx, targets, policy, dry_run=args.dry_run)
    except HostBusy as busy:  # the next pass does it: the timer's run is not a failure
        return _skipped(args, busy)
    if args.json:
        body = {"ok": all(care.ok for care in cared), "pools": [care.to_dict() for care in cared]}
        report = envelope("thinpool-maintenance", body, version=use_case.RESULT_SCHEMA_VERSION)
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
    else:
        print("\n".join(_render(care) for care in cared))
    return EXIT_OK if all(care.ok for care in cared) else EXIT_ERROR


def _skipped(args: argparse.Namespace, busy: HostBusy) -> int:
    from thinpool.app import maintain as use_case

    if args.json:
        body = {"ok": True, "skipped": busy.problem, "pools": []}
        report = envelope("thinpool-maintenance", body, version=use_case.RESULT_SCHEMA_VERSION)
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
    else:
        print(f"maintain skipped: {busy.problem}; the next pass does it")
    return EXIT_OK


def add_parsers(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "maintain",
        help="one pass of day-2 care: trim what filesystems freed, set the when-full policy, back up metadata",
        description=DESCRIPTION,
        epilog="examples:\n  thinpool maintain\n  thinpool maintain docker/thinpool --dry-run\n"
        "  thinpool maintain --json\n\nexit codes:\n  0    every step worked (or nothing to do)\n"
        "  1    a step failed, or a pool could not be read",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", nargs="*", metavar="VG/POOL", help="default: every pool tagged thinpool.managed")
    parser.add_argument(
        "--reclaim-above",
        default="256MiB",
        metavar="SIZE",
        help="trim once the pool maps this much more than a filesystem uses (default: 256MiB)",
    )
    parser.add_argument(
        "--backup-every",
        default="1h",
        metavar="SPAN",
        help="back up changed metadata at most this often, e.g. 30min, 6h; 0: never (default: 1h)",
    )
    parser.add_argument(
        "--check-every",
        default="7d",
        metavar="SPAN",
        help="run a full thin_check of each active pool's metadata snapshot this often; 0: never (default: 7d)",
    )
    parser.add_argument(
        "--keep",
        type=int,
        default=DEFAULT_KEEP,
        metavar="N",
        help=f"metadata backups kept per pool (default: {DEFAULT_KEEP})",
    )
    parser.add_argument("--dry-run", action="store_true", help="show what the pass would do, change nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--lock-wait",
        type=wait_seconds,
        default=0.0,
        metavar="SECONDS",
        help="while another thinpool command changes this host, wait this long for it, then skip this pass "
        "(exit 0, and --json says skipped); default: 0, the timer's next pass does the work",
    )
    parser.set_defaults(handler=_cmd_maintain)
