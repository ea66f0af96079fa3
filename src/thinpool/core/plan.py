"""A Plan: ordered, typed actions (each with its argv and reason), the layout, and how to show them.

Each action kind carries how its result is checked (``ActionKind.check``), and the pure
checks against a fresh lvm report live here too, beside the kinds: the executor only runs a
command, reads the system again and asks :func:`problem_after`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import Enum, StrEnum
from typing import Any, Literal

from thinpool.core.envelope import envelope
from thinpool.core.model import Observed, WhenFull, text_digest
from thinpool.core.sizing import Layout
from thinpool.core.spec import PoolSpec
from thinpool.core.units import format_size
from thinpool.errors import ThinpoolError

SCHEMA_VERSION = 2
Op = Literal["create", "change", "write", "destroy"]
OPS: tuple[Op, ...] = ("create", "change", "write", "destroy")
_SIGN = {"create": "+", "change": "~", "write": "+", "destroy": "-"}


class SavedPlanError(ThinpoolError):
    """A saved plan file cannot be used as it is."""


ABSENT = "absent"  # Action.expect: the file did not exist when the plan was made


def expect_of(text: str | None) -> str:
    """Action.expect for a write over a file that held ``text`` when the plan was made (None: no file)."""
    return f"sha256:{text_digest(text)}" if text is not None else ABSENT


class Check(Enum):
    """How the executor confirms that an action did what it says."""

    EXIT_STATUS = "the command's own exit status"  # lvm's report does not show the result
    LVM_REPORT = "a fresh lvm report"
    MOUNT = "the mount table"
    FILE = "the file read back"


class ActionKind(StrEnum):
    SIGNATURES = "signatures"
    PHYSICAL_VOLUME = "physical-volume"
    VOLUME_GROUP = "volume-group"
    LVM_PROFILE = "lvm-profile"
    LVM_CONFIG = "lvm-config"  # thinpool's block in lvmlocal.conf (core.boot_check)
    KEY_FILE = "key-file"  # --encrypt's key: random bytes, never shown (core.crypt)
    LUKS_HEADER = "luks-header"
    LUKS_HEADER_BACKUP = "luks-header-backup"
    LUKS_TPM2 = "luks-tpm2"  # a key slot the TPM2 opens (--tpm2)
    LUKS_MAPPING = "luks-mapping"
    CRYPTTAB = "crypttab"
    THIN_POOL = "thin-pool"
    MONITORING = "monitoring"
    STRAY_DM_MAPPING = "stray-dm-mapping"
    INTERRUPTED_LEFTOVER = "interrupted-leftover"
    DEACTIVATION = "deactivation"
    ACTIVATION = "activation"
    POOL_PROFILE = "pool-profile"
    POOL_DATA = "pool-data"
    POOL_METADATA = "pool-metadata"
    POOL_PART = "pool-part"  # a RAID or striped data or metadata LV, before lvconvert makes the pool of it
    THIN_VOLUME = "thin-volume"
    FILESYSTEM = "filesystem"
    MOUNT = "mount"
    FSTAB = "fstab"
    ENGINE_CONFIG = "engine-config"
    SYSTEMD_DROP_IN = "systemd-drop-in"
    SYSTEMD = "systemd"
    RECLAIM = "reclaim"
    WHEN_FULL = "when-full"
    ADOPTION = "adoption"  # thinpool's tags on a pool another tool made (core.adopt)
    TLS = "tls"  # content: the server certificate's names and addresses (core.tls.Wanted, JSON)

    @property
    def check(self) -> Check:
        return _CHECKS.get(self, Check.LVM_REPORT)

    @property
    def shows_content(self) -> bool:
        """Config files are shown in the plan with what they will hold."""
        return self in (
            ActionKind.ENGINE_CONFIG,
            ActionKind.FSTAB,
            ActionKind.SYSTEMD_DROP_IN,
            ActionKind.LVM_CONFIG,
            ActionKind.CRYPTTAB,
        )


_CHECKS = {
    ActionKind.SIGNATURES: Check.EXIT_STATUS,
    ActionKind.STRAY_DM_MAPPING: Check.EXIT_STATUS,
    ActionKind.DEACTIVATION: Check.EXIT_STATUS,
    ActionKind.FILESYSTEM: Check.EXIT_STATUS,
    ActionKind.SYSTEMD: Check.EXIT_STATUS,
    ActionKind.RECLAIM: Check.EXIT_STATUS,  # what it gave back is measured and reported, not required
    ActionKind.MOUNT: Check.MOUNT,
    ActionKind.LVM_PROFILE: Check.FILE,
    ActionKind.LVM_CONFIG: Check.FILE,
    ActionKind.CRYPTTAB: Check.FILE,
    ActionKind.KEY_FILE: Check.FILE,
    ActionKind.LUKS_HEADER: Check.EXIT_STATUS,
    ActionKind.LUKS_HEADER_BACKUP: Check.EXIT_STATUS,
    ActionKind.LUKS_TPM2: Check.EXIT_STATUS,
    ActionKind.LUKS_MAPPING: Check.EXIT_STATUS,
    ActionKind.FSTAB: Check.FILE,
    ActionKind.ENGINE_CONFIG: Check.FILE,
    ActionKind.SYSTEMD_DROP_IN: Check.FILE,
    ActionKind.TLS: Check.FILE,
}


@dataclass(frozen=True)
class Target:
    """What an action acts on: an lvm object (vg, lv), a path (device, mount point) or a name."""

    vg: str = ""
    lv: str = ""
    path: str = ""
    name: str = ""

    def __str__(self) -> str:
        if self.lv:
            return f"{self.vg}/{self.lv}"
        return self.vg or self.path or self.name

    def to_dict(self) -> dict[str, str]:
        return {key: value for key, value in self.__dict__.items() if value}


@dataclass(frozen=True)
class Action:
    op: Op
    kind: ActionKind
    target: Target
    reason: str
    argv: tuple[str, ...] = ()
    path: str = ""  # the file a write or a file removal acts on
    content: str = ""
    # A write's guards: what the file held when the plan was made ("sha256:HEX", ABSENT, or "" unchecked),
    # and, when the path is a symbolic link the operator allowed (--follow-links), what the link said.
    expect: str = ""
    through_link: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "kind": str(self.kind),
            "target": str(self.target),
            "on": self.target.to_dict(),
            "reason": self.reason,
            "argv": list(self.argv),
            "path": self.path,
            "content": self.content,
            "expect": self.expect,
            "through_link": self.through_link,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Action:
        item = _mapping(data, "an action")
        op = item.get("op")
        if op not in OPS:
            raise _invalid(f"action op {op!r} is not one of {', '.join(OPS)}")
        try:
            kind = ActionKind(str(item.get("kind")))
        except ValueError:
            raise _invalid(f"action kind {item.get('kind')!r} is unknown") from None
        on = _mapping(item.get("on", {}), "an action's target")
        argv = item.get("argv", [])
        if not isinstance(argv, list) or not all(isinstance(word, str) for word in argv):
            raise _invalid("an action's argv is not a list of strings")
        return cls(
            op=op,
            kind=kind,
            target=Target(**{key: _text(on, key) for key in ("vg", "lv", "path", "name")}),
            reason=_text(item, "reason"),
            argv=tuple(argv),
            path=_text(item, "path"),
            content=_text(item, "content"),
            expect=_text(item, "expect"),
            through_link=_text(item, "through_link"),
        )


@dataclass(frozen=True)
class PlanLayout:
    """The pool's footprint in its VG, in extents, as the plan leaves it."""

    extent_size: int
    chunk_size: int
    free_extents: int
    data_extents: int
    metadata_extents: int
    spare_extents: int
    headroom_extents: int
    left_extents: int
    redundancy_extents: int = 0  # RAID's second images and metadata subvolumes

    @property
    def data_size(self) -> int:
        return self.data_extents * self.extent_size

    @property
    def metadata_size(self) -> int:
        return self.metadata_extents * self.extent_size

    @classmethod
    def of(cls, layout: Layout) -> PlanLayout:
        return cls(
            extent_size=layout.extent_size,
            chunk_size=layout.chunk_size,
            free_extents=layout.free_extents,
            data_extents=layout.data_extents,
            metadata_extents=layout.metadata_extents,
            spare_extents=layout.spare_extents,
            headroom_extents=layout.headroom_extents,
            left_extents=layout.left_extents,
            redundancy_extents=layout.redundancy_extents,
        )

    def to_dict(self) -> dict[str, int]:
        return {**self.__dict__, "data_size": self.data_size, "metadata_size": self.metadata_size}

    @classmethod
    def from_dict(cls, data: Any) -> PlanLayout:
        item = _mapping(data, "the layout")
        values = {spec.name: item.get(spec.name) for spec in fields(cls)}
        values["redundancy_extents"] = item.get("redundancy_extents", 0)  # plans saved before RAID layouts
        wrong = [name for name, value in values.items() if type(value) is not int]
        if wrong:
            raise _invalid(f"layout field(s) {', '.join(wrong)} are not integers")
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Plan:
    vg: str
    pool: str
    actions: tuple[Action, ...]
    layout: PlanLayout | None
    reasons: dict[str, str]
    warnings: tuple[str, ...] = ()
    spec: PoolSpec = field(default_factory=PoolSpec)
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

    def layout_dict(self) -> dict[str, int]:
        return self.layout.to_dict() if self.layout else {}

    def to_dict(self) -> dict[str, Any]:
        return envelope(
            "thinpool-plan",
            version=SCHEMA_VERSION,
            body={
                "vg": self.vg,
                "pool": self.pool,
                "spec": self.spec.to_dict(),
                "fingerprint": self.fingerprint,
                "layout": self.layout_dict(),
                "metadata_candidates": self.candidates,
                "reasons": self.reasons,
                "warnings": list(self.warnings),
                "next_steps": list(self.next_steps),
                "actions": [action.to_dict() for action in self.actions],
                "summary": self.counts(),
            },
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """A saved plan, checked field by field; an older schema is refused with the way forward."""
        item = _mapping(data, "a thinpool plan")
        if item.get("kind") != "thinpool-plan":
            raise _invalid(f"kind is {item.get('kind')!r}, not 'thinpool-plan'")
        version = item.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SavedPlanError(
                f"the saved plan has schema_version {version!r}; this thinpool reads {SCHEMA_VERSION} only",
                fix="make the plan again with this thinpool: thinpool plan ... --out FILE, and review it",
            )
        actions = item.get("actions")
        if not isinstance(actions, list):
            raise _invalid("actions is not a list")
        layout = item.get("layout")
        return cls(
            vg=_text(item, "vg"),
            pool=_text(item, "pool"),
            actions=tuple(Action.from_dict(action) for action in actions),
            layout=PlanLayout.from_dict(layout) if layout else None,
            reasons={},
            spec=_spec(item.get("spec")),
            fingerprint=_mapping(item.get("fingerprint"), "the fingerprint"),
        )


def _invalid(problem: str) -> SavedPlanError:
    return SavedPlanError(
        f"not a usable thinpool plan: {problem}", fix="make one with 'thinpool plan ... --out FILE' and do not edit it"
    )


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{what} is not a JSON object")
    return value


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key, "")
    if not isinstance(value, str):
        raise _invalid(f"{key} is not a string")
    return value


