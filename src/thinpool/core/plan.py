"""A Plan: ordered actions (each with its argv and reason), the layout, and how to show them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from thinpool.core.units import format_size

SCHEMA_VERSION = 1
Op = Literal["create", "change", "write", "destroy"]
_SIGN = {"create": "+", "change": "~", "write": "+", "destroy": "-"}


@dataclass(frozen=True)
class Action:
    op: Op
    kind: str
    target: str
    reason: str
    argv: tuple[str, ...] = ()
    path: str = ""
    content: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Action:
        return cls(**{**data, "argv": tuple(data.get("argv", ()))})


@dataclass(frozen=True)
class Plan:
    vg: str
    pool: str
    actions: tuple[Action, ...]
    layout: dict[str, int]
    reasons: dict[str, str]
    warnings: tuple[str, ...] = ()
    spec: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)
    next_steps: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def counts(self) -> dict[str, int]:
        return {
            "add": sum(action.op in ("create", "write") for action in self.actions),
            "change": sum(action.op == "change" for action in self.actions),
            "destroy": sum(action.op == "destroy" for action in self.actions),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "thinpool-plan",
            "vg": self.vg,
            "pool": self.pool,
            "spec": self.spec,
            "fingerprint": self.fingerprint,
            "layout": self.layout,
            "metadata_candidates": self.candidates,
            "reasons": self.reasons,
            "warnings": list(self.warnings),
            "next_steps": list(self.next_steps),
            "actions": [action.to_dict() for action in self.actions],
            "summary": self.counts(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("kind") != "thinpool-plan" or data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"not a thinpool plan of schema {SCHEMA_VERSION} "
                f"(kind={data.get('kind')!r}, schema_version={data.get('schema_version')!r})"
            )
        return cls(
            vg=data["vg"],
            pool=data["pool"],
            actions=tuple(Action.from_dict(item) for item in data["actions"]),
            layout=data["layout"],
            reasons=data["reasons"],
            warnings=tuple(data["warnings"]),
            spec=data["spec"],
            fingerprint=data["fingerprint"],
            candidates=data.get("metadata_candidates", {}),
            next_steps=tuple(data.get("next_steps", ())),
        )


def _layout_lines(layout: dict[str, int]) -> list[str]:
    extent = layout["extent_size"]
    rows = [
        ("data", layout["data_extents"]),
        ("metadata", layout["metadata_extents"]),
        ("metadata spare", layout["spare_extents"]),
        ("autoextend room", layout["headroom_extents"]),
        ("left free", layout["left_extents"]),
    ]
    lines = [
        f"Layout of {layout['free_extents']} free extents of {format_size(extent)} "
        f"(chunk {format_size(layout['chunk_size'])}):"
    ]
    lines += [f"  {name:<16}{count:>12} extents  {format_size(count * extent):>12}" for name, count in rows]
    return lines


def _content_lines(action: Action) -> list[str]:
    """Config files are shown with what they will hold (the first 40 lines)."""
    if action.kind not in ("engine-config", "fstab", "systemd-drop-in"):
        return []
    return [f"      | {line}" for line in action.content.splitlines()[:40]]


def render_text(plan: Plan) -> str:
    """Terraform-like: one block per action, then the layout and a summary line."""
    lines = [f"thinpool plan for {plan.vg}/{plan.pool}", ""]
    for action in plan.actions:
        lines.append(f"  {_SIGN[action.op]} {action.op} {action.kind} {action.target}")
        if action.argv:
            lines.append("      $ " + " ".join(action.argv))
        if action.path:
            lines.append(f"      -> {action.path}")
            lines += _content_lines(action)
        lines.append(f"      why: {action.reason}")
    if not plan.actions:
        lines.append("  No changes: the pool already matches the spec.")
    lines.append("")
    if plan.layout:
        lines += _layout_lines(plan.layout)
        lines.append("")
    for name, reason in plan.reasons.items():
        lines.append(f"  {name}: {reason}")
    if plan.reasons:
        lines.append("")
    lines += [f"warning: {warning}" for warning in plan.warnings]
    lines += [f"then: {step}" for step in plan.next_steps]
    counts = plan.counts()
    lines.append(f"Plan: {counts['add']} to add, {counts['change']} to change, {counts['destroy']} to destroy.")
    return "\n".join(lines) + "\n"
