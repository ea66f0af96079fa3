"""The host's plan: the pool's actions, then the engine's, wired to the pool as the plan leaves it.

Pure (no command runs): ``thinpool plan --disk-size`` imports this, the planner and one adapter only.
"""

from __future__ import annotations

from dataclasses import replace

from thinpool import engines
from thinpool.core import planner
from thinpool.core.model import CryptState, EngineState, LvmLocal, Observed, virtual_disks
from thinpool.core.plan import Action, Plan, expect_of
from thinpool.core.spec import NO_ENGINE, PoolSpec
from thinpool.core.units import format_size
from thinpool.engines.target import EngineChanges, PoolTarget
from thinpool.errors import ThinpoolError


def plan_host(spec: PoolSpec, observed: Observed) -> Plan:
    """The pool's plan and then the engine's, from what was observed."""
    pool_plan = planner.plan(spec, observed)
    if spec.engine == NO_ENGINE:
        return pool_plan
    adapter = engines.adapter(spec.engine)
    target = _target(spec, observed, pool_plan)
    changes: EngineChanges = adapter.plan(spec, target, observed.engine)
    writes = guarded(changes.actions, observed.engine, follow_links=spec.engine_options.follow_links)
    return replace(
        pool_plan,
        actions=pool_plan.actions + writes,
        warnings=pool_plan.warnings + _beyond_growth(adapter.largest_device(spec, target), target) + changes.warnings,
        next_steps=changes.next_steps,
    )


def guarded(actions: tuple[Action, ...], state: EngineState, *, follow_links: bool) -> tuple[Action, ...]:
    """Each write with what its file held when the plan was made (the executor refuses a file changed since),
    and a symbolic link refused unless ``follow_links`` (then its target is written, and the plan says so)."""
    if not state.observed:
        return actions
    return tuple(_guard(action, state, follow_links) if action.op == "write" else action for action in actions)


def _guard(action: Action, state: EngineState, follow_links: bool) -> Action:
    text = state.files.get(action.path)
    expect = expect_of(text)
    if action.path in state.unreadable and action.path not in state.links:
        raise ThinpoolError(
            f"{action.path} cannot be read ({state.unreadable[action.path]}); it was left untouched",
            fix=f"make {action.path} a regular file thinpool can read, then re-run",
        )
    if action.path not in state.links:
        return replace(action, expect=expect)
    link, exists = state.links[action.path]
    if link == "/dev/null":
        raise ThinpoolError(
            f"{action.path} is masked (a link to /dev/null); thinpool will not write it",
            fix=f"unmask it (rm {action.path}; systemctl daemon-reload), then re-run",
        )
    if not exists:
        raise ThinpoolError(
            f"{action.path} is a link to {link}, which does not exist; thinpool will not make files through it",
            fix=f"remove the link, or create {link} first",
        )
    if not follow_links:
        raise ThinpoolError(
            f"{action.path} is a symbolic link to {link}; thinpool does not write through a link unless told to",
            fix=f"pass --follow-links to write {link} (the link is kept), or replace the link with a file",
        )
    reason = f"{action.reason} ({action.path} is a link: its target {link} is written, the link is kept)"
    return replace(action, expect=expect, through_link=link, reason=reason)


def _target(spec: PoolSpec, observed: Observed, pool_plan: Plan) -> PoolTarget:
    """The pool as the engine will find it once ``pool_plan`` ran."""
    vg = observed.vgs.get(spec.vg)
    layout = pool_plan.layout
    data_size = layout.data_size if layout else 0
    room = (layout.headroom_extents + layout.left_extents) * layout.extent_size if layout else 0
    return PoolTarget(spec.vg, spec.pool, data_size, vg.lvs if vg else (), data_size + room)


def _beyond_growth(device: tuple[str, int], target: PoolTarget) -> tuple[str, ...]:
    """A device that may hold more than the pool can ever grow to fills it, whatever autoextend does."""
    what, size = device
    if not target.max_data_size or size <= target.max_data_size:
        return ()
    return (
        f"{what} may grow to {format_size(size)}, more than {target.vg}/{target.pool} can ever hold "
        f"({format_size(target.max_data_size)} once autoextend has used the VG's room): one device can fill "
        "the pool; give the VG more disks (thinpool grow) or a smaller size",
    )


def plan_virtual(
    spec: PoolSpec,
    sizes: list[int],
    names: list[str] | None = None,
    lvm_local: LvmLocal | None = None,
    crypt_state: CryptState | None = None,
) -> Plan:
    """A plan on blank virtual disks: nothing is read from the system (``lvm_local``, ``crypt_state``: what the
    machine it is for holds, when known: a rehearsal's guest)."""
    if spec.devices:
        raise ThinpoolError(
            "--disk-size plans on virtual disks and cannot be mixed with real devices",
            fix="drop either the DEVICE arguments or --disk-size",
        )
    observed = replace(virtual_disks(sizes, names), lvm_local=lvm_local, crypt=crypt_state or CryptState())
    return plan_host(replace(spec, devices=tuple(observed.devices)), observed)