def _spec(data: Any) -> PoolSpec:
    try:
        return PoolSpec.from_dict(_mapping(data, "the spec"))
    except ThinpoolError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise _invalid(f"the spec is malformed ({type(error).__name__}: {error})") from error


# What each kind's action must have left, read from a fresh lvm report ("" when all is well).
LvmCheck = Callable[[Action, Plan, Observed], str]


def _lv_exists(plan: Plan, observed: Observed, name: str) -> bool:
    vg = observed.vgs.get(plan.vg)
    return vg is not None and vg.lv(name) is not None


def _gone(action: Action, plan: Plan, observed: Observed) -> str:
    target = action.target
    if action.kind == ActionKind.VOLUME_GROUP:
        still_there = target.vg in observed.vgs
    elif action.kind == ActionKind.PHYSICAL_VOLUME:
        still_there = target.path in observed.pvs
    else:
        still_there = bool(target.lv) and _lv_exists(plan, observed, target.lv)
    return f"{target} is still there" if still_there else ""


def _physical_volume(action: Action, plan: Plan, observed: Observed) -> str:  # noqa: ARG001
    pv = observed.pvs.get(action.target.path)
    if pv is None:
        return f"{action.target} is not a physical volume"
    return (
        f"{action.target} is still marked used by a volume group lvm cannot find" if pv.marked_used_without_vg else ""
    )


