"""``thinpool migrate``: arguments and output (the work is in app.migrate)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from thinpool.cli.arguments import changes_the_host
from thinpool.cli.exits import EXIT_ERROR, EXIT_OK
from thinpool.cli.options import add_engine_options, add_spec_options, spec_from_args
from thinpool.core.changes import DEFAULT_WAIT
from thinpool.core.envelope import envelope
from thinpool.errors import ThinpoolError

if TYPE_CHECKING:
    from thinpool.app.context import Context
    from thinpool.app.migrate import StepPlan, StepResult

TARGET = "docker-overlay2-thin"
DEFAULT_STAGING = "/var/lib/thinpool/migrate/staging"

DESCRIPTION = f"""\
Moves a Docker devicemapper host (Docker 24 and older; Docker 25 removed the
driver) to overlay2 on an XFS thin volume of the same pool, keeping its images
(IDs and every tag) and named volumes. Run it before you upgrade Docker.

Steps (each can run alone, and again; what is done is skipped):

  --step export   Docker running on devicemapper. Saves every image (docker
                  save, all tags) and copies every local named volume into
                  --staging, with an inventory. Refused, with the numbers,
                  when the staging has no room. Containers are not carried:
                  --commit-containers first commits each one to an image.
  --step switch   Docker stopped. Takes a metadata backup, records Docker's
                  thin devices in lvm (tagged LVs, so lvm and the kernel
                  agree and a new thin volume gets a free id), removes
                  devicemapper's settings from daemon.json (other keys stay),
                  moves the data root aside (DATA_ROOT.devicemapper, never
                  deleted here), then applies --engine {TARGET}.
  --step import   Docker running on overlay2. docker load, tags, volumes;
                  then checks image IDs, tags and the volumes' checksums
                  against the inventory, and reports what did not come over.
  --finish        Removes Docker's old thin devices through lvm, the moved
                  data root and the staging's archives.
  --rollback      Before --finish, Docker stopped: removes the overlay2 volume,
                  puts back lvm's metadata, daemon.json, the drop-in and fstab
                  as they were, and the data root: devicemapper again.

Without --step: export, systemctl stop docker, switch, systemctl start docker,
import (where systemd runs). --finish stays yours to run once you are sure."""


def _render(result: StepResult) -> str:
    lines = [f"{result.step}:"] + [f"  done: {item}" for item in result.done]
    if len(lines) == 1:
        lines.append("  nothing to do: this step had already run")
    report = result.report
    if report is not None:
        lines.append(f"  images that came over with every tag: {len(report.images_matched)}")
        lines += [f"  missing: {item}" for item in report.images_missing]
        lines.append(f"  volumes with the same checksum: {len(report.volumes_matched)}")
        lines += [f"  differs: volume {name}" for name in report.volumes_differ]
        lines += [f"  not carried: container {text}" for text in report.containers_not_carried]
        lines += [f"  note: {text}" for text in report.notes]
    return "\n".join(lines)


def _chosen(args: argparse.Namespace) -> str:
    chosen = [name for name, on in (("finish", args.finish), ("rollback", args.rollback)) if on]
    if args.step:
        chosen.append(args.step)
    if len(chosen) > 1:
        raise ThinpoolError(
            f"{' and '.join(chosen)} cannot run together", fix="give one --step, --finish or --rollback"
        )
    return chosen[0] if chosen else "all"


def _show_plan(plan: StepPlan, as_json: bool) -> None:
    if as_json:
        would = [operation.text for operation in plan.operations]
        body = {"step": str(plan.step), "would": would, "notes": list(plan.notes), **plan.to_dict()}
        sys.stdout.write(json.dumps(envelope("thinpool-migrate-plan", body), indent=1) + "\n")
        return
    lines = [f"  - {operation.text}" for operation in plan.operations] or ["  - nothing: this step had already run"]
    lines += [f"  note: {note}" for note in plan.notes]
    print(f"thinpool migrate --to {TARGET}, {plan.step}, would:\n" + "\n".join(lines))
    print("Nothing was done: run it again with --yes.")


def _cmd_migrate(args: argparse.Namespace, ctx: Context) -> int:
    from dataclasses import replace

    from thinpool.app import migrate as use_case
    from thinpool.core.migrate import Step

    ctx.require_root("migrate")
    step = Step(_chosen(args))
    spec = replace(spec_from_args(args), engine=TARGET)
    spec.validate()
    where = use_case.Where(spec, Path(args.staging), args.commit_containers)
    if not args.yes:
        _show_plan(use_case.plan(ctx, step, where), args.json)
        return EXIT_ERROR
    results = use_case.run(ctx, step, where)
    if args.json:
        steps = [result.to_dict() for result in results]
        data = envelope("thinpool-migrate", {"ok": all(r.ok for r in results), "steps": steps})
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
    else:
        print("\n".join(_render(result) for result in results))
    return EXIT_OK if all(result.ok for result in results) else EXIT_ERROR


def add_parsers(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "migrate",
        help="move a Docker devicemapper host to overlay2 on a thin volume, keeping images and volumes",
        description=DESCRIPTION,
        epilog=f"examples:\n  thinpool migrate --to {TARGET} --staging /srv/staging --yes\n"
        f"  thinpool migrate --to {TARGET} --step export --staging /srv/staging --yes\n"
        f"  thinpool migrate --to {TARGET} --finish --staging /srv/staging --yes\n\n"
        "exit codes:\n  0    the step ran (import: everything came over)\n"
        "  1    not run (no --yes), refused, or something did not come over",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--to", required=True, choices=(TARGET,), help="where the host goes")
    parser.add_argument("--step", choices=("export", "switch", "import"), help="run one step (default: all three)")
    parser.add_argument("--finish", action="store_true", help="remove Docker's old devices, data root and staging")
    parser.add_argument("--rollback", action="store_true", help="before --finish: back to devicemapper")
    parser.add_argument(
        "--staging",
        default=DEFAULT_STAGING,
        metavar="DIR",
        help=f"where images and volumes wait (default: {DEFAULT_STAGING})",
    )
    parser.add_argument(
        "--commit-containers",
        action="store_true",
        help="commit each container to an image first (else writable layers are lost)",
    )
    parser.add_argument("--yes", action="store_true", help="run it")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_spec_options(parser, engine=False)
    add_engine_options(parser)
    parser.set_defaults(handler=_cmd_migrate)
    changes_the_host(parser, "migrate", DEFAULT_WAIT)
