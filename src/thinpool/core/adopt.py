"""``thinpool adopt``, pure: the plan that makes thinpool look after a thin pool another tool made.

Adopting adds thinpool's tags to the pool LV, and nothing else unless asked: ``thinpool.adopted`` (the
maintain timer backs its metadata up; doctor names its owner), and ``thinpool.when-full`` when the owner
left the when-full mode at lvm's default (maintain may then set it). With an autoextend policy it also
writes and attaches thinpool's profile and switches monitoring on. The owner's volumes, names and sizes
are never touched; running it again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from thinpool.core import owners, planner, sizing
from thinpool.core.health import PoolStatus
from thinpool.core.lvm import commands
from thinpool.core.model import Observed, WhenFull
from thinpool.core.plan import Action, ActionKind, Plan, Target
from thinpool.core.spec import PoolSpec
from thinpool.errors import ThinpoolError


class AdoptRefused(ThinpoolError):
    """The pool cannot be adopted as it is (thinpool's own, or inactive)."""


@dataclass(frozen=True)
class Adoption:
    """The plan, and who owns the pool and what thinpool does for it once the plan has run."""

    plan: Plan
    ownership: owners.Ownership
    duties: tuple[owners.Duty, ...]


def plan(status: PoolStatus, observed: Observed, autoextend: sizing.Autoextend | None = None) -> Adoption:
    """Adopt ``status``'s pool; ``autoextend``: also arm it with thinpool's profile (None: leave it be)."""
    ownership = status.ownership
    _refuse(status, ownership)
    tags = _new_tags(status, ownership)
    spec = PoolSpec(vg=status.vg, pool=status.pool, autoextend=autoextend or sizing.Autoextend())
    actions = [*_tag_action(status, tags), *(_autoextend_actions(status, spec, observed) if autoextend else ())]
    adopted = replace(ownership, adopted=True, when_full_ours=ownership.when_full_ours or owners.WHEN_FULL_TAG in tags)
    reasons = {"owner": f"{ownership.owner.label}: {ownership.evidence}"}
    made = Plan(status.vg, status.pool, tuple(actions), None, reasons, spec=spec)
    return Adoption(made, adopted, owners.duties(adopted, autoextend is not None or status.autoextend is not None))


def _refuse(status: PoolStatus, ownership: owners.Ownership) -> None:
    target = f"{status.vg}/{status.pool}"
    if ownership.owner == owners.Owner.THINPOOL:
        raise AdoptRefused(
            f"{target} was made by thinpool ({ownership.evidence}): it is looked after already",
            fix=f"status, doctor, maintain and backup work on it as it is: thinpool doctor {target}",
        )
    if not status.active:
        raise AdoptRefused(
            f"{target} is not active: its when-full mode cannot be read, and its metadata cannot be backed up",
            fix=f"activate it (lvchange -ay {target}), or repair it first (thinpool repair {target} --yes)",
        )


def _new_tags(status: PoolStatus, ownership: owners.Ownership) -> tuple[str, ...]:
    if ownership.adopted:
        return ()
    when_full = (owners.WHEN_FULL_TAG,) if status.when_full == WhenFull.QUEUE else ()
    return (owners.ADOPTED_TAG, *when_full)


def _tag_action(status: PoolStatus, tags: tuple[str, ...]) -> tuple[Action, ...]:
    if not tags:
        return ()
    why = "records that thinpool looks after the pool" + (
        "; the owner left the when-full mode at lvm's default, so maintain may set it"
        if owners.WHEN_FULL_TAG in tags
        else "; the owner chose the when-full mode: it is kept"
    )
    target = Target(vg=status.vg, lv=status.pool)
    return (
        Action("change", ActionKind.ADOPTION, target, why, commands.lvchange_addtags(status.vg, status.pool, tags)),
    )


def _autoextend_actions(status: PoolStatus, spec: PoolSpec, observed: Observed) -> tuple[Action, ...]:
    target = Target(vg=status.vg, lv=status.pool)
    actions = list(planner.profile_action(spec, observed))
    if status.profile != spec.profile_name:
        argv = commands.lvchange_profile(status.vg, status.pool, spec.profile_name)
        actions.append(Action("change", ActionKind.POOL_PROFILE, target, "attach the autoextend policy", argv))
    if status.monitor != "monitored":
        argv = commands.lvchange_monitor(status.vg, status.pool)
        actions.append(
            Action("change", ActionKind.MONITORING, target, "dmeventd only autoextends a monitored pool", argv)
        )
    return tuple(actions)