def _volume_group(action: Action, plan: Plan, observed: Observed) -> str:  # noqa: ARG001
    return "" if plan.vg in observed.vgs else f"volume group {plan.vg} does not exist"


def _thin_volume(action: Action, plan: Plan, observed: Observed) -> str:
    return "" if _lv_exists(plan, observed, action.target.lv) else f"{action.target} does not exist"


def _pool_part(action: Action, plan: Plan, observed: Observed) -> str:
    """A data or metadata LV made for the pool: it exists with the layout asked (or is already the pool's)."""
    vg = observed.vgs.get(plan.vg)
    lv = vg.lv(action.target.lv) if vg else None
    if lv is None:
        pool = vg.lv(plan.pool) if vg else None
        return "" if pool is not None and pool.is_thin_pool else f"{action.target} does not exist"
    if lv.is_thin_pool:
        return ""
    argv = action.argv
    wanted = argv[argv.index("--type") + 1] if "--type" in argv else "linear"
    return "" if lv.segtype == wanted else f"{action.target} is {lv.segtype}, planned {wanted}"


def _pool(action: Action, plan: Plan, observed: Observed) -> str:
    vg = observed.vgs.get(plan.vg)
    pool = vg.lv(plan.pool) if vg else None
    if pool is None or not pool.is_thin_pool:
        return f"{plan.vg}/{plan.pool} is not a thin pool"
    layout, kind = plan.layout, action.kind
    if kind == ActionKind.THIN_POOL and layout is not None:
        expected = (layout.data_size, layout.metadata_size, layout.chunk_size)
        found = (pool.size, pool.metadata_size, pool.chunk_size)
        if found != expected:
            return f"(data, metadata, chunk) is {found}, planned {expected}"
    # A grown pool may be larger than planned, never smaller: a full pool that dmeventd monitors is
    # autoextended the moment vgextend gives its VG room, and thinpool's lvextend +N adds to that.
    if kind == ActionKind.POOL_DATA and layout is not None and pool.size < layout.data_size:
        return f"data is {pool.size} bytes, planned {layout.data_size}"
    if kind == ActionKind.POOL_METADATA and layout is not None and pool.metadata_size < layout.metadata_size:
        return f"metadata is {pool.metadata_size} bytes, planned {layout.metadata_size}"
    if kind == ActionKind.ACTIVATION and not pool.active:
        return "the pool is not active"
    if kind == ActionKind.MONITORING and pool.seg_monitor != "monitored":
        return f"seg_monitor is {pool.seg_monitor!r}, not 'monitored'"
    if kind == ActionKind.POOL_PROFILE and pool.profile != plan.spec.profile_name:
        return f"profile is {pool.profile!r}"
    if kind == ActionKind.WHEN_FULL and pool.when_full != _when_full_set_by(action):
        return f"when full it does {pool.when_full!r}, not {_when_full_set_by(action)!r}"
    if kind == ActionKind.ADOPTION and (missing := set(_tags_added_by(action)) - set(pool.tags)):
        return f"it is not tagged {', '.join(sorted(missing))}"
    return ""


