"""``thinpool adopt``: look after a thin pool another tool made (the rules are in core.adopt and core.owners).

The pool is read as status reads it (one lvm report, its profile, dm-thin's transaction id), the plan is
made from that, and the executor runs it; the preview and the run are the same plan.
"""

from __future__ import annotations

from dataclasses import replace

from thinpool.app import watch
from thinpool.app.context import Context
from thinpool.app.executor import ApplyResult, Progress, apply
from thinpool.core import adopt, sizing
from thinpool.core.spec import PoolSpec
from thinpool.system import observe


def plan(ctx: Context, vg: str, pool: str, autoextend: sizing.Autoextend | None) -> adopt.Adoption:
    if autoextend is not None:
        autoextend.validate()
    status = watch.with_kernel_transaction(ctx, watch.status(ctx, vg, pool))
    profile = PoolSpec(vg=vg, pool=pool).profile_name
    observed = replace(observe.read_lvm(ctx.runner), profiles=observe.read_profiles((profile,), ctx.root))
    return adopt.plan(status, observed, autoextend)


def run(ctx: Context, adoption: adopt.Adoption, progress: Progress | None = None) -> ApplyResult:
    return apply(adoption.plan, ctx.runner, root=ctx.root, progress=progress)
