"""Use cases that only read: a pool's status, the doctor's findings, and metrics readings."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from thinpool.app.context import Context
from thinpool.core import backup, health, metadata_check, sizing
from thinpool.core.doctor import DoctorOptions, diagnose
from thinpool.core.findings import Finding
from thinpool.core.lvm import commands
from thinpool.errors import ThinpoolError
from thinpool.system import observe

if TYPE_CHECKING:
    from thinpool.app.metrics import Reading


def status(ctx: Context, vg: str, pool: str) -> health.PoolStatus:
    """The pool from one lvm report, with the age of its newest metadata backup."""
    found = observe.read_pool_status(ctx.runner, vg, pool, ctx.root, ctx.statvfs)
    newest = backup.newest(observe.read_backups(observe.backup_folder(vg, pool, ctx.root)))
    age = None if newest is None else max(int(ctx.clock()) - newest.created, 0)
    return replace(found, backup_checked=True, backup_age=age)


def doctor(ctx: Context, vg: str, pool: str, workload: sizing.Workload) -> tuple[health.PoolStatus, list[Finding]]:
    """The pool's own findings, then each engine configuration's (the engines are read only here: status
    imports none of them)."""
    from thinpool import engines
    from thinpool.core.spec import PoolSpec
    from thinpool.system import observe_engine

    try:
        found = with_kernel_transaction(ctx, status(ctx, vg, pool))
    except ThinpoolError as error:
        raise observe.locked_devices(ctx.runner, ctx.root) or error from error
    findings = diagnose(found, DoctorOptions(workload)) + check_findings(ctx, found)
    state = observe_engine.engine_state(ctx.runner, PoolSpec(vg=vg, pool=pool), ctx.root)
    return found, findings + engines.doctor(state, vg, pool)


def check_findings(ctx: Context, found: health.PoolStatus) -> list[Finding]:
    """What maintain's last full metadata check says (nothing before its first: lvm's options are read
    only when there is a check's time to project)."""
    last = observe.read_check_record(found.vg, found.pool, ctx.root)
    if last is None:
        return []
    said = ctx.runner.run(commands.lvmconfig_thin_check_options(), check=False)
    options = metadata_check.parse_options(said.stdout) if said.ok else None
    return metadata_check.findings(
        found.vg, found.pool, last, found.metadata_used, options, thin_devices=found.thin_count
    )


def with_kernel_transaction(ctx: Context, found: health.PoolStatus) -> health.PoolStatus:
    """The active pool's transaction id as dm-thin has it (one dmsetup status), for the lost-metadata rule."""
    if not found.active:
        return found
    mapped = observe.thin_pool_target(ctx.runner, found.vg, found.pool)
    if mapped is None or mapped[1].failed:
        return found
    return replace(found, kernel_transaction_id=mapped[1].transaction_id)


def readings(ctx: Context, targets: list[tuple[str, str]], workload: sizing.Workload) -> list[Reading]:
    """One reading per pool; a pool that cannot be read is reported down, not raised."""
    from thinpool.app.metrics import Reading

    found = []
    for vg, pool in targets:
        try:
            pool_status, findings = doctor(ctx, vg, pool, workload)
        except ThinpoolError:
            found.append(Reading(vg, pool, None))
            continue
        found.append(Reading(vg, pool, pool_status, tuple(findings)))
    return found
