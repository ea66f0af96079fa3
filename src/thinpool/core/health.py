"""A pool's status and the doctor's findings: pure functions of lvm's report and the profile.

Everything here is computed from one ``lvs`` report (commands.status_report) and the text
of the pool's lvm profile; nothing runs a command.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from thinpool.core import sizing
from thinpool.core.lvm import report
from thinpool.core.units import ceil_div, format_size, lvm_size_arg
from thinpool.errors import ThinpoolError

SEVERITIES = ("ok", "info", "warning", "critical")
# lvm's 9th attr character on a thin pool, and what it means.
HEALTH_FLAGS = {"F": "failed", "D": "out of data space", "M": "metadata read-only"}
MAX_COUNTED_STEPS = 99


class PoolNotFound(ThinpoolError):
    """The VG/POOL asked about is not a thin pool."""


@dataclass(frozen=True)
class PoolStatus:
    vg: str
    pool: str
    attr: str
    data_size: int
    data_used: int
    metadata_size: int
    metadata_used: int
    chunk_size: int
    thin_count: int
    virtual_size: int
    extent_size: int
    vg_free_extents: int
    monitor: str
    health: str
    profile: str
    devices: tuple[str, ...]
    autoextend: sizing.Autoextend | None  # None: no thinpool-readable profile attached
    autoextend_steps: int

    @property
    def data_ratio(self) -> float:
        return self.data_used / self.data_size if self.data_size else 0.0

    @property
    def metadata_ratio(self) -> float:
        return self.metadata_used / self.metadata_size if self.metadata_size else 0.0

    @property
    def overprovision_ratio(self) -> float:
        return self.virtual_size / self.data_size if self.data_size else 0.0

    @property
    def health_problems(self) -> tuple[str, ...]:
        flag = HEALTH_FLAGS.get(self.attr[8:9], "")
        found = [flag] if flag else []
        if self.health and self.health not in found:
            found.append(self.health)
        return tuple(found)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["devices"] = list(self.devices)
        data["autoextend"] = asdict(self.autoextend) if self.autoextend else None
        data.update(
            data_ratio=round(self.data_ratio, 6),
            metadata_ratio=round(self.metadata_ratio, 6),
            overprovision_ratio=round(self.overprovision_ratio, 6),
            vg_free_bytes=self.vg_free_extents * self.extent_size,
            health_problems=list(self.health_problems),
        )
        return data


def _used(size: int, percent: str) -> int:
    """Bytes in use from lvm's two-decimal percent (exact integer arithmetic)."""
    return int(size * Decimal(percent or "0") / 100)


def parse_profile(text: str | None) -> sizing.Autoextend | None:
    """threshold/percent of an lvm profile's activation section (None when it sets no threshold)."""
    if not text:
        return None
    values = dict(re.findall(r"^\s*thin_pool_autoextend_(threshold|percent)\s*=\s*(\d+)", text, re.MULTILINE))
    if "threshold" not in values:
        return None
    return sizing.Autoextend(int(values["threshold"]), int(values.get("percent", sizing.DEFAULT_AUTOEXTEND_PERCENT)))


def autoextend_steps(
    data_extents: int,
    metadata_extents: int,
    free_extents: int,
    extent_size: int,
    chunk_size: int,
    autoextend: sizing.Autoextend | None,
) -> int:
    """How many autoextend steps in a row the VG's free extents still allow (0 when autoextend is off)."""
    if autoextend is None or not autoextend.enabled:
        return 0
    steps = 0
    while steps < MAX_COUNTED_STEPS:
        step = sizing.autoextend_step(data_extents, autoextend.percent)
        growth = sizing.metadata_growth_on_step(data_extents, metadata_extents, step, extent_size, chunk_size)
        need = step + 2 * growth  # data, metadata, and the spare growing with it
        if need > free_extents:
            break
        free_extents -= need
        data_extents += step
        metadata_extents += growth
        steps += 1
    return steps


