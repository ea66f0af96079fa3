"""SIGKILL thinpool apply (and the lvm command it is running) at each step; a re-run must converge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from thinpool.core import planner
from thinpool.core.model import virtual_disks
from thinpool.core.spec import PoolSpec
from thinpool.core.units import GiB
from thinpool.rehearse.vm import SHARE_MOUNT, VM

from .helpers import kill_at_command, lvs, thinpool_json, vg_row

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

# The first 8 KiB of a 4 GiB disk whose vgcreate was killed after marking the PV used
# (see the fixtures' README): written onto a blank /dev/vda it recreates that state exactly.
MARKED_USED_HEAD = Path(__file__).parents[1] / "fixtures/lvm-2.03.16/pv-marked-used-without-vg.head8k.gz"
EXPECTED_LVS = {"thinpool", "thinpool_tdata", "thinpool_tmeta", "lvol0_pmspare"}


@pytest.mark.parametrize(
    ("command", "delay"),
    [
        ("pvcreate", 0.0),
        ("vgcreate", 0.0),
        ("lvcreate", 0.0),
        pytest.param("lvcreate", 0.1, marks=pytest.mark.sweep),
        pytest.param("lvcreate", 0.15, marks=pytest.mark.sweep),
        ("lvcreate", 0.2),
        pytest.param("lvcreate", 0.25, marks=pytest.mark.sweep),
        pytest.param("lvcreate", 0.3, marks=pytest.mark.sweep),
        ("lvcreate", 0.4),
        ("lvchange", 0.0),
    ],
)
def test_killed_apply_converges_on_rerun_without_orphans(vm: VM, command: str, delay: float) -> None:
    kill_at_command(vm, command, delay, "apply", "--yes", "/dev/vda")
    left = vm.run(["lvs", "-a", "--noheadings", "-o", "lv_name,lv_attr,segtype,lv_tags", "docker"], check=False)
    print(f"left after a kill at {command}+{delay}s:\n{left.stdout}")
    code, result, err = thinpool_json(vm, "apply", "--yes", "/dev/vda")
    assert code == 0, err or json.dumps(result, indent=1)
    assert result["ok"]
    found = lvs(vm, "docker")
    names = {"lvol0_pmspare" if name.endswith("_pmspare") else name for name in found}
    assert names == EXPECTED_LVS  # no orphan or half-made volumes
    plan = planner.plan(PoolSpec(devices=("/dev/vda",)), virtual_disks([4 * GiB], ["/dev/vda"]))
    layout = plan.layout
    assert layout is not None
    pool = found["thinpool"]
    assert pool.size == layout.data_size and pool.metadata_size == layout.metadata_size
    assert pool.chunk_size == layout.chunk_size and pool.seg_monitor == "monitored"
    assert vg_row(vm, "docker")["free_count"] == layout.headroom_extents + layout.left_extents
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[1]["changed"] is False


def test_lvm_temporary_leftover_of_the_planned_size_is_cleared(vm: VM) -> None:
    """The shape a kill early in lvcreate leaves: an inactive lvol0 as large as the metadata."""
    plan = planner.plan(PoolSpec(devices=("/dev/vda",)), virtual_disks([4 * GiB], ["/dev/vda"]))
    assert plan.layout is not None
    metadata_extents = plan.layout.metadata_extents
    vm.run(["pvcreate", "-q", "/dev/vda"])
    vm.run(["vgcreate", "-q", "docker", "/dev/vda"])
    vm.run(["lvcreate", "-q", "-y", "-an", "-Zn", "-l", str(metadata_extents), "-n", "lvol0", "docker"])
    vm.run(["lvcreate", "-q", "-y", "-an", "-Zn", "-l", str(metadata_extents + 1), "-n", "lvol1", "docker"])
    code, result, err = thinpool_json(vm, "apply", "--yes", "/dev/vda")
    assert code == 0, err
    assert result["steps"][0]["argv"] == ["lvremove", "--yes", "docker/lvol0"]
    names = {"lvol0_pmspare" if name.endswith("_pmspare") else name for name in lvs(vm, "docker")}
    assert names == EXPECTED_LVS | {"lvol1"}  # lvol1 is not the planned size: not ours, kept


def _pv_row(vm: VM, device: str) -> list[str]:
    return vm.run(["pvs", "--noheadings", "-o", "vg_name,pv_attr", device], check=False).stdout.split()


def test_pool_whose_metadata_is_active_on_its_own_is_activated_again(vm: VM) -> None:
    """What a kill late in lvcreate left in a full run (the pool inactive, ``[thinpool_tmeta]`` active), made on
    purpose with lvm's component activation: lvm refuses to activate the pool while its metadata is active, and
    deactivating the pool leaves the metadata active; apply deactivates the part itself first."""
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0
    vm.run(["bash", "-c", "lvchange -q -an docker/thinpool && lvchange -q -y -ay docker/thinpool_tmeta </dev/null"])
    assert lvs(vm, "docker")["thinpool_tmeta"].active and not lvs(vm, "docker")["thinpool"].active
    code, result, err = thinpool_json(vm, "apply", "--yes", "/dev/vda")
    assert code == 0, err or json.dumps(result, indent=1)
    assert [step["argv"][-1] for step in result["steps"][:3]] == [
        "docker/thinpool",
        "docker/thinpool_tmeta",
        "docker/thinpool",
    ]
    assert lvs(vm, "docker")["thinpool"].active
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[1]["changed"] is False


def test_parts_active_beside_a_pool_mapped_without_a_table_are_deactivated(vm: VM) -> None:
    """What a kill 0.4 s into lvcreate left in CI, made on purpose: both parts active on their own and the pool's
    mapping present without a table (lvs state 'd'); ``lvchange -an POOL`` leaves the parts active."""
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0
    vm.run(
        [
            "bash",
            "-c",
            "exec </dev/null; lvchange -q -an docker/thinpool && "
            "lvchange -q -y -ay docker/thinpool_tmeta && lvchange -q -y -ay docker/thinpool_tdata && "
            "vg=$(vgs --noheadings -o vg_uuid docker | tr -d ' -') && "
            "lv=$(lvs --noheadings -o lv_uuid docker/thinpool | tr -d ' -') && "
            'dmsetup create docker-thinpool --notable --uuid "LVM-$vg$lv-tpool"',
        ]
    )
    left = lvs(vm, "docker")
    assert left["thinpool"].attr[4] == "d" and left["thinpool_tmeta"].active and left["thinpool_tdata"].active
    code, result, err = thinpool_json(vm, "apply", "--yes", "/dev/vda")
    assert code == 0, err or json.dumps(result, indent=1)
    parts = [step["argv"][3:] for step in result["steps"] if step["argv"][:3] == ["lvchange", "--activate", "n"]]
    assert sorted(parts[1]) == ["docker/thinpool_tdata", "docker/thinpool_tmeta"]  # after the pool's own
    pool = lvs(vm, "docker")["thinpool"]
    assert pool.active and pool.attr[4] == "a" and pool.seg_monitor == "monitored"
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[1]["changed"] is False


def test_pv_marked_used_by_a_killed_vgcreate_is_labelled_again(vm: VM) -> None:
    shutil.copyfile(MARKED_USED_HEAD, vm.share / MARKED_USED_HEAD.name)  # the guest sees the share, not the checkout
    head = f"{SHARE_MOUNT}/{MARKED_USED_HEAD.name}"
    vm.run(["bash", "-c", f"gzip -dc {head} | dd of=/dev/vda bs=8192 conv=fsync status=none"])
    assert _pv_row(vm, "/dev/vda") == ["[unknown]", "u--"]  # lvm: "marked in use but no VG was found"
    code, result, err = thinpool_json(vm, "apply", "--yes", "/dev/vda")
    assert code == 0, err
    assert result["steps"][0]["argv"] == ["pvcreate", "-ff", "-y", "/dev/vda"]
    assert set(lvs(vm, "docker")) == {"thinpool", "thinpool_tdata", "thinpool_tmeta", "lvol0_pmspare"}
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[1]["changed"] is False


def test_pv_whose_vg_lives_on_an_absent_disk_is_refused_untouched(vm: VM) -> None:
    """/dev/vdb keeps no VG metadata (metadataignore): with /dev/vda gone, lvm cannot find its VG."""
    vm.run(["pvcreate", "-q", "--metadataignore", "y", "/dev/vdb"])
    vm.run(["vgcreate", "-q", "other", "/dev/vda", "/dev/vdb"])
    vm.run(["bash", "-c", "vgchange -an other >/dev/null; wipefs -a -q /dev/vda"])
    assert _pv_row(vm, "/dev/vdb") == ["[unknown]", "u--"]
    before = vm.run(["bash", "-c", "head -c 8388608 /dev/vdb | sha256sum"]).stdout
    code, _, err = thinpool_json(vm, "apply", "--yes", "--wipe", "/dev/vdb")
    assert code == 1 and "cannot find" in err and "pvremove -ff /dev/vdb" in err
    assert vm.run(["bash", "-c", "head -c 8388608 /dev/vdb | sha256sum"]).stdout == before


def _map_the_inactive_pools_metadata(vm: VM, name: str, dmsetup: str) -> None:
    """A pool made, deactivated, then a mapping carrying its _tmeta's lvm UUID (``dmsetup`` after the name)."""
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0
    vm.run(["lvchange", "-q", "-an", "docker/thinpool"])
    uuid = (
        "vg=$(vgs --noheadings -o vg_uuid docker | tr -d ' -'); "
        'lv=$(lvs -a --noheadings -o lv_uuid docker/thinpool_tmeta | tr -d " -"); '
    )
    vm.run(["bash", "-c", uuid + f'dmsetup create {name} --uuid "LVM-$vg$lv" {dmsetup}'])


