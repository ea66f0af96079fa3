"""One pass of day-2 care for a pool, as a plan: pure, from the pool's status.

* Reclaim: a thinpool-made thin volume whose filesystem uses less than the pool maps for it is
  trimmed once the difference reaches ``Policy.reclaim_above``. fstrim's minimum extent is the
  pool's chunk size: dm-thin unmaps whole chunks only, so smaller discards free nothing.
* Backup: the pool's metadata is backed up when it changed since the newest backup (the kernel's
  transaction id moved), at most every ``Policy.backup_every``, and at least daily (core.backup.due).
* Full check: an active pool's metadata gets a full ``thin_check`` on a metadata snapshot every
  ``Policy.check_every`` (weekly; core.metadata_check), its time and verdict recorded for doctor.
* When full: a pool that can still autoextend queues writes (dm-thin's default, so dmeventd can
  catch a burst); one that cannot fails them at once (``lvchange --errorwhenfull y``), and is
  switched back once it can grow again (after ``thinpool grow``, say).

Running it again changes nothing until the pool's state changes: safe from a timer.
"""

from __future__ import annotations

from dataclasses import dataclass

from thinpool.core import backup, doctor, health, metadata_check
from thinpool.core.lvm import commands
from thinpool.core.model import WhenFull
from thinpool.core.plan import Action, ActionKind, Plan, Target
from thinpool.core.programs import argv as programs
from thinpool.core.units import format_size


@dataclass(frozen=True)
class Policy:
    reclaim_above: int = doctor.RECLAIM_ABOVE  # bytes a filesystem may hold unused in the pool before a trim
    backup_every: int = backup.DEFAULT_EVERY  # seconds between backups of changing metadata (0: no backups)
    keep: int = backup.DEFAULT_KEEP  # backups kept per pool
    check_every: int = metadata_check.CHECK_EVERY  # seconds between full metadata checks (0: none)


def _reclaim_actions(status: health.PoolStatus, policy: Policy) -> tuple[Action, ...]:
    actions = []
    for volume in status.volumes:
        if not volume.managed or volume.filesystem is None or volume.reclaimable < policy.reclaim_above:
            continue
        where = volume.filesystem.mount_point
        why = (
            f"the pool maps {format_size(volume.mapped)} for {where}, its filesystem uses "
            f"{format_size(volume.filesystem.used)}: trim free extents of a chunk "
            f"({format_size(status.chunk_size)}) or more"
        )
        target = Target(vg=status.vg, lv=volume.name, path=where)
        actions.append(Action("change", ActionKind.RECLAIM, target, why, programs.fstrim(where, status.chunk_size)))
    return tuple(actions)


def _when_full_action(status: health.PoolStatus, why: str) -> tuple[Action, ...]:
    wanted = health.when_full_change(status)
    if not wanted:
        return ()
    argv = commands.lvchange_error_when_full(status.vg, status.pool, wanted == WhenFull.ERROR)
    return (Action("change", ActionKind.WHEN_FULL, Target(vg=status.vg, lv=status.pool), why, argv),)


def plan(status: health.PoolStatus, policy: Policy | None = None) -> Plan:
    """The steps one pass takes on this pool (none when it is already cared for)."""
    policy = policy or Policy()
    wanted, why = health.when_full_wanted(status)
    return Plan(
        vg=status.vg,
        pool=status.pool,
        actions=_reclaim_actions(status, policy) + _when_full_action(status, why),
        layout=None,
        reasons={"when_full": f"{wanted}: {why}", "reclaim_above": format_size(policy.reclaim_above)},
    )


def check_due(policy: Policy, status: health.PoolStatus, last: metadata_check.CheckRecord | None, now: int) -> str:
    """Why this pass runs the full metadata check ("" when it does not). An inactive pool gets none: lvm
    checks it when it activates it."""
    return metadata_check.due(last, now, policy.check_every) if status.active else ""


def backup_due(policy: Policy, last: backup.Backup | None, transaction_id: int | None, now: int) -> str:
    """Why this pass backs the pool up ("" when it does not)."""
    return backup.due(last, transaction_id, now, policy.backup_every) if policy.backup_every > 0 else ""
