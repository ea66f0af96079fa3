"""``thinpool rehearse``: plan here, then apply that very plan to same-sized disks in a throwaway VM.

The plan is made on this host against virtual disks named as the VM will name them
(/dev/vda, /dev/vdb ...), saved into the VM's share, and applied inside with
``thinpool apply PLAN`` — the same saved-plan path an operator uses. Then a second
apply with the same spec must change nothing, and lvm's own report must match the plan
to the extent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import Any

from thinpool.cli.options import add_spec_options, spec_from_args, spec_to_argv
from thinpool.core.units import format_size, parse_size

LVS_COLUMNS = "lv_name,lv_attr,lv_size,lv_metadata_size,chunk_size,data_percent,metadata_percent,seg_monitor,lv_profile"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "rehearse",
        help="apply a plan to same-sized sparse disks in a throwaway VM (real lvm, nothing here touched)",
        description="Plan for blank disks of the given sizes, boot a throwaway qemu VM with real "
        "device-mapper and sparse disks of those sizes, run 'thinpool apply' on the saved plan inside, "
        "run it again (it must change nothing), and show lvm's report. Disk files are deleted "
        "afterwards; their real writes are capped by --write-budget.",
        epilog="examples:\n  thinpool rehearse --disk-size 744GiB\n"
        "  thinpool rehearse --disk-size 100GiB --disk-size 100GiB --chunk-size 1m\n"
        "  thinpool rehearse --install-deps --disk-size 4GiB",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_spec_options(parser, devices=False)
    vm = parser.add_argument_group("the VM")
    vm.add_argument(
        "--disk-size",
        action="append",
        required=True,
        metavar="SIZE",
        help="a sparse disk of SIZE (repeat for several; they are /dev/vda, /dev/vdb ...)",
    )
    vm.add_argument(
        "--install-deps",
        action="store_true",
        help="apt-get install qemu, lvm2, busybox ... if missing (needs root and apt)",
    )
    vm.add_argument("--kernel", metavar="VMLINUZ", help="boot this kernel instead of Debian's package "
                    "(e.g. the host's /boot/vmlinuz-VERSION; needs --modules-root)")  # fmt: skip
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
    parser.set_defaults(handler=rehearse)


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, flush=True)


def _kernel(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from thinpool.rehearse import kernel
    from thinpool.system.runner import SystemRunner

    if args.kernel:
        return kernel.kernel_from_paths(Path(args.kernel), Path(args.modules_root))
    return kernel.obtain_debian_kernel(SystemRunner())


def rehearse(args: argparse.Namespace) -> int:
    from thinpool.core import planner
    from thinpool.core.plan import render_text
    from thinpool.rehearse import deps
    from thinpool.rehearse.vm import VM, VMConfig, disk_device, kvm_usable
    from thinpool.system import inspect
    from thinpool.system.runner import SystemRunner

    sizes = [parse_size(text, what="--disk-size") for text in args.disk_size]
    names = [disk_device(index) for index in range(len(sizes))]
    spec = replace(spec_from_args(args), devices=tuple(names))
    observed = inspect.virtual(sizes, names)
    plan = planner.plan(spec, observed)
    _say(args, f"== plan for {len(sizes)} blank disk(s): {', '.join(format_size(size) for size in sizes)}")
    _say(args, render_text(plan))
    if args.install_deps:
        deps.install(SystemRunner())
    deps.require()
    kernel = _kernel(args)
    mode = "KVM" if kvm_usable() else "TCG emulation"
    _say(args, f"== booting a throwaway VM ({mode}, kernel {kernel.version}) ...")
    config = VMConfig(disk_sizes=sizes, kernel=kernel, lifetime=args.timeout,
                      write_budget=parse_size(args.write_budget, what="--write-budget"))  # fmt: skip
    with VM(config) as vm:
        _say(args, f"   ready in {vm.boot_seconds:.1f}s")
        report = _rehearse_inside(args, vm, plan.to_json(), spec_to_argv(spec))
        report["boot_seconds"] = round(vm.boot_seconds, 1)
        report["disk_bytes_written"] = vm.disk_bytes_written()
    report["plan"] = plan.to_dict()
    report["matches_plan"] = _matches(plan.layout, report["pool"])
    report["ok"] = bool(report["first_ok"] and not report["second_changed"] and report["matches_plan"])
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _say(args, _verdict(report, plan.layout))
    return 0 if report["ok"] else 1


def _rehearse_inside(args: argparse.Namespace, vm: Any, plan_json: str, spec_argv: list[str]) -> dict[str, Any]:
    from thinpool.lvm import commands, report
    from thinpool.rehearse.vm import SHARE_MOUNT

    (vm.share / "plan.json").write_text(plan_json)
    _say(args, "== thinpool apply plan.json   (inside the VM)")
    started = time.monotonic()
    first = vm.thinpool("apply", "--yes", f"{SHARE_MOUNT}/plan.json", check=False, timeout=args.timeout)
    apply_seconds = time.monotonic() - started
    _say(args, first.stdout + first.stderr)
    _say(args, "== thinpool apply again with the same spec   (must change nothing)")
    second = vm.thinpool("apply", "--yes", "--json", *spec_argv, check=False, timeout=args.timeout)
    second_result = _json_or_error(second.stdout)
    _say(args, "   changed: " + str(second_result.get("changed")) + (f"\n{second.stderr}" if second.stderr else ""))
    _say(args, "== lvs -a   (inside the VM)")
    table = vm.run(["lvs", "-a", "-o", LVS_COLUMNS, args.vg], check=False)
    _say(args, table.stdout + table.stderr)
    lvs = report.parse_lvs(vm.run(list(commands.lvs_report(args.vg))).stdout)
    vgs = report.parse_vgs(vm.run(list(commands.vgs_report(args.vg))).stdout)
    pool = next((lv for lv in lvs if lv.bare_name == args.pool), None)
    spare = sum(lv.size for lv in lvs if lv.is_spare)
    return {
        "first_ok": first.returncode == 0,
        "first_output": first.stdout + first.stderr,
        "apply_seconds": round(apply_seconds, 2),
        "second_changed": bool(second_result.get("changed", True)) or second.returncode != 0,
        "second_result": second_result,
        "pool": {
            "data_size": pool.size if pool else 0,
            "metadata_size": pool.metadata_size if pool else 0,
            "chunk_size": pool.chunk_size if pool else 0,
            "seg_monitor": pool.seg_monitor if pool else "",
            "profile": pool.profile if pool else "",
            "spare_size": spare,
            "vg_free_extents": int(vgs[0]["free_count"]) if vgs else 0,
        },
    }


def _json_or_error(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"changed": True, "unreadable_output": text[-2000:]}
    return value if isinstance(value, dict) else {"changed": True}


def _matches(layout: dict[str, int], pool: dict[str, Any]) -> bool:
    extent = layout["extent_size"]
    return bool(
        pool["data_size"] == layout["data_extents"] * extent
        and pool["metadata_size"] == layout["metadata_extents"] * extent
        and pool["chunk_size"] == layout["chunk_size"]
        and pool["spare_size"] >= layout["metadata_extents"] * extent
        and pool["vg_free_extents"] == layout["headroom_extents"] + layout["left_extents"]
        and pool["seg_monitor"] == "monitored"
    )


def _verdict(report: dict[str, Any], layout: dict[str, int]) -> str:
    pool = report["pool"]
    extent = layout["extent_size"]
    lines = [
        f"Real pool: data {pool['data_size'] // extent} extents, metadata {pool['metadata_size'] // extent}, "
        f"spare {pool['spare_size'] // extent}, VG free {pool['vg_free_extents']}, chunk "
        f"{format_size(pool['chunk_size'])}, {pool['seg_monitor'] or 'not monitored'}.",
        f"VM boot {report['boot_seconds']}s, apply {report['apply_seconds']}s, "
        f"{format_size(report['disk_bytes_written'])} really written to the sparse disks (now deleted).",
    ]
    if report["ok"]:
        lines.append("Rehearsal passed: lvm made exactly the planned layout, and a second apply changed nothing.")
    else:
        problems = []
        if not report["first_ok"]:
            problems.append("the apply failed")
        if report["second_changed"]:
            problems.append("the second apply was not a no-op")
        if not report["matches_plan"]:
            problems.append("lvm's report differs from the plan")
        lines.append("Rehearsal FAILED: " + "; ".join(problems) + ".")
    return "\n".join(lines)
