"""Running a plan from the command line: asking first (the typed answer, or --yes), its progress, its result."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from thinpool.errors import ThinpoolError

if TYPE_CHECKING:
    from thinpool.app.executor import ApplyResult
    from thinpool.core.plan import Action


def confirm(yes: bool, question: str, answer: str) -> None:
    """Return once the change may go on (--yes, or ``answer`` typed); refuse, changing nothing, otherwise."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ThinpoolError("no terminal to confirm on", fix="review the plan, then pass --yes")
    if input(question).strip() != answer:
        raise ThinpoolError("not confirmed; nothing was changed", fix=f"type {answer!r}, or pass --yes")


def show_progress(index: int, total: int, action: Action, state: str) -> None:
    from thinpool.core.plan import describe

    if state != "start":
        print(f"[{index}/{total}] {describe(action)}: {state}", file=sys.stderr)


def render_result(result: ApplyResult) -> str:
    from thinpool.app.executor import StepStatus
    from thinpool.core.plan import describe

    lines = []
    for step in result.steps:
        lines.append(
            f"  {step.status:<8} {describe(step.action)}"
            + (f" ({step.seconds:.1f}s)" if step.status == StepStatus.DONE else "")
        )
        if step.error:
            lines.append("           " + step.error.replace("\n", "\n           "))
        if step.note:
            lines.append(f"           note: {step.note}")
    done = sum(step.status == StepStatus.DONE for step in result.steps)
    verdict = "Apply complete" if result.ok else "Apply FAILED"
    lines.append(f"{verdict}: {done} of {len(result.steps)} changes made.")
    lines += [f"warning: {warning}" for warning in result.plan.warnings]
    lines += [f"then: {step}" for step in result.to_dict()["next_steps"]]
    return "\n".join(lines) + "\n"
