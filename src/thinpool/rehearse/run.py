"""``thinpool rehearse``: plan here, then apply that very plan to same-sized disks in a throwaway VM.

The plan is made on this host against virtual disks named as the VM will name them
(/dev/vda, /dev/vdb ...), saved into the VM's share, and applied inside with
``thinpool apply PLAN`` — the same saved-plan path an operator uses. Then a second
apply with the same spec must change nothing, and lvm's own report must match the plan
to the extent.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinpool.app.context import Context
from thinpool.core import boot_check
from thinpool.core.envelope import envelope
from thinpool.core.model import CryptState, LvmLocal
from thinpool.core.plan import PlanLayout
from thinpool.core.spec import NO_ENGINE, PoolSpec
from thinpool.core.units import format_size
from thinpool.errors import MissingTool

REPORT_SCHEMA_VERSION = 1
LVS_COLUMNS = "lv_name,lv_attr,lv_size,lv_metadata_size,chunk_size,data_percent,metadata_percent,seg_monitor,lv_profile"


@dataclass(frozen=True)
class Rehearsal:
    """What to rehearse: the spec (its devices are ignored), the disks, and the VM's limits."""

    spec: PoolSpec
    disk_sizes: tuple[int, ...]  # blank virtual disks; or, with host_devices, read from those
    spec_argv: tuple[str, ...]  # the same spec as command-line flags, for the second apply in the guest
    host_devices: tuple[str, ...] = ()  # this host's disks to replicate (their sizes; its engine files)
    install_deps: bool = False
    kernel: Path | None = None
    modules_root: Path = Path("/")
    timeout: int = 900
    write_budget: int = 0
    release: str | None = None  # a pinned release's root (rehearse.guest); None: this host's own programs


Say = Callable[[str], None]


def _kernel(ctx: Context, request: Rehearsal) -> Any:
    from thinpool.rehearse import kernel

    if request.kernel:
        return kernel.kernel_from_paths(request.kernel, request.modules_root)
    return kernel.obtain_debian_kernel(ctx.runner)


def _guest(ctx: Context, request: Rehearsal, say: Say) -> Any:
    if request.release is None:
        return None
    from thinpool.rehearse import guest

    return guest.obtain(guest.release_named(request.release), ctx.runner, lambda text: say("== " + text))


def _guest_lvm_local(ctx: Context, root: Any) -> LvmLocal | None:
    """The guest's lvmlocal.conf, which apply's fast boot check edits there: the release root's own (lvm's
    thin_check options there are its defaults), or this host's, which a guest on this host's root sees."""
    from thinpool.system import observe

    if root is None:
        try:
            return observe.read_lvm_local(ctx.runner, ctx.root)
        except MissingTool:  # lvm2 comes with --install-deps, before the VM
            return LvmLocal(observe.read_files((boot_check.LVMLOCAL,), ctx.root)[0].get(boot_check.LVMLOCAL), None)
    shipped = root.path / "etc/lvm/lvmlocal.conf"
    return LvmLocal(shipped.read_text() if shipped.is_file() else None, None)


def _guest_crypt(ctx: Context, root: Any, names: list[str], spec: PoolSpec) -> CryptState | None:
    """With --encrypt: the UUIDs the guest's new LUKS headers get (drawn here, fixed in the plan it applies)
    and the crypttab it has (the release root's, or this host's, which a guest on this host's root sees); with
    --tpm2, the guest boots with an emulated TPM, and its tool is looked for in that root."""
    from thinpool.system import observe

    if spec.encryption is None:
        return None
    where = root.path if root is not None else ctx.root
    return CryptState(
        crypttab=observe.read_crypttab(where),
        uuids={name: str(uuid.uuid4()) for name in names},
        tpm2_device=spec.encryption.tpm2,
        tpm2_tool=spec.encryption.tpm2 and observe.has_tpm2_tool(where),
    )


