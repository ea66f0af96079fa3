"""``thinpool maintain``: one pass of day-2 care over thinpool's pools (what thinpool-maintain.timer runs).

Each pool is read (one lvm report, the mount table when its thin volumes are active), its pass planned
by core.maintain, run through the executor, and read again to report what it gave back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any

from thinpool.app import backup as backups
from thinpool.app import watch
from thinpool.app.context import Context
from thinpool.app.executor import ApplyResult, Progress, apply
from thinpool.core import backup, health, maintain, metadata_check, owners
from thinpool.core.lvm import commands
from thinpool.core.plan import Plan
from thinpool.errors import ThinpoolError
from thinpool.system import files, observe

RESULT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PoolCare:
    before: health.PoolStatus
    plan: Plan
    result: ApplyResult | None  # None: planned only (--dry-run)
    after: health.PoolStatus | None  # read again once steps ran
    backup_reason: str = ""  # why the pass backs the pool up ("" when it does not)
    backup: backup.Backup | None = None  # the backup it took
    backup_error: str = ""
    check_reason: str = ""  # why the pass runs the full metadata check ("" when it does not)
    check: metadata_check.CheckRecord | None = None  # the check it ran
    check_error: str = ""

    @property
    def ok(self) -> bool:
        checked_ok = self.check is None or self.check.ok
        return (self.result is None or self.result.ok) and not self.backup_error and not self.check_error and checked_ok

    def to_dict(self) -> dict[str, Any]:
        last = self.after or self.before
        return {
            "vg": self.before.vg,
            "pool": self.before.pool,
            "ok": self.ok,
            "changed": bool(self.result and self.result.changed),
            "reclaimable_before": self.before.reclaimable,
            "reclaimable_after": last.reclaimable,
            "data_used_before": self.before.data_used,
            "data_used_after": last.data_used,
            "when_full": last.when_full,
            "reasons": self.plan.reasons,
            "steps": [step.to_dict() for step in self.result.steps] if self.result else [],
            "planned": [action.to_dict() for action in self.plan.actions],
            "backup": {
                "reason": self.backup_reason,
                "taken": self.backup.to_dict() if self.backup else None,
                "error": self.backup_error,
            },
            "metadata_check": {
                "reason": self.check_reason,
                "ran": self.check.to_dict() if self.check else None,
                "error": self.check_error,
            },
        }


CARED_FOR = frozenset({commands.MANAGED_TAG, owners.ADOPTED_TAG})


def cared_for_pools(ctx: Context) -> list[tuple[str, str]]:
    """Every thin pool thinpool made or adopted (tagged thinpool.managed or thinpool.adopted), in VG/POOL order."""
    observed = observe.read_lvm(ctx.runner)
    found = [
        (vg.name, lv.bare_name)
        for vg in observed.vgs.values()
        for lv in vg.lvs
        if lv.is_thin_pool and not lv.hidden and CARED_FOR & set(lv.tags)
    ]
    return sorted(found)


def care_for(
    ctx: Context,
    vg: str,
    pool: str,
    policy: maintain.Policy,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> PoolCare:
    before = watch.status(ctx, vg, pool)
    planned = maintain.plan(before, policy)
    reason = _backup_reason(ctx, before, policy)
    check_reason = maintain.check_due(policy, before, observe.read_check_record(vg, pool, ctx.root), int(ctx.clock()))
    if dry_run:
        return PoolCare(before, planned, None, None, reason, check_reason=check_reason)
    result = apply(planned, ctx.runner, root=ctx.root, progress=progress)
    after = watch.status(ctx, vg, pool) if planned.actions else None
    care = _backed_up(ctx, PoolCare(before, planned, result, after, reason), policy)
    return _checked(ctx, replace(care, check_reason=check_reason)) if check_reason else care


def _backed_up(ctx: Context, care: PoolCare, policy: maintain.Policy) -> PoolCare:
    if not care.backup_reason:
        return care
    vg, pool = care.before.vg, care.before.pool
    try:
        return replace(care, backup=backups.take(ctx, vg, pool, keep=policy.keep))
    except backup.PoolBusy as busy:  # a repair (or a backup run by hand) is at work: the next pass backs up
        return replace(care, backup_reason=f"{care.backup_reason}; not now: {busy.problem}")
    except ThinpoolError as error:
        return replace(care, backup_error=str(error))


def _checked(ctx: Context, care: PoolCare) -> PoolCare:
    try:
        return replace(care, check=full_check(ctx, care.after or care.before))
    except backup.PoolBusy as busy:  # the next pass checks
        return replace(care, check_reason=f"{care.check_reason}; not now: {busy.problem}")
    except ThinpoolError as error:
        return replace(care, check_error=str(error))


def full_check(ctx: Context, status: health.PoolStatus) -> metadata_check.CheckRecord:
    """thin_check of the live pool's metadata snapshot (no boot waits for it), recorded for doctor."""
    vg, pool = status.vg, status.pool
    with backups.pool_lock(ctx, vg, pool), backups.metadata_snapshot(ctx, vg, pool):
        started = time.monotonic()
        done = ctx.runner.run(
            commands.thin_check(commands.metadata_device(vg, pool), metadata_snap=True), check=False, timeout=3600
        )
        millis = int((time.monotonic() - started) * 1000)
    said = (done.stdout + done.stderr).strip()[-metadata_check.SAID_LIMIT :]
    tool = ctx.runner.run(commands.thin_check_version(), check=False).stdout.strip()
    record = metadata_check.CheckRecord(
        int(ctx.clock()), millis, status.metadata_used, done.ok, said, tool, thin_devices=status.thin_count
    )
    path = observe.under(ctx.root, metadata_check.record_path(vg, pool))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    files.write_atomically(path, json.dumps(record.to_dict(), indent=1) + "\n", keep_owner=False, mode=0o600)
    return record


def _backup_reason(ctx: Context, status: health.PoolStatus, policy: maintain.Policy) -> str:
    if policy.backup_every <= 0:
        return ""
    found = observe.thin_pool_target(ctx.runner, status.vg, status.pool) if status.active else None
    transaction_id = found[1].transaction_id if found and not found[1].failed else None
    last = next(iter(backups.backups(ctx, status.vg, status.pool)), None)
    return maintain.backup_due(policy, last, transaction_id, int(ctx.clock()))


def run(
    ctx: Context,
    targets: list[tuple[str, str]],
    policy: maintain.Policy,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> list[PoolCare]:
    """One pass over ``targets`` (every pool thinpool made when empty)."""
    chosen = targets or cared_for_pools(ctx)
    if not chosen:
        raise ThinpoolError(
            "no thin pool made or adopted by thinpool here (none is tagged thinpool.managed or thinpool.adopted)",
            fix="name the pool (thinpool maintain VG/POOL), or adopt a pool another tool made (thinpool adopt VG/POOL)",
        )
    return [care_for(ctx, vg, pool, policy, dry_run=dry_run, progress=progress) for vg, pool in chosen]
