"""Builders every unit test shares: observed state for the planner, lvm's reports for scripted runners, a pool's
status, and lvm's metadata text. Tests import them from here, never from one another."""

import json
import os
from collections.abc import Iterable
from pathlib import Path

from thinpool.core import health
from thinpool.core.findings import Finding
from thinpool.core.health import PoolStatus
from thinpool.core.lvm import commands, report
from thinpool.core.lvm.commands import SEG_OWN_FIELDS
from thinpool.core.model import Device, LogicalVolume, Observed, PhysicalVolume, VolumeGroup
from thinpool.core.plan import Plan, PlanLayout
from thinpool.core.units import GiB, MiB
from thinpool.system.observe import StatVfs
from thinpool.testing import ScriptedRunner


def empty_vg(
    name: str,
    extents: int,
    extent_size: int = 4 * MiB,
    free: int | None = None,
    spare_extents: int = 0,
    lvs: tuple[LogicalVolume, ...] = (),
) -> VolumeGroup:
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
    pv = PhysicalVolume(
        "/dev/sdb",
        vg.name,
        vg.extent_count * vg.extent_size,
        MiB,
        vg.extent_count,
        0,
        vg.extent_count * vg.extent_size + MiB,
    )
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


# A pool's lvm report and status (status, doctor, maintain and metrics tests) ------------------------------

EXTENT = 4 * MiB
PROFILE = commands.profile_content("docker", "thinpool", 80, 20)


def lv_row(name: str, **fields: str) -> dict[str, str]:
    base = {
        "lv_name": name,
        "vg_name": "docker",
        "lv_attr": "-wi-a-----",
        "lv_size": "0",
        "lv_metadata_size": "",
        "chunk_size": "0",
        "data_percent": "",
        "metadata_percent": "",
        "seg_monitor": "",
        "lv_health_status": "",
        "lv_profile": "",
        "pool_lv": "",
        "origin": "",
        "segtype": "linear",
        "lv_active": "active",
        "lv_tags": "",
        "thin_count": "",
        "devices": "",
        "vg_extent_size": str(EXTENT),
        "vg_extent_count": "1023",
        "vg_free_count": "200",
    }
    return {**base, **fields}


def status_report(
    pool: dict[str, str] | None = None, free: int = 200, devices: str = "/dev/vda(12)", thin: int = 2
) -> str:
    fields = {
        "lv_attr": "twi-aotz--",
        "lv_size": str(3 * GiB),
        "lv_metadata_size": str(48 * MiB),
        "chunk_size": str(512 * 1024),
        "data_percent": "50.00",
        "metadata_percent": "10.00",
        "seg_monitor": "monitored",
        "lv_profile": "thinpool-docker-thinpool",
        "segtype": "thin-pool",
        "thin_count": str(thin),
        "lv_tags": commands.MANAGED_TAG,  # made by thinpool
        **(pool or {}),
    }
    rows = [lv_row("thinpool", **fields), lv_row("[thinpool_tdata]", devices=devices, lv_size=str(3 * GiB))]
    rows += [lv_row(f"vol{n}", segtype="thin", pool_lv="thinpool", lv_size=str(2 * GiB)) for n in range(thin)]
    for row in rows:
        row["vg_free_count"] = str(free)
    return json.dumps({"report": [{"lv": rows}]})


def kernel_pool_status(transaction_id: int, mode: str = "rw") -> str:
    """``dmsetup status`` of an active pool's thin-pool target, at ``transaction_id``."""
    return (
        f"0 6291456 thin-pool {transaction_id} 120/12288 3072/6144 - {mode} discard_passdown queue_if_no_space - 1024"
    )


def status(
    pool: dict[str, str] | None = None,
    free: int = 200,
    devices: str = "/dev/vda(12)",
    thin: int = 2,
    profile: str = PROFILE,
) -> health.PoolStatus:
    """The status of docker/thinpool from a report of ``status_report``'s fields; ``profile``'s text, or none."""
    profiles = {"thinpool-docker-thinpool": profile} if profile else {}
    return pool_status(status_report(pool, free, devices, thin), "docker", "thinpool", profiles)


def laid_out(plan: Plan) -> PlanLayout:
    """The layout of a plan that makes or grows a pool; a plan without one fails the test here."""
    assert plan.layout is not None, plan.actions
    return plan.layout


