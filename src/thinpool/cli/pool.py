"""plan, apply, grow, destroy and engine show/configure: arguments in, use cases called, results out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from thinpool.cli.arguments import changes_the_host
from thinpool.cli.exits import EXIT_CHANGES, EXIT_CODES_HELP, EXIT_ERROR, EXIT_OK
from thinpool.cli.options import add_engine_options, add_spec_options, spec_from_args
from thinpool.cli.running import confirm, render_result, show_progress
from thinpool.core.changes import DEFAULT_WAIT

if TYPE_CHECKING:
    from thinpool.app.context import Context
    from thinpool.core.plan import Plan

SIZE_HELP = "Sizes take binary units: 744GiB, 512KiB, 100G, 4m (k/m/g/t are powers of 1024)."


def _plan_from_args(args: argparse.Namespace, ctx: Context) -> Plan:
    """The plan for the spec: on virtual disks (--disk-size), or against the real system."""
    from thinpool.core.units import parse_size

    spec = spec_from_args(args)
    if not getattr(args, "disk_size", None):
        from thinpool.app import pool

        return pool.plan(ctx, spec)
    from thinpool.app.planning import plan_virtual

    sizes = [parse_size(text, what="--disk-size") for text in args.disk_size]
    return plan_virtual(spec, sizes)


def _cmd_plan(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.core.plan import render_text

    result = _plan_from_args(args, ctx)
    if args.out:
        from thinpool.app import pool

        pool.save(result, Path(args.out))
    sys.stdout.write(result.to_json() if args.json else render_text(result))
    return EXIT_CHANGES if args.detailed_exitcode and result.has_changes else EXIT_OK


def _cmd_apply(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import pool

    ctx.require_root("apply")
    if len(args.devices) == 1 and Path(args.devices[0]).is_file():  # a saved plan, named on this host
        plan = pool.replan_saved(ctx, Path(args.devices[0]))
    else:
        plan = _plan_from_args(args, ctx)
    question = f"Apply these {len(plan.actions)} changes to {plan.vg}/{plan.pool}? Type 'yes': "
    return _run_plan(plan, args, ctx, question, "yes")


def _run_plan(plan: Plan, args: argparse.Namespace, ctx: Context, question: str, answer: str) -> int:
    """Show ``plan``, get the typed ``answer`` unless --yes, run it, print the result."""
    from thinpool.app import pool
    from thinpool.app.executor import ApplyResult
    from thinpool.core.plan import render_text

    if not args.json:
        sys.stdout.write(render_text(plan))
    if not plan.has_changes:
        if args.json:
            sys.stdout.write(json.dumps({**ApplyResult(plan).to_dict(), "changed": False}) + "\n")
        return EXIT_OK
    confirm(args.yes, question, answer)
    result = pool.run(ctx, plan, progress=None if args.json else show_progress)
    sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n" if args.json else render_result(result))
    return EXIT_OK if result.ok else EXIT_ERROR


def _cmd_grow(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import pool

    ctx.require_root("grow")
    plan = pool.plan_grow(ctx, spec_from_args(args))
    return _run_plan(plan, args, ctx, f"Grow {plan.vg}/{plan.pool}? Type 'yes': ", "yes")


def _cmd_destroy(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import pool

    ctx.require_root("destroy")
    plan = pool.plan_destroy(ctx, spec_from_args(args), erase_encryption=args.erase_encryption)
    question = f"This destroys {plan.vg}/{plan.pool} and all data in it. Type the VG name ({plan.vg}) to go on: "
    return _run_plan(plan, args, ctx, question, plan.vg)


def _cmd_engine_show(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import pool

    found = pool.engine_show(ctx, spec_from_args(args))
    sys.stdout.write(json.dumps(found, indent=2) + "\n" if args.json else _render_engine(found))
    return EXIT_OK


def _render_engine(found: dict[str, object]) -> str:
    lines = []
    for key, value in found.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {name}: {item}" for name, item in value.items()] or ["  (none)"]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def _cmd_engine_configure(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import pool

    ctx.require_root("engine configure")
    spec = spec_from_args(args)
    plan = pool.plan_engine_configure(ctx, spec)
    question = f"Wire {spec.engine} to {plan.vg}/{plan.pool} ({len(plan.actions)} changes)? Type 'yes': "
    return _run_plan(plan, args, ctx, question, "yes")


def add_engine_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    engine = commands.add_parser(
        "engine",
        help="show or configure the container engine's storage",
        description="Which engine to choose: docker-overlay2-thin works with every Docker version (overlay2 "
        "on an XFS thin volume of the pool, mounted with project quotas); docker-devicemapper is the "
        "classic setup and needs Docker 24 or older; containerd-devmapper gives containerd (and "
        "Kubernetes through CRI) its devmapper snapshotter. Config files are merged (every other key "
        "kept), written atomically with a timestamped backup; engines are never restarted for you.",
        epilog="examples:\n  thinpool engine show\n  thinpool engine configure --engine docker-devicemapper "
        "--vg docker --pool thinpool\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = engine.add_subparsers(dest="engine_command", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="engine versions, storage configuration and data root")
    add_spec_options(show, devices=False)
    add_engine_options(show)
    show.add_argument("--json", action="store_true", help="print as JSON")
    show.set_defaults(handler=_cmd_engine_show)
    configure = actions.add_parser("configure", help="wire --engine to an existing pool (same as apply)")
    add_spec_options(configure, devices=False)
    add_engine_options(configure)
    configure.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    configure.add_argument("--json", action="store_true", help="print the result as JSON")
    configure.set_defaults(handler=_cmd_engine_configure)
    changes_the_host(configure, "engine configure", DEFAULT_WAIT)


def add_lifecycle_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    grow = commands.add_parser(
        "grow",
        help="add devices to the pool's VG and grow the pool into them",
        description="Add DEVICEs to the VG (same safety rules as apply), then grow the pool's metadata "
        "(to what the larger pool needs) and data, keeping one autoextend step free. Without DEVICEs, "
        "grows into the VG's existing free space. " + SIZE_HELP,
        epilog="example:\n  thinpool grow /dev/sdc --yes\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_spec_options(grow)
    grow.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    grow.add_argument("--json", action="store_true", help="print the result as JSON")
    grow.set_defaults(handler=_cmd_grow)
    changes_the_host(grow, "grow", DEFAULT_WAIT)
    destroy = commands.add_parser(
        "destroy",
        help="remove the pool (and its VG and PV labels when they hold nothing else)",
        description="Remove the pool and every thin volume in it; then the VG and its PV labels if the VG "
        "held nothing else, and the pool's lvm profile. Refused while thin volumes are active or "
        "/etc/docker/daemon.json or /etc/containerd/config.toml name the pool. Asks you to type the VG "
        "name unless --yes.",
        epilog="example:\n  thinpool destroy --vg docker --pool thinpool\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_spec_options(destroy, devices=False)
    destroy.add_argument("--yes", "-y", action="store_true", help="do not ask for the VG name")
    destroy.add_argument(
        "--erase-encryption",
        action="store_true",
        help="with the VG gone, also wipe every key slot of the LUKS headers --encrypt made, and the copies apply "
        "kept: no key opens that data again (without it the mappings are only closed)",
    )
    destroy.add_argument("--json", action="store_true", help="print the result as JSON")
    destroy.set_defaults(handler=_cmd_destroy)
    changes_the_host(destroy, "destroy", DEFAULT_WAIT)


def add_plan_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = commands.add_parser(
        "plan",
        help="compute a layout in exact extents, touching nothing",
        description="Plan a thin pool for DEVICEs, an existing --vg, or virtual --disk-size disks. "
        "Nothing is changed. " + SIZE_HELP,
        epilog="examples:\n  thinpool plan --disk-size 744GiB\n  thinpool plan /dev/sdb /dev/sdc\n"
        "  thinpool plan --vg docker --json --out plan.json\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_spec_options(plan)
    add_engine_options(plan)
    plan.add_argument(
        "--disk-size",
        action="append",
        metavar="SIZE",
        help="plan on a blank virtual disk of SIZE (repeat for more); reads nothing",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON (thinpool-plan, schema 2)")
    plan.add_argument("--out", metavar="FILE", help="also save the plan as JSON, for 'thinpool apply FILE'")
    plan.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when the plan has changes")
    plan.set_defaults(handler=_cmd_plan)


def add_apply_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apply = commands.add_parser(
        "apply",
        help="create or converge the pool (idempotent; asks first unless --yes)",
        description="Plan as 'thinpool plan' does, show the plan, confirm, then run it step by step, "
        "verifying each step from a fresh lvm report. A second run changes nothing. With a single "
        "FILE argument made by 'thinpool plan --out FILE', runs exactly that plan, and refuses it if "
        "the system changed since. " + SIZE_HELP,
        epilog="examples:\n  thinpool apply /dev/sdb --yes\n  thinpool plan /dev/sdb --out plan.json && "
        "thinpool apply plan.json\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_spec_options(apply)
    add_engine_options(apply)
    apply.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    apply.add_argument("--json", action="store_true", help="print the result as JSON (thinpool-result, schema 1)")
    apply.set_defaults(handler=_cmd_apply)
    changes_the_host(apply, "apply", DEFAULT_WAIT)


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_plan_parser(commands)
    add_apply_parser(commands)
    add_lifecycle_parsers(commands)
    add_engine_parser(commands)
