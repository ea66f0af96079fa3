"""Apply a Plan: run each action through the runner, check it as its kind says, stop at the first failure.

Every step is safe to repeat: an interrupted apply leaves lvm in a state the planner
reads back, and the next plan only holds the steps still missing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from thinpool.core import crypt
from thinpool.core.envelope import envelope
from thinpool.core.model import Observed, text_digest
from thinpool.core.plan import ABSENT, Action, ActionKind, Check, Plan, problem_after
from thinpool.errors import ThinpoolError
from thinpool.system import files, observe
from thinpool.system.runner import Runner

RESULT_SCHEMA_VERSION = 1
Progress = Callable[[int, int, Action, str], None]


class VerificationFailed(ThinpoolError):
    """A command succeeded but the system does not show what it should have made."""


class StalePlan(ThinpoolError):
    """The system changed since the saved plan was made."""


class FileChanged(ThinpoolError):
    """A file a write acts on is not what the plan was made from."""


class StepStatus(StrEnum):
    """Where one step of a plan is: not started, ran and verified, failed, or never run (a step before it failed)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    NOT_RUN = "not-run"


@dataclass
class StepResult:
    action: Action
    status: StepStatus = StepStatus.PENDING
    seconds: float = 0.0
    error: str = ""
    note: str = ""  # something the operator should know about a step that worked

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.action.op,
            "kind": str(self.action.kind),
            "target": str(self.action.target),
            "argv": list(self.action.argv),
            "status": str(self.status),
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "note": self.note,
        }