def rehearse(ctx: Context, request: Rehearsal, say: Say) -> int:
    from thinpool.app import planning, pool
    from thinpool.core.plan import render_text
    from thinpool.rehearse import deps
    from thinpool.rehearse.vm import VM, VMConfig, disk_device, kvm_usable

    root = _guest(ctx, request, say)
    lvm_local = _guest_lvm_local(ctx, root)
    count = len(request.host_devices or request.disk_sizes)
    crypt_state = _guest_crypt(ctx, root, [disk_device(index) for index in range(count)], request.spec)
    if request.host_devices:
        replica_names = [disk_device(index) for index in range(len(request.host_devices))]
        sizes, plan = pool.plan_replica(ctx, request.spec, request.host_devices, replica_names, lvm_local, crypt_state)
        shown = ", ".join(f"{path} {format_size(size)}" for path, size in zip(request.host_devices, sizes, strict=True))
        say(f"== plan for disks as large as {shown}, against this host's engine files")
    else:
        sizes = list(request.disk_sizes)
        names = [disk_device(index) for index in range(len(sizes))]
        plan = planning.plan_virtual(request.spec, sizes, names, lvm_local, crypt_state)
        say(f"== plan for {len(sizes)} blank disk(s): {', '.join(format_size(size) for size in sizes)}")
    names = [disk_device(index) for index in range(len(sizes))]
    say(render_text(plan))
    host_engines = request.spec.engine != NO_ENGINE and request.release is None  # else the release's own
    if request.install_deps:
        deps.install(ctx.runner, engines=host_engines)
    deps.require(engines=host_engines)
    kernel = root.kernel if root else _kernel(ctx, request)
    mode = "KVM" if kvm_usable() else "TCG emulation"
    on = f"{root.release.description}, " if root else ""
    say(f"== booting a throwaway VM ({mode}, {on}kernel {kernel.version}) ...")
    tpm = request.spec.encryption is not None and request.spec.encryption.tpm2  # the guest gets its own TPM
    config = VMConfig(
        disk_sizes=sizes,
        kernel=kernel,
        lifetime=request.timeout,
        write_budget=request.write_budget,
        guest=root,
        tpm=tpm,
    )
    with VM(config) as vm:
        say(f"   ready in {vm.boot_seconds:.1f}s")
        found = _rehearse_inside(request, say, vm, plan.to_json(), [*request.spec_argv, *names])
        found["release"] = request.release  # null: this host's own kernel, lvm2 and engines
        found["boot_seconds"] = round(vm.boot_seconds, 1)
        found["disk_bytes_written"] = vm.disk_bytes_written()
    assert plan.layout is not None
    found["matches_plan"] = _matches(plan.layout, found["pool"])
    engine_ok = found["engine"] is None or found["engine"]["ok"]
    found["ok"] = bool(found["first_ok"] and not found["second_changed"] and found["matches_plan"] and engine_ok)
    if ctx.json:
        report = envelope("thinpool-rehearsal", {"plan": plan.to_dict(), **found}, version=REPORT_SCHEMA_VERSION)
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        say(_verdict(found, plan.layout))
    return 0 if found["ok"] else 1


def _render_steps(result: dict[str, Any]) -> str:
    """Each step once: its status, what it did, how long it took, and its error or note."""
    lines = []
    for step in result.get("steps", []):
        lines.append(f"   {step['status']:<8} {step['op']} {step['kind']} {step['target']} ({step['seconds']:.1f}s)")
        lines += [f"            {text}" for text in (step.get("error"), step.get("note")) if text]
    if "problem" in result:
        lines.append(f"   refused: {result['problem']}\n   fix: {result.get('fix', '')}")
    if "unreadable_output" in result:
        lines.append(result["unreadable_output"])
    return "\n".join(lines)


