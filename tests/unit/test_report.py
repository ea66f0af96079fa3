from pathlib import Path

import pytest

from thinpool.core.lvm import report
from thinpool.core.units import MiB
from thinpool.host import report as host_report


def test_lvs_with_thin_volume_and_snapshot(recorded: Path) -> None:
    lvs = report.parse_lvs((recorded / "lvs-pool-with-thin-and-snapshot.json").read_text(), vg="docker")
    names = [lv.name for lv in lvs]
    assert names.count("[thinpool_tdata]") == 1  # one row per segment, kept once
    pool = next(lv for lv in lvs if lv.bare_name == "thinpool")
    assert pool.is_thin_pool and pool.size == 3774873600 and pool.metadata_size == 64 * MiB
    assert pool.chunk_size == 524288 and pool.seg_monitor == "monitored" and pool.active
    assert pool.profile == "thinpool-docker"
    spare = next(lv for lv in lvs if lv.is_spare)
    assert spare.hidden and spare.size == 64 * MiB
    snap = next(lv for lv in lvs if lv.name == "snap1")
    assert snap.origin == "vol1" and snap.pool_lv == "thinpool" and not snap.active


def test_inactive_pool_has_empty_percentages(recorded: Path) -> None:
    lvs = report.parse_lvs((recorded / "lvs-inactive-pool.json").read_text(), vg="docker")
    pool = next(lv for lv in lvs if lv.bare_name == "thinpool")
    assert pool.data_percent == "" and pool.metadata_percent == "" and not pool.active


def test_pv_marked_used_without_vg(recorded: Path) -> None:
    (pv,) = report.parse_pvs((recorded / "pvs-marked-used-without-vg.json").read_text())
    assert pv.marked_used_without_vg and not pv.in_a_vg and pv.left_by_interrupted_vgcreate
    assert report.assemble_vgs('{"report": [{"vg": []}]}', [pv], []) == {}


def test_vgs_and_pvs_assemble_into_a_volume_group(recorded: Path) -> None:
    pvs = report.parse_pvs((recorded / "pvs.json").read_text())
    assert [pv.pe_count for pv in pvs] == [511, 511]
    assert pvs[0].pe_start == MiB and pvs[0].dev_size == 2147483648
    lvs = report.parse_lvs((recorded / "lvs-pool-with-thin-and-snapshot.json").read_text(), vg="docker")
    groups = report.assemble_vgs((recorded / "vgs.json").read_text(), pvs, lvs)
    vg = groups["docker"]
    assert (vg.extent_size, vg.extent_count, vg.free_count, vg.seqno) == (4 * MiB, 1022, 90, 8)
    assert vg.pv_names == ("/dev/vda", "/dev/vdb")
    assert vg.spare_extents == 16
    assert {lv.name for lv in vg.thin_volumes("thinpool")} == {"vol1", "snap1"}


def test_pv_extent_model_matches_real_pvcreate(recorded: Path) -> None:
    """floor((dev_size - 1 MiB) / extent) is what lvm really gave a 2 GiB disk."""
    from thinpool.core.model import Device

    for pv in report.parse_pvs((recorded / "pvs.json").read_text()):
        assert Device(pv.name, pv.dev_size).extents_as_pv(4 * MiB) == pv.pe_count


def test_missing_vg_report_is_not_json(recorded: Path) -> None:
    with pytest.raises(report.ReportError, match="lv report"):
        report.parse_lvs((recorded / "lvs-missing-vg.stderr").read_text())


def test_lsblk_and_wipefs(recorded: Path) -> None:
    nodes = host_report.parse_lsblk((recorded / "lsblk-selected.json").read_text())
    assert [node["path"] for node in nodes] == ["/dev/vda", "/dev/vdb", "/dev/vdc"]
    assert host_report.parse_wipefs((recorded / "wipefs-ext4.json").read_text()) == ("ext4",)
    assert host_report.parse_wipefs("") == ()
