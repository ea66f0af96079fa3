from pathlib import Path

import pytest

from thinpool.core.lvm import commands, report
from thinpool.core.programs import output as program_output
from thinpool.core.units import KiB, MiB


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
    nodes = program_output.parse_lsblk((recorded / "lsblk-selected.json").read_text())
    assert [node["path"] for node in nodes] == ["/dev/vda", "/dev/vdb", "/dev/vdc"]
    assert program_output.parse_wipefs((recorded / "wipefs-ext4.json").read_text()) == ("ext4",)
    assert program_output.parse_wipefs("") == ()


def test_one_fullreport_reads_what_pvs_lvs_and_vgs_read(recorded: Path) -> None:
    """``lvm fullreport`` as thinpool asks for it (commands.lvm_report): VG docker on vda+vdb with a pool whose data
    spans both, a thin volume and its snapshot; an orphan PV; a PV left by a killed vgcreate; a PV whose VG's
    metadata lives on a wiped disk. Segment fields come from the "seg" rows, joined by lv_uuid."""
    from thinpool.system import observe
    from thinpool.testing import ScriptedRunner

    runner = ScriptedRunner()
    runner.expect(commands.lvm_report(), stdout=(recorded / "fullreport-thinpool.json").read_text())
    observed = observe.read_lvm(runner)
    assert runner.exhausted
    assert sorted(observed.pvs) == ["/dev/vda", "/dev/vdb", "/dev/vdc", "/dev/vdd", "/dev/vdf"]
    assert not observed.pvs["/dev/vdc"].in_a_vg and observed.pvs["/dev/vdc"].pe_count == 0
    assert observed.pvs["/dev/vdd"].left_by_interrupted_vgcreate  # metadata area in use, no VG in it
    assert observed.pvs["/dev/vdf"].marked_used_without_vg and not observed.pvs["/dev/vdf"].left_by_interrupted_vgcreate
    vg = observed.vgs["docker"]
    assert (vg.extent_count, vg.free_count, vg.seqno, vg.pv_names) == (1022, 290, 8, ("/dev/vda", "/dev/vdb"))
    assert vg.spare_extents == 16 and [lv.name for lv in vg.lvs].count("[thinpool_tdata]") == 1
    pool = vg.lv("thinpool")
    assert pool is not None and pool.is_thin_pool and pool.chunk_size == 512 * KiB
    assert (pool.seg_monitor, pool.transaction_id, pool.metadata_size, pool.active) == ("monitored", 2, 64 * MiB, True)
    volumes = {lv.name: lv for lv in vg.thin_volumes("thinpool")}
    assert (volumes["vol1"].thin_id, volumes["snap1"].thin_id, volumes["snap1"].origin) == (1, 2, "vol1")
    assert volumes["vol1"].kernel_device == "253:4" and not volumes["snap1"].active


def test_fullreport_with_lvms_default_fields_parses_too(recorded: Path) -> None:
    lvs = report.parse_lvs((recorded / "fullreport.json").read_text())
    pool = next(lv for lv in lvs if lv.name == "thinpool")
    assert (pool.segtype, pool.chunk_size, pool.transaction_id, pool.vg_name) == ("thin-pool", 512 * KiB, 2, "")