def _rehearse_inside(request: Rehearsal, say: Say, vm: Any, plan_json: str, spec_argv: list[str]) -> dict[str, Any]:
    from thinpool.core.lvm import commands, report
    from thinpool.rehearse import engine
    from thinpool.rehearse.vm import SHARE_MOUNT

    wired = request.spec.engine != NO_ENGINE
    if wired and request.host_devices:
        say(
            "== the VM sees this host's engine files (read-only, under its own overlay): the merge into them is "
            "rehearsed; the VM runs no systemd, so daemon-reload is not"
        )
    elif wired:
        say(
            "== the VM starts from what the plan assumed: no engine config, fstab or data root\n"
            "   (a --disk-size plan reads nothing on this host; the VM sees the host's files: they are cleared there)"
        )
        vm.run(["bash", "-c", engine.clean_slate_script()])
    (vm.share / "plan.json").write_text(plan_json)
    say("== thinpool apply plan.json   (inside the VM)")
    started = time.monotonic()
    first = vm.thinpool("apply", "--yes", "--json", f"{SHARE_MOUNT}/plan.json", check=False, timeout=request.timeout)
    apply_seconds = time.monotonic() - started
    first_result = _json_or_error(first.stdout)
    say(_render_steps(first_result))
    say("== thinpool apply again with the same spec   (must change nothing)")
    second = vm.thinpool("apply", "--yes", "--json", *spec_argv, check=False, timeout=request.timeout)
    second_result = _json_or_error(second.stdout)
    say("   changed: " + str(second_result.get("changed")) + (f"\n{second.stderr}" if second.stderr else ""))
    say("== lvs -a   (inside the VM)")
    vg, pool_name = request.spec.vg, request.spec.pool
    table = vm.run(list(commands.lvs_table(vg, LVS_COLUMNS)), check=False)
    say(table.stdout + table.stderr)
    run = None
    if wired and first.returncode == 0:
        say(f"== {request.spec.engine}: the engine started in the VM on that configuration, running a container")
        run = engine.exercise(vm, request.spec.engine, vg, pool_name)
        say(engine.render(run))
    listed = vm.run(list(commands.lvs_report(vg)), check=False)  # no VG when the apply was refused
    lvs = report.parse_lvs(listed.stdout) if listed.returncode == 0 else []
    groups = vm.run(list(commands.vgs_report(vg)), check=False)
    vgs = report.parse_vgs(groups.stdout) if groups.returncode == 0 else []
    pool = next((lv for lv in lvs if lv.bare_name == pool_name), None)
    spare = sum(lv.size for lv in lvs if lv.is_spare)
    return {
        "first_ok": first.returncode == 0,
        "first_result": first_result,
        "apply_seconds": round(apply_seconds, 2),
        "second_changed": bool(second_result.get("changed", True)) or second.returncode != 0,
        "second_result": second_result,
        "engine": run.to_dict() if run else ({"engine": request.spec.engine, "ok": False} if wired else None),
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


def _matches(layout: PlanLayout, pool: dict[str, Any]) -> bool:
    return bool(
        pool["data_size"] == layout.data_size
        and pool["metadata_size"] == layout.metadata_size
        and pool["chunk_size"] == layout.chunk_size
        and pool["spare_size"] >= layout.metadata_size
        and pool["vg_free_extents"] == layout.headroom_extents + layout.left_extents
        and pool["seg_monitor"] == "monitored"
    )


def _verdict(report: dict[str, Any], layout: PlanLayout | None) -> str:
    pool = report["pool"]
    extent = layout.extent_size if layout else 1
    lines = [
        f"Real pool: data {pool['data_size'] // extent} extents, metadata {pool['metadata_size'] // extent}, "
        f"spare {pool['spare_size'] // extent}, VG free {pool['vg_free_extents']}, chunk "
        f"{format_size(pool['chunk_size'])}, {pool['seg_monitor'] or 'not monitored'}.",
        f"VM boot {report['boot_seconds']}s, apply {report['apply_seconds']}s, "
        f"{format_size(report['disk_bytes_written'])} really written to the sparse disks (now deleted).",
    ]
    if report["ok"]:
        engine = report["engine"]
        ran = f", and {engine['engine']} ran a container on it" if engine else ""
        lines.append(f"Rehearsal passed: lvm made exactly the planned layout, a second apply changed nothing{ran}.")
    else:
        problems = []
        if not report["first_ok"]:
            refused = report["first_result"].get("problem")
            problems.append("the apply failed" + (f" ({refused})" if refused else ""))
        if report["second_changed"]:
            problems.append("the second apply was not a no-op")
        if not report["matches_plan"]:
            problems.append("lvm's report differs from the plan")
        if report["engine"] is not None and not report["engine"]["ok"]:
            problems.append(f"{report['engine']['engine']} did not run a container on the pool")
        lines.append("Rehearsal FAILED: " + "; ".join(problems) + ".")
    return "\n".join(lines)
