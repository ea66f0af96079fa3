"""The full metadata check maintain runs weekly, and what its time says of the check at boot. Pure.

lvm runs ``thin_check`` on a pool's metadata each time it activates the pool, boots included, with
lvm.conf's ``global/thin_check_options``. The full check walks every thin device's mapping tree, so
its time grows with the metadata in use: with many snapshots it has held boots for minutes. lvm's
``--skip-mappings`` checks the superblock, the device tree and the space maps only, in a fraction of
the time (docs/benchmarks: thin-check).

maintain runs the full check where it costs no boot: on a metadata snapshot of the live pool
(``thin_check --metadata-snap``, between ``reserve_metadata_snap`` and ``release_metadata_snap``),
every ``CHECK_EVERY`` seconds, and records when it ran, how long it took on how much metadata, and
what it found. doctor scales that time to the pool now (its metadata in use and its thin devices):
over the boot budget, with the full check still configured for activation, it warns; a check that
found errors is critical.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from thinpool.core.findings import Finding, Severity
from thinpool.core.lvm.commands import dm_name
from thinpool.core.units import MiB

CHECK_ROOT = "/var/lib/thinpool/checks"
CHECK_EVERY = 7 * 86400  # a week
BOOT_BUDGET = 60  # seconds a full check at activation may take before doctor warns
FAST_OPTIONS = ("--skip-mappings", "--super-block-only")  # thin_check options that skip the mapping trees
SAID_LIMIT = 2000  # characters of thin_check's output kept in the record


@dataclass(frozen=True)
class CheckRecord:
    """One full check: when (Unix seconds), its time, the metadata in use then, and its verdict."""

    when: int
    millis: int
    metadata_used: int  # bytes
    ok: bool
    said: str  # thin_check's output, its last SAID_LIMIT characters ("" when it said nothing)
    tool: str = ""  # thin_check -V
    thin_devices: int = 0  # the pool's thin devices then (lvm's count)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckRecord:
        return cls(
            when=int(data["when"]),
            millis=int(data["millis"]),
            metadata_used=int(data["metadata_used"]),
            ok=bool(data["ok"]),
            said=str(data.get("said", "")),
            tool=str(data.get("tool", "")),
            thin_devices=int(data.get("thin_devices", 0)),
        )


def record_path(vg: str, pool: str) -> str:
    return f"{CHECK_ROOT}/{dm_name(vg, pool)}.json"


def read_record(text: str) -> CheckRecord | None:
    """The record a maintain pass wrote; None when it cannot be read (a check is then due again)."""
    try:
        return CheckRecord.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None


def due(last: CheckRecord | None, now: int, every: int = CHECK_EVERY) -> str:
    """Why this pass runs the full check ("" when it does not)."""
    if every <= 0:
        return ""
    if last is None:
        return "the pool's metadata has never had a full check here"
    if now - last.when >= every:
        return f"the last full check ran {(now - last.when) // 86400} days ago"
    return ""


def projected_millis(last: CheckRecord, metadata_used: int, thin_devices: int = 0) -> int:
    """The full check's time now, scaled from the last one by the larger growth: of the metadata in use, or
    of the thin devices (it walks each device's mappings, shared ones included: 4 times the devices took
    4 times as long on 1.7 times the metadata, docs/benchmarks)."""
    by_metadata = max(metadata_used, 1) / max(last.metadata_used, 1)
    by_devices = thin_devices / last.thin_devices if last.thin_devices and thin_devices else 0.0
    return int(last.millis * max(by_metadata, by_devices))


def parse_options(lvmconfig_output: str) -> tuple[str, ...] | None:
    """``thin_check_options=["-q","--clear-needs-check-flag"]`` as lvmconfig prints it; None if unreadable."""
    value = lvmconfig_output.strip().partition("=")[2] or lvmconfig_output.strip()
    try:
        found = json.loads(value)
    except ValueError:
        return None
    return tuple(str(item) for item in found) if isinstance(found, list) else None


def fast_at_boot(options: tuple[str, ...] | None) -> bool:
    return options is not None and any(option in FAST_OPTIONS for option in options)


def findings(
    vg: str,
    pool: str,
    last: CheckRecord | None,
    metadata_used: int,
    options: tuple[str, ...] | None,
    budget: int = BOOT_BUDGET,
    thin_devices: int = 0,
) -> list[Finding]:
    """What the last full check says: errors it found, or a boot the full check would hold too long."""
    target = f"{vg}/{pool}"
    if last is None:
        return []
    if not last.ok:
        return [
            Finding(
                Severity.CRITICAL,
                "metadata-check-failed",
                f"the full thin_check of {target}'s metadata found errors ({last.said.strip() or 'no message'}): "
                "lvm will refuse to activate the pool at its next activation",
                f"stop what uses {target}, then thinpool repair {target} --yes",
            )
        ]
    projected = projected_millis(last, metadata_used, thin_devices)
    if projected <= budget * 1000 or fast_at_boot(options):
        return []
    return [
        Finding(
            Severity.WARNING,
            "boot-check-over-budget",
            f"a full thin_check of {target}'s metadata took {last.millis / 1000:.1f} s on "
            f"{last.metadata_used // MiB} MiB and {last.thin_devices} thin devices; on the {metadata_used // MiB} "
            f"MiB and {thin_devices} thin devices now lvm's check at "
            f"activation would take about {projected // 1000} s, over the {budget} s budget, and every boot waits "
            f"for it (thin_check_options: {', '.join(options) if options else 'unknown'})",
            "re-run thinpool apply with --boot-check fast (its default), which writes the fast check in "
            f"/etc/lvm/lvmlocal.conf; or add it there yourself: {fast_setting(options)} (maintain runs the full "
            "check weekly on a metadata snapshot)",
        )
    ]


def fast_options_line(options: tuple[str, ...] | None) -> str:
    """``thin_check_options = [ ... ]`` for the fast check: the host's options (lvm's ``-q`` when unknown),
    plus --skip-mappings."""
    kept = tuple(option for option in options or ("-q",) if option not in FAST_OPTIONS)
    quoted = ", ".join(f'"{option}"' for option in (*kept, "--skip-mappings"))
    return f"thin_check_options = [ {quoted} ]"


def fast_setting(options: tuple[str, ...] | None) -> str:
    """lvm.conf's setting for the fast check at activation, as one line."""
    return f"global {{ {fast_options_line(options)} }}"