def _apply_removes_it_and_reactivates(vm: VM, name: str) -> None:
    code, result, err = thinpool_json(vm, "apply", "--yes", "/dev/vda")
    assert code == 0, err or json.dumps(result, indent=1)
    assert result["steps"][0]["argv"] == ["dmsetup", "remove", name]
    pool = lvs(vm, "docker")["thinpool"]
    assert pool.active and pool.seg_monitor == "monitored"
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[1]["changed"] is False


def test_a_stray_mapping_left_on_the_pools_metadata_is_removed_and_the_pool_reactivated(vm: VM) -> None:
    """Seen in CI after a kill 0.2 s into lvcreate: lvm's temporary VG-lvol0 mapping still held what is
    now POOL_tmeta, lvs showed it as 'XX', and activation failed. Recreated here exactly."""
    _map_the_inactive_pools_metadata(vm, "docker-lvol0", '--table "0 8192 linear /dev/vda 2048"')
    assert lvs(vm, "docker")["thinpool_tmeta"].attr[4:6] == "XX"
    _apply_removes_it_and_reactivates(vm, "docker-lvol0")
    assert "docker-lvol0" not in vm.run(["dmsetup", "ls"]).stdout


def test_a_half_made_mapping_of_the_pools_metadata_is_removed_and_the_pool_reactivated(vm: VM) -> None:
    """Seen in CI after a kill 0.3 s into lvcreate: VG-POOL_tmeta existed with only the inactive
    table lvm had loaded (lvs state 'i'), and activation was refused. Recreated here exactly."""
    name = "docker-thinpool_tmeta"
    _map_the_inactive_pools_metadata(
        vm, name, f'--notable && dmsetup load {name} --table "0 8192 linear /dev/vda 2048"'
    )
    assert lvs(vm, "docker")["thinpool_tmeta"].attr[4] == "i"
    info = vm.run(["dmsetup", "info", "-c", "--noheadings", "-o", "attr", name]).stdout.strip()
    assert info[:2] == "-I"  # dmsetup's own word for it: no live table, an inactive one
    _apply_removes_it_and_reactivates(vm, name)
