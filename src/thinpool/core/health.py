"""A pool's status and the doctor's findings: pure functions of lvm's report and the profile.

Everything here is computed from one ``lvs`` report (commands.status_report) and the text
of the pool's lvm profile; nothing runs a command.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from thinpool.core import backup, sizing
from thinpool.core.lvm import report
from thinpool.core.lvm.commands import MANAGED_TAG
from thinpool.core.model import Filesystem
from thinpool.core.units import MiB, ceil_div, format_size, lvm_size_arg, scale_decimal
from thinpool.errors import ThinpoolError

SEVERITIES = ("ok", "info", "warning", "critical")
OUT_OF_DATA = "out of data space"
# lvm's 9th attr character on a thin pool, and what it means.
HEALTH_FLAGS = {"F": "failed", "D": OUT_OF_DATA, "M": "metadata read-only"}
# lv_health_status spells some of the same problems its own way: one name per problem.
HEALTH_WORDS = {"out_of_data": OUT_OF_DATA, "metadata_read_only": "metadata read-only"}
MAX_COUNTED_STEPS = 99
# Reclaimable space worth a finding and a trim: under it, fstrim's pass is not worth its I/O.
# The target after churn is "mapped at most 2x what the filesystem holds, + 256 MiB".
RECLAIM_ABOVE = 256 * MiB


@dataclass(frozen=True)
class ThinVolume:
    """An lvm thin volume of the pool: what the pool maps for it, and the filesystem on it if mounted."""

    name: str
    size: int
    mapped: int
    managed: bool  # tagged thinpool.managed: thinpool made it and may trim it
    device: str = ""  # "MAJOR:MINOR" while active
    filesystem: Filesystem | None = None

    @property
    def reclaimable(self) -> int:
        """Mapped chunks the filesystem no longer uses (what fstrim could give back to the pool)."""
        if self.filesystem is None:
            return 0
        return max(0, self.mapped - self.filesystem.used)


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
    when_full: str = ""  # "queue" or "error" (lv_when_full)
    volumes: tuple[ThinVolume, ...] = ()
    backup_checked: bool = False  # the pool's backup folder was looked at
    backup_age: int | None = None  # seconds since the newest metadata backup (None: there is none)

    @property
    def reclaimable(self) -> int:
        return sum(volume.reclaimable for volume in self.volumes if volume.managed)

    @property
    def active(self) -> bool:
        return self.attr[4:5] == "a"

    @property
    def can_autoextend(self) -> bool:
        """dmeventd can still grow the pool: monitored, autoextend on, and room for the next step."""
        return self.monitor == "monitored" and self.autoextend_steps > 0

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
        word = HEALTH_WORDS.get(self.health, self.health)
        if word and word not in found:
            found.append(word)
        return tuple(found)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["devices"] = list(self.devices)
        data["autoextend"] = asdict(self.autoextend) if self.autoextend else None
        data["volumes"] = [_volume_dict(volume) for volume in self.volumes]
        data.update(
            reclaimable=self.reclaimable,
            when_full_wanted=when_full_wanted(self)[0],
            data_ratio=round(self.data_ratio, 6),
            metadata_ratio=round(self.metadata_ratio, 6),
            overprovision_ratio=round(self.overprovision_ratio, 6),
            vg_free_bytes=self.vg_free_extents * self.extent_size,
            health_problems=list(self.health_problems),
        )
        return data


def _volume_dict(volume: ThinVolume) -> dict[str, Any]:
    data = asdict(volume)
    data["reclaimable"] = volume.reclaimable
    return data


def when_full_wanted(status: PoolStatus) -> tuple[str, str]:
    """The when-full mode the pool should have, and why.

    Queueing (dm-thin's default) holds writes for no_space_timeout (60 s) so that dmeventd can
    grow the pool under a burst; a pool that cannot grow only makes its writers hang, then fail.
    """
    if status.can_autoextend:
        return "queue", "autoextend can still grow it: writes wait for dmeventd instead of failing"
    return "error", "it cannot grow by itself: writes fail at once instead of hanging 60 s, then failing"


def when_full_change(status: PoolStatus) -> str:
    """The mode to switch the pool to, "" when it has the right one (or is inactive: never monitored then)."""
    wanted, _ = when_full_wanted(status)
    if not status.active or status.when_full not in ("queue", "error") or status.when_full == wanted:
        return ""
    return wanted


def _used(size: int, percent: str) -> int:
    """Bytes in use from lvm's two-decimal percent (exact integer arithmetic)."""
    return scale_decimal(percent or "0", size, 100)


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


def _thin_volumes(rows: list[dict[str, str]], pool: str) -> tuple[ThinVolume, ...]:
    found = []
    for row in rows:
        if row.get("pool_lv") != pool or row.get("segtype") != "thin":
            continue
        size = int(row["lv_size"])
        found.append(
            ThinVolume(
                name=row["lv_name"],
                size=size,
                mapped=_used(size, row.get("data_percent", "")),
                managed=MANAGED_TAG in row.get("lv_tags", "").split(","),
                device=report.kernel_device(row),
            )
        )
    return tuple(found)


def with_filesystems(status: PoolStatus, filesystems: dict[str, Filesystem]) -> PoolStatus:
    """The status with each active thin volume's mounted filesystem (by device number)."""
    volumes = tuple(replace(volume, filesystem=filesystems.get(volume.device)) for volume in status.volumes)
    return replace(status, volumes=volumes)


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
    volumes = _thin_volumes(rows, pool)
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
        thin_count=len(volumes),
        virtual_size=sum(volume.size for volume in volumes),
        extent_size=extent,
        vg_free_extents=free,
        monitor=row.get("seg_monitor", ""),
        health=row.get("lv_health_status", ""),
        profile=row.get("lv_profile", ""),
        devices=tuple(devices),
        autoextend=autoextend,
        autoextend_steps=autoextend_steps(size // extent, metadata_size // extent, free, extent, chunk, autoextend),
        when_full=row.get("lv_when_full", ""),
        volumes=volumes,
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
        if problem == OUT_OF_DATA:
            why, fix = "writes fail or wait", _data_fix(status, sizing.DEFAULT_AUTOEXTEND_PERCENT)
            found.append(Finding("critical", "pool-unhealthy", f"{target} is {problem}: {why}", fix))
            continue
        why = "stop its users first: the repair stops the pool, checks its metadata, repairs or restores a backup"
        found.append(Finding("critical", "metadata-needs-repair", f"{target} is {problem}: {why}",
                             f"thinpool repair {target} --yes"))  # fmt: skip
    return found


def _grow_fix(status: PoolStatus) -> str:
    return f"thinpool grow /dev/sdX --vg {status.vg} --pool {status.pool}"


def _data_fix(status: PoolStatus, percent: int) -> str:
    """lvextend by one autoextend step when the VG has the room; otherwise a new disk (lvextend would fail)."""
    step = sizing.autoextend_step(status.data_size // status.extent_size, percent)
    if step > status.vg_free_extents:
        return _grow_fix(status)
    return f"lvextend -l +{step} {_target(status)}"


def _metadata_fix(status: PoolStatus, size: int) -> str:
    """lvm grows the metadata spare with the metadata: the VG needs room for both."""
    if 2 * ceil_div(size, status.extent_size) > status.vg_free_extents:
        return _grow_fix(status)
    return f"lvextend --poolmetadatasize +{lvm_size_arg(size)} {_target(status)}"


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
    for part, ratio, fix in (
        ("data", status.data_ratio, _data_fix(status, percent)),
        ("metadata", status.metadata_ratio, _metadata_fix(status, status.extent_size * 4)),
    ):
        if part == "data" and OUT_OF_DATA in status.health_problems:
            continue  # the same problem as pool-unhealthy: one finding each
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
                _metadata_fix(status, wanted - status.metadata_size),
            )
        )
    return found


_WHEN_FULL_DOES = {"queue": "queues writes", "error": "fails writes at once"}


def _care_findings(status: PoolStatus, growth_reported: bool) -> list[Finding]:
    """What one ``thinpool maintain`` pass fixes: space to trim, and the when-full mode.

    The when-full mode follows from whether the pool can grow: when an autoextend finding
    already names why it cannot, that finding is the one problem to fix.
    """
    target, found = _target(status), []
    maintain = f"thinpool maintain {target}"
    if status.reclaimable >= RECLAIM_ABOVE:
        found.append(
            Finding(
                "warning",
                "reclaimable-space",
                f"{target} maps {format_size(status.reclaimable)} that its filesystems no longer use: "
                "autoextend grows the pool on garbage until they are trimmed",
                maintain,
            )
        )
    wanted = when_full_change(status)
    if wanted and not growth_reported:
        severity = "warning" if wanted == "error" else "info"
        why = when_full_wanted(status)[1]
        found.append(
            Finding(
                severity, "when-full-policy", f"{target} {_WHEN_FULL_DOES[status.when_full]} when full; {why}", maintain
            )
        )
    return found


def _backup_findings(status: PoolStatus) -> list[Finding]:
    """No backup of the pool's metadata, or none for two days: a metadata loss would take every thin volume."""
    if not status.backup_checked or (status.backup_age is not None and status.backup_age < backup.STALE_AFTER):
        return []
    target = _target(status)
    when = "has no backup" if status.backup_age is None else f"was last backed up {status.backup_age // 3600} hours ago"
    problem = (
        f"{target}'s metadata {when}: if it is lost or damaged, only a backup can map the thin volumes' "
        "data again (thinpool-maintain.timer backs it up when it changes)"
    )
    return [Finding("warning", "metadata-backup-missing" if status.backup_age is None else "metadata-backup-stale",
                    problem, f"thinpool backup {target}")]  # fmt: skip


def diagnose(status: PoolStatus, options: DoctorOptions | None = None) -> list[Finding]:
    """The pool's own findings (the engine adapters add theirs)."""
    options = options or DoctorOptions()
    growth = _autoextend_findings(status)
    care = _care_findings(status, bool(growth)) + _backup_findings(status)
    return _storage_findings(status) + growth + _usage_findings(status, options) + care


def profile_names(report_text: str) -> tuple[str, ...]:
    return tuple(sorted({row["lv_profile"] for row in report.rows(report_text, "lv") if row.get("lv_profile")}))