def pool_status(report_text: str, vg: str, pool: str, profiles: dict[str, str]) -> PoolStatus:
    rows = report.rows(report_text, "lv")
    pool_rows = [row for row in rows if row["lv_name"] == pool and row.get("segtype") == "thin-pool"]
    if not pool_rows:
        names = sorted({row["lv_name"] for row in rows if row.get("segtype") == "thin-pool"})
        raise PoolNotFound(
            f"{vg}/{pool} is not a thin pool" + (f" (thin pools in {vg}: {', '.join(names)})" if names else ""),
            fix="name it as VG/POOL, e.g. thinpool status docker/thinpool",
        )
    row = pool_rows[0]
    extent = int(row["vg_extent_size"])
    size, metadata_size, chunk = int(row["lv_size"]), int(row["lv_metadata_size"] or 0), int(row["chunk_size"])
    thin = {r["lv_name"]: int(r["lv_size"]) for r in rows if r.get("pool_lv") == pool and r.get("segtype") == "thin"}
    devices = sorted(
        {
            part.split("(")[0]
            for r in rows
            if r["lv_name"] == f"[{pool}_tdata]"
            for part in r.get("devices", "").split(",")
            if part
        }
    )
    autoextend = parse_profile(profiles.get(row.get("lv_profile", ""))) if row.get("lv_profile") else None
    free = int(row["vg_free_count"])
    return PoolStatus(
        vg=vg,
        pool=pool,
        attr=row["lv_attr"],
        data_size=size,
        data_used=_used(size, row.get("data_percent", "")),
        metadata_size=metadata_size,
        metadata_used=_used(metadata_size, row.get("metadata_percent", "")),
        chunk_size=chunk,
        thin_count=len(thin),
        virtual_size=sum(thin.values()),
        extent_size=extent,
        vg_free_extents=free,
        monitor=row.get("seg_monitor", ""),
        health=row.get("lv_health_status", ""),
        profile=row.get("lv_profile", ""),
        devices=tuple(devices),
        autoextend=autoextend,
        autoextend_steps=autoextend_steps(size // extent, metadata_size // extent, free, extent, chunk, autoextend),
    )


@dataclass(frozen=True)
class Finding:
    severity: str  # info, warning, critical
    code: str
    problem: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class DoctorOptions:
    workload: sizing.Workload = field(default_factory=sizing.Workload)


def worst(findings: list[Finding]) -> str:
    return max((finding.severity for finding in findings), key=SEVERITIES.index, default="ok")


def _target(status: PoolStatus) -> str:
    return f"{status.vg}/{status.pool}"


def _storage_findings(status: PoolStatus) -> list[Finding]:
    target, found = _target(status), []
    loops = [device for device in status.devices if device.startswith("/dev/loop")]
    if loops:
        found.append(
            Finding(
                "warning",
                "loop-device",
                f"{target} lives on loop devices ({', '.join(loops)}): "
                "slow, and gone at reboot unless the files are set up again; move it to a real disk",
                f"vgextend {status.vg} /dev/sdX && pvmove {loops[0]} && vgreduce {status.vg} {loops[0]}",
            )
        )
    for problem in status.health_problems:
        if problem in ("out of data space", "out_of_data"):
            step = sizing.autoextend_step(status.data_size // status.extent_size, sizing.DEFAULT_AUTOEXTEND_PERCENT)
            why, fix = "writes fail or wait", f"lvextend -l +{step} {target}"
        else:
            why = "stop its users first: the repair needs it inactive"
            fix = f"lvchange -an {target} && lvconvert --repair {target} && lvchange -ay {target}"
        found.append(Finding("critical", "pool-unhealthy", f"{target} is {problem}: {why}", fix))
    return found


def _autoextend_findings(status: PoolStatus) -> list[Finding]:
    target, found = _target(status), []
    if status.monitor != "monitored":
        found.append(
            Finding(
                "critical",
                "not-monitored",
                f"{target} is {status.monitor or 'not monitored'}: dmeventd will never autoextend it",
                f"lvchange --monitor y {target}",
            )
        )
    apply = f"thinpool apply --vg {status.vg} --pool {status.pool}"
    if status.autoextend is None:
        found.append(
            Finding(
                "warning",
                "no-autoextend-profile",
                f"{target} has no autoextend profile: dmeventd "
                "falls back to lvm.conf, where the default threshold 100 means never; thinpool apply writes "
                f"and attaches thinpool-{status.vg}-{status.pool}",
                apply,
            )
        )
    elif not status.autoextend.enabled:
        found.append(
            Finding(
                "warning",
                "autoextend-off",
                f"{target}'s profile {status.profile} sets threshold 100: the pool never grows by itself",
                f"{apply} --autoextend-threshold 80",
            )
        )
    elif status.autoextend_steps == 0:
        step = sizing.autoextend_step(status.data_size // status.extent_size, status.autoextend.percent)
        found.append(
            Finding(
                "critical",
                "no-room-to-autoextend",
                f"{status.vg} has {status.vg_free_extents} free "
                f"extents; the next autoextend of {target} needs at least {step}: when the pool "
                f"fills, it will not grow; add a disk (or free space in {status.vg})",
                f"thinpool grow /dev/sdX --vg {status.vg} --pool {status.pool}",
            )
        )
    return found


def _usage_findings(status: PoolStatus, options: DoctorOptions) -> list[Finding]:
    target, found = _target(status), []
    enabled = status.autoextend is not None and status.autoextend.enabled
    threshold = status.autoextend.threshold if status.autoextend and enabled else sizing.DEFAULT_AUTOEXTEND_THRESHOLD
    percent = status.autoextend.percent if status.autoextend and enabled else sizing.DEFAULT_AUTOEXTEND_PERCENT
    step = sizing.autoextend_step(status.data_size // status.extent_size, percent)
    for part, ratio, fix in (
        ("data", status.data_ratio, f"lvextend -l +{step} {target}"),
        (
            "metadata",
            status.metadata_ratio,
            f"lvextend --poolmetadatasize +{lvm_size_arg(status.extent_size * 4)} {target}",
        ),
    ):
        if ratio * 100 >= threshold:
            severity = "critical" if ratio >= 0.95 else "warning"
            found.append(
                Finding(
                    severity,
                    f"{part}-over-threshold",
                    f"{target} {part} is {ratio:.0%} full (threshold {threshold}%)",
                    fix,
                )
            )
    wanted = sizing.workload_metadata_estimate(status.data_size, status.chunk_size, options.workload)
    wanted = ceil_div(min(wanted, sizing.METADATA_MAX), status.extent_size) * status.extent_size
    if status.metadata_size < wanted:
        found.append(
            Finding(
                "warning",
                "metadata-below-model",
                f"{target} metadata is "
                f"{format_size(status.metadata_size)}; {options.workload.max_thin_devices} thin devices "
                f"on {format_size(status.data_size)} want {format_size(wanted)}: it may run out "
                "(the pool then goes read-only)",
                f"lvextend --poolmetadatasize +{lvm_size_arg(wanted - status.metadata_size)} {target}",
            )
        )
    return found


def diagnose(status: PoolStatus, options: DoctorOptions | None = None) -> list[Finding]:
    """The pool's own findings (the engine adapters add theirs)."""
    options = options or DoctorOptions()
    return _storage_findings(status) + _autoextend_findings(status) + _usage_findings(status, options)


def profile_names(report_text: str) -> tuple[str, ...]:
    return tuple(sorted({row["lv_profile"] for row in report.rows(report_text, "lv") if row.get("lv_profile")}))
