"""Apply a Plan: run each action through the runner, verify it from a fresh report, stop at the first failure.

Every step is safe to repeat: an interrupted apply leaves lvm in a state the planner
reads back, and the next plan only holds the steps still missing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinpool.core.model import Observed
from thinpool.core.plan import Action, Plan
from thinpool.errors import ThinpoolError
from thinpool.system import inspect
from thinpool.system.runner import Runner

RESULT_SCHEMA_VERSION = 1
Progress = Callable[[int, int, Action, str], None]


class VerificationFailed(ThinpoolError):
    """A command succeeded but the system does not show what it should have made."""


class StalePlan(ThinpoolError):
    """The system changed since the saved plan was made."""


@dataclass
class StepResult:
    action: Action
    status: str = "pending"  # done, failed, not-run
    seconds: float = 0.0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.action.op,
            "kind": self.action.kind,
            "target": self.action.target,
            "argv": list(self.action.argv),
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


@dataclass
class ApplyResult:
    plan: Plan
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.status == "done" for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            "kind": "thinpool-result",
            "ok": self.ok,
            "vg": self.plan.vg,
            "pool": self.plan.pool,
            "changed": any(step.status == "done" for step in self.steps),
            "steps": [step.to_dict() for step in self.steps],
            "layout": self.plan.layout,
            "warnings": list(self.plan.warnings),
            "next_steps": list(self.plan.next_steps) if self.ok else [],
        }


def check_fresh(plan: Plan, observed: Observed) -> None:
    """Refuse a saved plan when the devices or VGs it was made against have changed."""
    now = observed.fingerprint()
    if now != plan.fingerprint:
        changed = sorted(key for key in set(now) | set(plan.fingerprint) if now.get(key) != plan.fingerprint.get(key))
        raise StalePlan(
            f"the system changed since the plan was made ({', '.join(changed)} differ)",
            fix="make a new plan with 'thinpool plan --out FILE' and review it",
        )


def backup_name(path: Path, when: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return path.with_name(f"{path.name}.thinpool-{stamp}.bak")


def _write_file(action: Action, root: Path) -> None:
    """Atomic: a temporary file renamed over the old one, which is kept as a timestamped backup."""
    path = root / action.path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.thinpool-tmp")
    temporary.write_text(action.content)
    if path.exists():
        if path.read_text(errors="replace") == action.content:
            temporary.unlink()
            return
        shutil.copy2(path, backup_name(path, time.time()))
        shutil.copymode(path, temporary)
    temporary.replace(path)
    if path.read_text() != action.content:
        raise VerificationFailed(f"{path} does not hold what was written", fix="check the file system")


# Their command's own exit status is the check: lvm's report does not show them.
UNCHECKED_KINDS = ("filesystem", "systemd", "stray-dm-mapping")


def _verify_mount(action: Action, root: Path) -> None:
    from thinpool.system.engine_state import mounted_source

    if not mounted_source(action.target, root):
        raise VerificationFailed(f"nothing is mounted on {action.target}", fix=f"check 'findmnt {action.target}'")


def _gone_problem(action: Action, plan: Plan, observed: Observed) -> str:
    vg = observed.vgs.get(plan.vg)
    if action.kind == "volume-group":
        still_there = vg is not None
    elif action.kind == "physical-volume":
        still_there = action.target in observed.pvs
    elif action.kind in ("thin-pool", "interrupted-leftover"):
        still_there = vg is not None and vg.lv(action.target.rpartition("/")[2]) is not None
    else:
        still_there = False
    return f"{action.target} is still there" if still_there else ""


def _verify(action: Action, plan: Plan, observed: Observed) -> None:
    vg = observed.vgs.get(plan.vg)
    problem = ""
    if action.op == "destroy":
        problem = _gone_problem(action, plan, observed)
    elif action.kind == "physical-volume" and action.target not in observed.pvs:
        problem = f"{action.target} is not a physical volume"
    elif action.kind == "physical-volume" and observed.pvs[action.target].marked_used_without_vg:
        problem = f"{action.target} is still marked used by a volume group lvm cannot find"
    elif action.kind == "volume-group" and vg is None:
        problem = f"volume group {plan.vg} does not exist"
    elif action.kind == "thin-volume" and (vg is None or vg.lv(action.target.split("/", 1)[1]) is None):
        problem = f"{action.target} does not exist"
    elif action.kind in ("thin-pool", "monitoring", "pool-profile", "activation", "pool-data", "pool-metadata"):
        problem = _pool_problem(action, plan, observed)
    if problem:
        raise VerificationFailed(
            f"after {' '.join(action.argv)}: {problem}", fix="inspect with 'lvs -a' and re-run thinpool apply"
        )


def _pool_problem(action: Action, plan: Plan, observed: Observed) -> str:
    vg = observed.vgs.get(plan.vg)
    pool = vg.lv(plan.pool) if vg else None
    if vg is None or pool is None or not pool.is_thin_pool:
        return f"{plan.vg}/{plan.pool} is not a thin pool"
    layout = plan.layout
    if action.kind == "thin-pool":
        expected = (layout["data_size"], layout["metadata_size"], layout["chunk_size"])
        found = (pool.size, pool.metadata_size, pool.chunk_size)
        if found != expected:
            return f"(data, metadata, chunk) is {found}, planned {expected}"
    if action.kind == "pool-data" and pool.size != layout["data_size"]:
        return f"data is {pool.size} bytes, planned {layout['data_size']}"
    if action.kind == "pool-metadata" and pool.metadata_size != layout["metadata_size"]:
        return f"metadata is {pool.metadata_size} bytes, planned {layout['metadata_size']}"
    if action.kind == "activation" and not pool.active:
        return "the pool is not active"
    if action.kind == "monitoring" and pool.seg_monitor != "monitored":
        return f"seg_monitor is {pool.seg_monitor!r}, not 'monitored'"
    if action.kind == "pool-profile" and pool.profile != plan.spec["profile"]:
        return f"profile is {pool.profile!r}"
    return ""


def apply(plan: Plan, runner: Runner, *, root: Path = Path("/"), progress: Progress | None = None) -> ApplyResult:
    """Run ``plan``'s actions in order; the result says what ran, what failed and what did not run."""
    result = ApplyResult(plan, [StepResult(action) for action in plan.actions])
    total = len(result.steps)
    for index, step in enumerate(result.steps, 1):
        if progress:
            progress(index, total, step.action, "start")
        started = time.monotonic()
        try:
            if step.action.op == "write":
                _write_file(step.action, root)
            elif step.action.path:
                (root / step.action.path.lstrip("/")).unlink(missing_ok=True)
            else:
                runner.run(step.action.argv)
                if step.action.kind == "mount":
                    _verify_mount(step.action, root)
                elif step.action.kind not in UNCHECKED_KINDS:
                    _verify(step.action, plan, inspect.read_lvm(runner))
        except ThinpoolError as error:
            step.status, step.error = "failed", str(error)
            step.seconds = time.monotonic() - started
            for later in result.steps[index:]:
                later.status = "not-run"
            if progress:
                progress(index, total, step.action, "failed")
            return result
        step.status, step.seconds = "done", time.monotonic() - started
        if progress:
            progress(index, total, step.action, "done")
    return result
