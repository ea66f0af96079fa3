"""Small builders of observed state for planner tests, and of lvm's report for scripted runners."""

import json
from collections.abc import Iterable

from thinpool.core import health
from thinpool.core.health import PoolStatus
from thinpool.core.lvm import report
from thinpool.core.lvm.commands import SEG_OWN_FIELDS
from thinpool.core.model import Device, LogicalVolume, Observed, PhysicalVolume, VolumeGroup
from thinpool.core.units import MiB


def empty_vg(name: str, extents: int, extent_size: int = 4 * MiB, free: int | None = None,
             spare_extents: int = 0, lvs: tuple[LogicalVolume, ...] = ()) -> VolumeGroup:  # fmt: skip
    spare = (
        (LogicalVolume("[lvol0_pmspare]", name, "ewi-------", spare_extents * extent_size, "linear"),)
        if spare_extents
        else ()
    )
    return VolumeGroup(
        name=name,
        extent_size=extent_size,
        extent_count=extents,
        free_count=extents if free is None else free,
        seqno=3,
        pv_names=("/dev/sdb",),
        lvs=spare + lvs,
    )


def observed_with_vg(vg: VolumeGroup, **extra: object) -> Observed:
    pv = PhysicalVolume("/dev/sdb", vg.name, vg.extent_count * vg.extent_size, MiB, vg.extent_count, 0,
                        vg.extent_count * vg.extent_size + MiB)  # fmt: skip
    return Observed(pvs={"/dev/sdb": pv}, vgs={vg.name: vg}, **extra)  # type: ignore[arg-type]


def disk(path: str, size: int, **fields: object) -> Device:
    return Device(path, size, **fields)  # type: ignore[arg-type]


def lvm_report(
    *, pvs: Iterable[dict[str, str]] = (), lvs: Iterable[dict[str, str]] = (), vgs: Iterable[dict[str, str]] = ()
) -> str:
    """What ``lvm fullreport`` (commands.lvm_report()) prints for these rows, shaped as lvm shapes it: each LV's
    segment fields in a "seg" row joined by lv_uuid, not in its own row."""
    own, segments = [], []
    for index, row in enumerate(lvs):
        uuid = row.get("lv_uuid") or f"lv-uuid-{index}"
        own.append({key: value for key, value in row.items() if key not in SEG_OWN_FIELDS} | {"lv_uuid": uuid})
        segments.append({key: value for key, value in row.items() if key in SEG_OWN_FIELDS} | {"lv_uuid": uuid})
    return json.dumps({"report": [{"vg": list(vgs), "pv": list(pvs), "lv": own, "seg": segments}]})


def pool_status(report_text: str, vg: str, pool: str, profiles: dict[str, str]) -> PoolStatus:
    """A pool's status as observation reads it: lvm's report, then the profile the pool names."""
    status = report.pool_status(report_text, vg, pool)
    return health.with_profile(status, profiles.get(status.profile)) if status.profile else status
