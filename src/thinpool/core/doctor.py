"""The doctor's rules for a pool: pure judgements of its ``PoolStatus``, each a ``Finding`` with its fix.

The engine adapters add their own findings about their configuration (``thinpool.engines``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace

from thinpool.core import backup, owners, sizing
from thinpool.core.findings import Finding, Severity
from thinpool.core.health import OUT_OF_DATA, PoolPart, PoolStatus, when_full_change, when_full_wanted
from thinpool.core.lvm import commands
from thinpool.core.model import WhenFull
from thinpool.core.units import MiB, ceil_div, format_size

# Reclaimable space worth a finding and a trim: under it, fstrim's pass is not worth its I/O.
# The goal after churn: mapped at most 2x what the filesystem holds, + 256 MiB.
RECLAIM_ABOVE = 256 * MiB


@dataclass(frozen=True)
class DoctorOptions:
    workload: sizing.Workload = field(default_factory=sizing.Workload)


def _target(status: PoolStatus) -> str:
    return f"{status.vg}/{status.pool}"


def _layout_findings(status: PoolStatus) -> list[Finding]:
    """RAID parts that lost an image (or need a refresh). Data with no copy is the layout chosen, not a problem:
    plan warns of it and status names it."""
    target, found = _target(status), []
    degraded = [part for part in status.parts if part.problem]
    if degraded:
        problem = "; ".join(_degraded_problem(part) for part in degraded)
        found.append(
            Finding(
                Severity.CRITICAL,
                "raid-degraded",
                f"{target}: {problem}; it runs on the copy that is left, and a second failure loses the pool",
                _degraded_fix(status, degraded),
            )
        )
    return found


def _degraded_problem(part: PoolPart) -> str:
    disks = ", ".join("a missing disk" if device == "[unknown]" else device for device in part.devices)
    return f"its {part.role} ({part.segtype} on {disks or 'its disks'}) is {part.problem}"


def _degraded_fix(status: PoolStatus, degraded: list[PoolPart]) -> str:
    lvs = [f"{status.pool}_t{'data' if part.role == 'data' else 'meta'}" for part in degraded]
    problems = {part.problem for part in degraded}
    if problems == {"refresh needed"}:  # the disk came back: dm-raid takes it again and resyncs it
        return shlex.join(commands.lvchange_refresh(status.vg, status.pool))
    if problems == {"mismatches exist"}:
        return "; ".join(shlex.join(commands.lvchange_syncaction_repair(status.vg, lv)) for lv in lvs)
    steps = [
        commands.vgextend(status.vg, ("/dev/NEW",)),
        *(commands.lvconvert_repair_raid(status.vg, lv) for lv in lvs),
        commands.vgreduce_removemissing(status.vg),
    ]
    return (
        "put in a disk for the one lost (NEW below), then: "
        + "; ".join(shlex.join(step) for step in steps)
        + ". lvm rebuilds each lost image on it and resyncs; then it forgets the missing disk"
    )


def _storage_findings(status: PoolStatus) -> list[Finding]:
    target, found = _target(status), []
    loops = [device for device in status.devices if device.startswith("/dev/loop")]
    if loops:
        found.append(
            Finding(
                Severity.WARNING,
                "loop-device",
                f"{target} lives on loop devices ({', '.join(loops)}): "
                "slow, and gone at reboot unless the files are set up again; move it to a real disk",
                _off_loop_fix(status, loops[0]),
            )
        )
    found += _layout_findings(status)
    for problem in status.health_problems:
        if problem == OUT_OF_DATA:
            why, fix = "writes fail or wait", _data_fix(status, sizing.DEFAULT_AUTOEXTEND_PERCENT)
            found.append(Finding(Severity.CRITICAL, "pool-unhealthy", f"{target} is {problem}: {why}", fix))
            continue
        why = (
            f"{owners.stop_users(status.ownership, target)} first: the repair stops the pool, checks its metadata, "
            "repairs or restores a backup"
        )
        found.append(
            Finding(
                Severity.CRITICAL,
                "metadata-needs-repair",
                f"{target} is {problem}: {why}",
                f"thinpool repair {target} --yes",
            )
        )
    return found


def _lost_metadata(status: PoolStatus) -> list[Finding]:
    """dm-thin's transaction id behind lvm's: the metadata lost its latest changes, or was formatted afresh
    (a zeroed superblock, then an activation) and the thin volumes lvm still lists are gone from it."""
    lvm, kernel = status.transaction_id, status.kernel_transaction_id
    if lvm is None or kernel is None or kernel >= lvm:
        return []
    target = _target(status)
    problem = (
        f"{target}'s metadata is at transaction {kernel} while lvm recorded {lvm}: the metadata lost its "
        f"latest changes{' (it was formatted afresh: its thin volumes are gone from it)' if kernel == 0 else ''}; "
        "stop its users and do not write to it"
    )
    fix = f"thinpool repair {target} --yes (it restores the newest metadata backup when the check cannot mend it)"
    return [Finding(Severity.CRITICAL, "metadata-needs-repair", problem, fix)]


def _inactive_findings(status: PoolStatus) -> list[Finding]:
    """A pool that is not active (at boot: damaged metadata lvm's check refused, a missing disk): nothing on it
    mounts, and an engine whose store is on it stays down. Its other rules need it active: they wait."""
    target = _target(status)
    volumes = ", ".join(volume.name for volume in status.volumes)
    problem = f"{target} is not active: " + (
        f"its thin volumes ({volumes}) cannot be mounted, and an engine whose store is on them stays down"
        if volumes
        else "nothing can be written to it"
    )
    fix = (
        f"thinpool activate (it prints why lvm refuses); if lvm's metadata check failed: thinpool repair {target} --yes"
    )
    return [Finding(Severity.CRITICAL if volumes else Severity.WARNING, "pool-inactive", problem, fix)]


def _off_loop_fix(status: PoolStatus, loop: str) -> str:
    owner = status.ownership.owner
    if owner in (owners.Owner.INCUS, owners.Owner.LXD):
        tool = owner.value
        return (
            f"{tool} storage create NEW lvm source=/dev/sdX, then move each stopped instance: "
            f"{tool} move INSTANCE --storage NEW"
        )
    return f"vgextend {status.vg} /dev/sdX && pvmove {loop} && vgreduce {status.vg} {loop}"


def _data_fix(status: PoolStatus, percent: int) -> str:
    """lvextend by one autoextend step when the VG has the room; otherwise a new disk (lvextend would fail),
    in the owner's words (core.owners)."""
    step = sizing.autoextend_step(status.data_size // status.extent_size, percent)
    return owners.grow_data_fix(status.ownership, status.room, step)


def _metadata_fix(status: PoolStatus, size: int) -> str:
    return owners.grow_metadata_fix(status.ownership, status.room, size)


def _autoextend_findings(status: PoolStatus) -> list[Finding]:
    target, found = _target(status), []
    if status.monitor != "monitored":
        found.append(
            Finding(
                Severity.CRITICAL,
                "not-monitored",
                f"{target} is {status.monitor or 'not monitored'}: dmeventd will never autoextend it",
                f"lvchange --monitor y {target}",
            )
        )
    command, apply = "thinpool apply", f"thinpool apply --vg {status.vg} --pool {status.pool}"
    if status.ownership.owner.has_own_tools:  # thinpool's profile, attached without touching the owner's layout
        command, apply = "thinpool adopt", f"thinpool adopt {target} --autoextend"
    cannot = _cannot_autoextend(status) if status.autoextend is None else None
    if cannot is not None:
        found.append(cannot)
    elif status.autoextend is None:
        found.append(
            Finding(
                Severity.WARNING,
                "no-autoextend-profile",
                f"{target} has no autoextend profile: dmeventd "
                f"falls back to lvm.conf, where the default threshold 100 means never; {command} "
                f"writes and attaches thinpool-{status.vg}-{status.pool}",
                apply,
            )
        )
    elif not status.autoextend.enabled:
        found.append(
            Finding(
                Severity.WARNING,
                "autoextend-off",
                f"{target}'s profile {status.profile} sets threshold 100: the pool never grows by itself",
                f"{apply} --autoextend-threshold 80",
            )
        )
    elif status.autoextend_steps == 0:
        step = sizing.autoextend_step(status.data_size // status.extent_size, status.autoextend.percent)
        found.append(
            Finding(
                Severity.CRITICAL,
                "no-room-to-autoextend",
                f"{status.vg} has {status.vg_free_extents} free "
                f"extents; the next autoextend of {target} needs at least {step}: when the pool "
                f"fills, it will not grow; add a disk (or free space in {status.vg})",
                owners.grow_data_fix(status.ownership, replace(status.room, vg_free_extents=0), step),
            )
        )
    return found


def _cannot_autoextend(status: PoolStatus) -> Finding | None:
    """An owner's pool that fills its VG (Incus makes its pool of 100%FREE): a profile would have nothing to
    extend into, so the finding says how the pool grows instead, and the usage findings watch it fill.
    None for a pool of thinpool's or a person's, or when the VG has room for one step."""
    step = sizing.autoextend_step(status.data_size // status.extent_size, sizing.DEFAULT_AUTOEXTEND_PERCENT)
    if not status.ownership.owner.has_own_tools or status.vg_free_extents >= step:
        return None
    target = _target(status)
    return Finding(
        Severity.INFO,
        "no-autoextend-profile",
        f"{target} has no autoextend profile, and one would not help: {status.vg} has "
        f"{status.vg_free_extents} free extents, one step needs {step}; doctor warns as the pool fills, "
        f"and it grows when {status.vg} does",
        owners.grow_data_fix(status.ownership, replace(status.room, vg_free_extents=0), step),
    )


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
            severity = Severity.CRITICAL if ratio >= 0.95 else Severity.WARNING
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
                Severity.WARNING,
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
                Severity.WARNING,
                "reclaimable-space",
                f"{target} maps {format_size(status.reclaimable)} that its filesystems no longer use: "
                "autoextend grows the pool on garbage until they are trimmed",
                maintain,
            )
        )
    wanted = when_full_change(status)
    if wanted and not growth_reported:
        severity = Severity.WARNING if wanted == WhenFull.ERROR else Severity.INFO
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
    code = "metadata-backup-missing" if status.backup_age is None else "metadata-backup-stale"
    return [Finding(Severity.WARNING, code, problem, f"thinpool backup {target}")]


def _owner_findings(status: PoolStatus) -> list[Finding]:
    """Who made a pool another tool manages, and whether thinpool looks after it (core.owners)."""
    ownership = status.ownership
    if not ownership.owner.has_own_tools:
        return []
    target = _target(status)
    made = f"{target} was made by {ownership.owner.label} ({ownership.evidence})"
    if ownership.adopted:
        problem = f"{made}; thinpool looks after it (backups, repair, alerts) and never changes its volumes"
        return [Finding(Severity.INFO, "pool-owner", problem, f"thinpool adopt {target} --dry-run shows what it does")]
    problem = f"{made}; thinpool does not look after it: the maintain timer does not back up its metadata"
    return [Finding(Severity.INFO, "pool-owner", problem, f"thinpool adopt {target}")]


def diagnose(status: PoolStatus, options: DoctorOptions | None = None) -> list[Finding]:
    """The pool's own findings (the engine adapters add theirs)."""
    options = options or DoctorOptions()
    if not status.active:
        return (
            _storage_findings(status) + _inactive_findings(status) + _backup_findings(status) + _owner_findings(status)
        )
    growth = _autoextend_findings(status)
    care = _care_findings(status, bool(growth)) + _backup_findings(status)
    storage = _storage_findings(status) + _lost_metadata(status)
    return storage + growth + _usage_findings(status, options) + care + _owner_findings(status)