def codes(found: list[Finding]) -> set[str]:
    return {finding.code for finding in found}


CHUNK = 512 * 1024
VOLUME = 100 * GiB


def pool_report(
    *,
    when_full: str = "queue",
    free: int = 200,
    mapped: str = "3.00",
    attr: str = "twi-aotz--",
    health_status: str = "",
    data_percent: str = "50.00",
    tags: str = commands.MANAGED_TAG,
) -> str:
    pool = lv_row(
        "thinpool",
        lv_attr=attr,
        lv_size=str(3 * GiB),
        lv_metadata_size=str(48 * MiB),
        chunk_size=str(CHUNK),
        data_percent=data_percent,
        metadata_percent="10.00",
        seg_monitor="monitored",
        lv_profile="thinpool-docker-thinpool",
        segtype="thin-pool",
        lv_when_full=when_full,
        lv_health_status=health_status,
        lv_tags=commands.MANAGED_TAG,
    )
    data = lv_row("[thinpool_tdata]", devices="/dev/vda(12)", lv_size=str(3 * GiB))
    volume = lv_row(
        "docker-data",
        segtype="thin",
        pool_lv="thinpool",
        lv_size=str(VOLUME),
        data_percent=mapped,
        lv_tags=tags,
        lv_kernel_major="253",
        lv_kernel_minor="4",
    )
    rows = [pool, data, volume]
    for row in rows:
        row["vg_free_count"] = str(free)
    return json.dumps({"report": [{"lv": rows}]})


# The data root's volume, and the bind mount Docker makes of a folder of it (the first mount point is kept).
MOUNTINFO = (
    "30 1 253:4 / /var/lib/docker rw,noatime shared:1 - xfs /dev/mapper/docker-docker--data rw,attr2\n"
    "31 30 253:4 /overlay2 /var/lib/docker/overlay2 rw,noatime - xfs /dev/mapper/docker-docker--data rw,attr2\n"
    "32 1 0:5 / /proc rw - proc proc rw\n"
)


def mount_table(root: Path, used: int) -> StatVfs:
    """The kernel's mount table under ``root`` with the data root's volume mounted, and a statvfs that says
    ``used`` of its VOLUME bytes are used."""
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/mountinfo").write_text(MOUNTINFO)

    def statvfs(path: str) -> os.statvfs_result:
        assert path == str(root / "var/lib/docker")
        free = (VOLUME - used) // 4096
        return os.statvfs_result((4096, 4096, VOLUME // 4096, free, free, 0, 0, 0, 0, 255))

    return statvfs


# lvm's metadata text of a VG with a thin pool (repair and migrate tests) -----------------------------------

VG_TEXT = """\
# Generated by LVM2 version 2.03.16(2) (2022-05-18): Sun Nov 29 04:30:00 2026

contents = "Text Format Volume"
version = 1

docker {
\tid = "abc"
\tseqno = 9
\tlogical_volumes {

\t\tthinpool {
\t\t\tid = "def"
\t\t\tsegment1 {
\t\t\t\ttype = "thin-pool"
\t\t\t\ttransaction_id = 1
\t\t\t\tchunk_size = 1024
\t\t\t}
\t\t}

\t\tother {
\t\t\tsegment1 {
\t\t\t\ttype = "thin-pool"
\t\t\t\ttransaction_id = 1
\t\t\t}
\t\t}
\t}
}
"""


# lvm's report row of VG docker as the repair, backup and migrate tests have it: 1023 extents of 4 MiB, 100 free.
DOCKER_VG_ROW = {
    "vg_name": "docker",
    "vg_uuid": "u",
    "vg_extent_size": "4194304",
    "vg_extent_count": "1023",
    "vg_free_count": "100",
    "vg_seqno": "9",
}


def expect_pool_lvm(runner: ScriptedRunner, *, active: bool = True) -> None:
    """``runner`` answers one lvm report: VG docker (1023 extents of 4 MiB) and its pool at transaction 7."""
    pool = lv_row(
        "thinpool",
        segtype="thin-pool",
        lv_attr="twi-aotz--" if active else "twi---tz--",
        lv_active="active" if active else "",
        transaction_id="7",
    )
    runner.expect(commands.lvm_report(), stdout=lvm_report(lvs=[pool], vgs=[DOCKER_VG_ROW]))