def _tags_added_by(action: Action) -> tuple[str, ...]:
    """lvchange --addtag T1 --addtag T2 VG/LV: the tags it adds."""
    return tuple(word for before, word in zip(action.argv, action.argv[1:], strict=False) if before == "--addtag")


def _when_full_set_by(action: Action) -> str:
    """lvchange --errorwhenfull y|n VG/POOL: the mode lvm then reports."""
    return WhenFull.ERROR if action.argv[action.argv.index("--errorwhenfull") + 1] == "y" else WhenFull.QUEUE


_LVM_CHECKS: dict[ActionKind, LvmCheck] = {
    ActionKind.PHYSICAL_VOLUME: _physical_volume,
    ActionKind.VOLUME_GROUP: _volume_group,
    ActionKind.THIN_VOLUME: _thin_volume,
    ActionKind.POOL_PART: _pool_part,
    **dict.fromkeys(
        (
            ActionKind.THIN_POOL,
            ActionKind.MONITORING,
            ActionKind.POOL_PROFILE,
            ActionKind.ACTIVATION,
            ActionKind.POOL_DATA,
            ActionKind.POOL_METADATA,
            ActionKind.WHEN_FULL,
            ActionKind.ADOPTION,
        ),
        _pool,
    ),
}


def problem_after(action: Action, plan: Plan, observed: Observed) -> str:
    """What is wrong in ``observed`` after ``action`` ran ("" when it did what it says)."""
    if action.op == "destroy":
        return _gone(action, plan, observed)
    check = _LVM_CHECKS.get(action.kind)
    return check(action, plan, observed) if check else ""


def _layout_lines(layout: PlanLayout) -> list[str]:
    extent = layout.extent_size
    rows = [
        ("data", layout.data_extents),
        ("metadata", layout.metadata_extents),
        ("metadata spare", layout.spare_extents),
        ("autoextend room", layout.headroom_extents),
        *([("RAID copies", layout.redundancy_extents)] if layout.redundancy_extents else []),
        ("left free", layout.left_extents),
    ]
    lines = [
        f"Layout of {layout.free_extents} free extents of {format_size(extent)} "
        f"(chunk {format_size(layout.chunk_size)}):"
    ]
    lines += [f"  {name:<16}{count:>12} extents  {format_size(count * extent):>12}" for name, count in rows]
    return lines


def _content_lines(action: Action) -> list[str]:
    """Config files are shown with what they will hold (the first 40 lines)."""
    if not action.kind.shows_content:
        return []
    return [f"      | {line}" for line in action.content.splitlines()[:40]]


def describe(action: Action) -> str:
    """``op kind target``: how an action is named in plans, progress lines and results."""
    return f"{action.op} {action.kind} {action.target}"


def render_text(plan: Plan) -> str:
    """Terraform-like: one block per action, then the layout and a summary line."""
    lines = [f"thinpool plan for {plan.vg}/{plan.pool}", ""]
    for action in plan.actions:
        lines.append(f"  {_SIGN[action.op]} {describe(action)}")
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