@dataclass
class ApplyResult:
    plan: Plan
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.status == StepStatus.DONE for step in self.steps)

    @property
    def changed(self) -> bool:
        """A step ran and was verified: the system is not as it was."""
        return any(step.status == StepStatus.DONE for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return envelope(
            "thinpool-result",
            version=RESULT_SCHEMA_VERSION,
            body={
                "ok": self.ok,
                "vg": self.plan.vg,
                "pool": self.plan.pool,
                "changed": self.changed,
                "steps": [step.to_dict() for step in self.steps],
                "layout": self.plan.layout_dict(),
                "warnings": list(self.plan.warnings),
                "next_steps": list(self.plan.next_steps) if self.ok else [],
            },
        )


def check_fresh(plan: Plan, observed: Observed) -> None:
    """Refuse a saved plan when the devices or VGs it was made against have changed."""
    now = observed.fingerprint()
    if now != plan.fingerprint:
        changed = sorted(key for key in set(now) | set(plan.fingerprint) if now.get(key) != plan.fingerprint.get(key))
        raise StalePlan(
            f"the system changed since the plan was made ({', '.join(changed)} differ)",
            fix="make a new plan with 'thinpool plan --out FILE' and review it",
        )


def _write_target(action: Action, named: Path) -> Path:
    """The file to replace: the path itself, or the target of the link the plan was allowed to follow."""
    if not named.is_symlink():
        if action.through_link:
            raise FileChanged(
                f"{action.path} was a link when the plan was made and is not one now; it was left untouched",
                fix="make a new plan and review it",
            )
        return files.resolve_target(named, follow_symlink=False)
    link = os.readlink(named)
    if not action.through_link or link != action.through_link or not named.exists():
        raise FileChanged(
            f"{action.path} is a symbolic link to {link}, which the plan did not allow; it was left untouched",
            fix="make a new plan (with --follow-links to write the link's target), or replace the link with a file",
        )
    return files.resolve_target(named, follow_symlink=True)


def _check_unchanged(action: Action, path: Path) -> None:
    """A file edited since the plan was made (while apply waited for 'yes') is refused: the edit is kept."""
    if not action.expect:
        return
    now = f"sha256:{text_digest(files.read_exactly(path))}" if path.exists() else ABSENT
    if now != action.expect:
        raise FileChanged(
            f"{action.path} changed after the plan was made; it was left untouched, with the change",
            fix="re-run the command: the new plan starts from the file as it is now",
        )


def _write_file(action: Action, root: Path) -> str:
    """Atomic: a temporary file renamed over the old one, which is kept as a timestamped backup.

    A symbolic link is written through only when the plan says so (--follow-links); the note returned says so.
    """
    named = observe.under(root, action.path)
    path = _write_target(action, named)
    _check_unchanged(action, path)
    note = f"{action.path} is a link: wrote its target {path}, the link is kept" if path != named else ""
    if path.exists():
        if files.read_exactly(path) == action.content:
            return note
        files.keep_backup(path, time.time())
    files.write_atomically(path, action.content, follow_symlink=True)
    if files.read_exactly(path) != action.content:
        raise VerificationFailed(f"{path} does not hold what was written", fix="check the file system")
    return note


def _verify_mount(action: Action, root: Path) -> None:
    where = action.target.path
    if not observe.mounted_source(where, root):
        raise VerificationFailed(f"nothing is mounted on {where}", fix=f"check 'findmnt {where}'")


def _make_tls(action: Action, root: Path) -> str:
    """The CA (when asked), server and client certificates, read back and checked against what was wanted."""
    from thinpool.core import tls as rules
    from thinpool.system import tls

    want = rules.Wanted.from_json(action.content)
    tls.make(root, want, new_ca=want.new_ca, folder=action.path)
    problem = rules.remake_reason(tls.read_files(root, action.path), want, time.time(), renew=False)
    if problem:
        raise VerificationFailed(f"after making the TLS files: {problem}", fix=f"check {action.path}, then re-run")
    return f"client bundle for DOCKER_CERT_PATH: {rules.path(rules.CLIENT, '', action.path)}"


def _make_key(action: Action, root: Path) -> str:
    """The key file from the kernel's random source (never shown); one made meanwhile is kept, not replaced."""
    if files.create_secret(observe.under(root, action.path), os.urandom(crypt.KEY_BYTES)):
        return ""
    return f"{action.path} was there already: kept as it is"


def _run_step(action: Action, plan: Plan, runner: Runner, root: Path) -> str:
    """Run one action and check it; returns a note for the operator ("" when there is nothing to say)."""
    if action.op == "write":
        return _write_file(action, root)
    if action.kind == ActionKind.TLS:
        return _make_tls(action, root)
    if action.kind == ActionKind.KEY_FILE:
        return _make_key(action, root)
    if action.path:
        observe.under(root, action.path).unlink(missing_ok=True)
        return ""
    if action.kind in (ActionKind.POOL_DATA, ActionKind.POOL_METADATA):
        return _grow(action, plan, runner)
    runner.run(action.argv)
    check = action.kind.check
    if check == Check.MOUNT:
        _verify_mount(action, root)
    elif check == Check.LVM_REPORT:
        problem = problem_after(action, plan, observe.read_lvm(runner))
        if problem:
            raise VerificationFailed(
                f"after {' '.join(action.argv)}: {problem}", fix="inspect with 'lvs -a' and re-run thinpool apply"
            )
    return ""


def _grow(action: Action, plan: Plan, runner: Runner) -> str:
    """lvextend to the planned size, unless dmeventd's autoextend got the pool there first: a full, monitored
    pool grows the moment vgextend gives its VG room, before or while this step runs."""
    grown_first = "dmeventd's autoextend had already grown it to at least the planned size"
    if not problem_after(action, plan, observe.read_lvm(runner)):
        return grown_first
    done = runner.run(action.argv, check=False)
    problem = problem_after(action, plan, observe.read_lvm(runner))
    if not problem:
        return "" if done.ok else grown_first
    done.raise_for_status()
    raise VerificationFailed(
        f"after {' '.join(action.argv)}: {problem}", fix="inspect with 'lvs -a' and re-run thinpool grow"
    )


def _failure(error: Exception) -> str:
    if isinstance(error, ThinpoolError):
        return str(error)
    return f"{error}\n  fix: check the path and its permissions, then re-run thinpool apply"


def apply(plan: Plan, runner: Runner, *, root: Path = Path("/"), progress: Progress | None = None) -> ApplyResult:
    """Run ``plan``'s actions in order; the result says what ran, what failed and what did not run."""
    result = ApplyResult(plan, [StepResult(action) for action in plan.actions])
    total = len(result.steps)
    for index, step in enumerate(result.steps, 1):
        if progress:
            progress(index, total, step.action, "start")
        started = time.monotonic()
        try:
            step.note = _run_step(step.action, plan, runner, root)
        except (ThinpoolError, OSError) as error:
            step.status, step.error = StepStatus.FAILED, _failure(error)
            step.seconds = time.monotonic() - started
            for later in result.steps[index:]:
                later.status = StepStatus.NOT_RUN
            if progress:
                progress(index, total, step.action, "failed")
            return result
        step.status, step.seconds = StepStatus.DONE, time.monotonic() - started
        if progress:
            progress(index, total, step.action, "done")
    return result
