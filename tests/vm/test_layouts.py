"""Pools over two disks on real lvm: each layout made exactly as planned, autoextended by dmeventd, and raid1
serving on through a disk's death, with doctor's fix bringing the second copy back."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from thinpool.cli.options import spec_to_argv
from thinpool.core import sizing
from thinpool.core.layouts import DataLayout
from thinpool.core.spec import PoolSpec
from thinpool.core.units import MiB
from thinpool.rehearse.vm import VM

from .helpers import assert_pool_matches, fill_until_grown, thinpool_json
from .machines import host_plan

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

TWO_DISKS = ("/dev/vda", "/dev/vdb")
PARTS = "lv_name,segtype,devices,copy_percent,lv_health_status,lv_attr"


def _parts(vm: VM, vg: str = "docker") -> dict[str, dict[str, str]]:
    """Every LV of ``vg`` with its hidden parts, as lvm reports them (names without brackets)."""
    text = vm.run(["lvs", "-a", "--reportformat", "json", "-o", PARTS, vg]).stdout
    rows = json.loads(text)["report"][0]["lv"]
    return {row["lv_name"].strip("[]"): row for row in rows}


def _pvs_of(parts: dict[str, dict[str, str]], name: str) -> set[str]:
    return {entry.split("(")[0] for entry in parts[name]["devices"].split(",") if entry}


def _wait_in_sync(vm: VM, names: tuple[str, ...], timeout: float = 300) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        parts = _parts(vm)
        if all(parts[name]["copy_percent"] == "100.00" for name in names) or time.monotonic() > deadline:
            return parts
        time.sleep(2)


FOUR_DISKS = ("/dev/vda", "/dev/vdb", "/dev/vdc", "/dev/vde")


@pytest.mark.parametrize(
    ("layout", "data_segtype", "disks"),
    [
        # CI: raid1 and raid10 here; the default on two disks (linear data, raid1 metadata) in test_encrypt,
        # test_apply's saved plan and test_lifecycle's destroy, which build it on two disks
        pytest.param(None, "linear", TWO_DISKS, id="linear-data-raid1-metadata", marks=pytest.mark.sweep),
        pytest.param(DataLayout.RAID1, "raid1", TWO_DISKS, id="raid1"),
        pytest.param(DataLayout.STRIPED, "striped", TWO_DISKS, id="striped", marks=pytest.mark.sweep),
        pytest.param(DataLayout.RAID10, "raid10", FOUR_DISKS, id="raid10"),
    ],
)
def test_each_layout_is_made_exactly_as_planned_and_dmeventd_grows_it(
    vm: VM, layout: DataLayout | None, data_segtype: str, disks: tuple[str, ...]
) -> None:
    """The plan's extents are lvm's (no "insufficient free space", the VG's free extents to the one), each part
    sits on the disks the plan pinned it to, and a fill past the threshold grows the data in its layout."""
    autoextend = sizing.Autoextend(threshold=70, percent=50)
    spec = PoolSpec(devices=disks, data_size=64 * MiB, autoextend=autoextend, layout=layout)
    plan = host_plan(spec)
    code, result, err = thinpool_json(vm, "apply", "--yes", *spec_to_argv(spec))
    assert code == 0 and result["ok"], err or result
    kinds = [step["kind"] for step in result["steps"]]
    assert kinds[-5:-1] == ["pool-part", "pool-part", "thin-pool", "monitoring"], kinds
    assert_pool_matches(vm, plan)
    parts = _parts(vm)
    assert parts["thinpool_tmeta"]["segtype"] == "raid1" and parts["thinpool_tdata"]["segtype"] == data_segtype
    assert _pvs_of(parts, "thinpool_tmeta_rimage_0") | _pvs_of(parts, "thinpool_tmeta_rimage_1") == set(TWO_DISKS)
    images = [name for name in parts if name.startswith("thinpool_tdata_rimage_")]
    image_pvs = [_pvs_of(parts, name) for name in images]
    if data_segtype in ("raid1", "raid10"):  # each image on a disk of its own, every disk given used
        assert len(images) == len(disks) and set().union(*image_pvs) == set(disks), image_pvs
    elif data_segtype == "striped":
        assert _pvs_of(parts, "thinpool_tdata") == set(disks)

    size = fill_until_grown(vm, 64 * MiB, 52, timeout=120)
    assert size == 96 * MiB  # one step of 50%: 16 extents -> 24, each copy or stripe grown
    parts = _parts(vm)
    assert parts["thinpool_tdata"]["segtype"] == data_segtype
    status = json.loads(vm.thinpool("status", "docker/thinpool", "--json").stdout)
    assert status["layout"] == {"data": data_segtype, "metadata": "raid1"}
    assert status["devices"] == sorted(disks) or data_segtype == "linear"  # a RAID's images read through


KEEP = "/mnt/vol"
WRITER = f"""
i=0; while [ ! -e /tmp/stop-writer ]; do
  head -c 1M /dev/urandom > {KEEP}/during.$i && sync {KEEP}/during.$i || {{ echo "write $i failed"; exit 1; }}
  i=$((i + 1))
done; echo "wrote $i"
"""


RESCAN = """
vgchange -an docker >/dev/null 2>&1; dmsetup remove_all --force >/dev/null 2>&1
echo 1 > /sys/bus/pci/rescan
for i in $(seq 100); do [ -b /dev/vdb ] && exit 0; sleep 0.2; done
ls /dev/vd*; exit 1
"""


def _remove_disk(vm: VM, disk: str) -> str:
    """The disk's PCI device taken out of the running guest (as a dead controller leaves it); its address."""
    device = vm.run(["readlink", "-f", f"/sys/block/{disk}/device"]).stdout.strip()
    address = next(part for part in device.split("/") if part.count(":") == 2)
    vm.run(["bash", "-c", f"echo 1 > /sys/bus/pci/devices/{address}/remove"])
    return address


def _doctor(vm: VM) -> list[dict[str, Any]]:
    return list(thinpool_json(vm, "doctor", "docker/thinpool")[1]["findings"])


def test_a_disk_dead_under_writes_leaves_raid1_serving_and_doctors_fix_brings_the_copy_back(vm: VM) -> None:
    spec = PoolSpec(devices=TWO_DISKS, data_size=256 * MiB, layout=DataLayout.RAID1)
    code, result, err = thinpool_json(vm, "apply", "--yes", *spec_to_argv(spec))
    assert code == 0 and result["ok"], err or result
    vm.run(["lvcreate", "-q", "-V", "512m", "-T", "docker/thinpool", "-n", "vol"])
    vm.run(["mkfs.ext4", "-q", "/dev/docker/vol"])
    vm.run(["mount", "--mkdir", "/dev/docker/vol", KEEP])
    vm.run(["bash", "-c", f"for n in 1 2 3; do head -c 16M /dev/urandom > {KEEP}/file$n; done; sync"])
    sums = vm.run(["bash", "-c", f"cd {KEEP} && sha256sum file1 file2 file3"]).stdout
    _wait_in_sync(vm, ("thinpool_tdata", "thinpool_tmeta"))
    assert not [finding for finding in _doctor(vm) if finding["code"] == "raid-degraded"]

    address = ""
    try:
        vm.run(["bash", "-c", f"rm -f /tmp/stop-writer; ({WRITER}) > /tmp/writer.log 2>&1 &"])
        time.sleep(3)
        address = _remove_disk(vm, "vdb")
        time.sleep(5)
        vm.run(["touch", "/tmp/stop-writer"])
        # the writer's last line says it stopped (the guest's PID 1 leaves it a zombie: kill -0 cannot tell)
        vm.run(["bash", "-c", "until grep -q -e wrote -e failed /tmp/writer.log; do sleep 0.5; done"], timeout=120)
        written = vm.run(["cat", "/tmp/writer.log"]).stdout
        assert written.startswith("wrote "), written  # no write failed while the disk went away
        vm.run(["bash", "-c", f"cat {KEEP}/during.* > /dev/null"])

        findings = _doctor(vm)
        degraded = [finding for finding in findings if finding["code"] == "raid-degraded"]
        assert degraded and degraded[0]["severity"] == "critical", findings
        assert "metadata-needs-repair" not in {finding["code"] for finding in findings}, findings  # lvm's "partial"
        assert "partial" in degraded[0]["problem"] and "docker/thinpool" in degraded[0]["problem"]
        fix = degraded[0]["fix"]
        assert "lvconvert --repair --yes docker/thinpool_tdata" in fix, fix
        steps = fix.split("then: ", 1)[1].split(". lvm rebuilds", 1)[0].replace("/dev/NEW", "/dev/vdc")
        vm.run(["bash", "-c", f"set -e; {steps}"], timeout=300)  # doctor's fix as printed, vdc the new disk

        parts = _wait_in_sync(vm, ("thinpool_tdata", "thinpool_tmeta"))
        for name in ("thinpool_tdata", "thinpool_tmeta"):
            assert parts[name]["copy_percent"] == "100.00", parts[name]
            images = _pvs_of(parts, f"{name}_rimage_0") | _pvs_of(parts, f"{name}_rimage_1")
            assert images == {"/dev/vda", "/dev/vdc"}, (name, images)
        assert not [finding for finding in _doctor(vm) if finding["code"] == "raid-degraded"]
        vm.run(["lvchange", "--syncaction", "check", "docker/thinpool_tdata"])  # read both copies, compare
        _wait_in_sync(vm, ("thinpool_tdata",))
        mismatches = vm.run(["lvs", "--noheadings", "-o", "raid_mismatch_count", "docker/thinpool_tdata"]).stdout
        assert mismatches.strip() == "0"
        vm.run(["bash", "-c", f"umount {KEEP} && mount /dev/docker/vol {KEEP}"])  # read back from the disks
        assert vm.run(["bash", "-c", f"cd {KEEP} && sha256sum file1 file2 file3"]).stdout == sums
    finally:
        vm.run(["touch", "/tmp/stop-writer"], check=False)
        vm.run(["umount", "-l", KEEP], check=False)
        if address:  # the disk back as vdb for the next tests: its name is free once no mapping holds it
            vm.run(["bash", "-c", RESCAN], timeout=120)
