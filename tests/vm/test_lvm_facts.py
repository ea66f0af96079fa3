"""What real lvm2 + dm-thin do, checked in the VM: the facts the planner is built on."""

from __future__ import annotations

import pytest

from thinpool.core.model import Device
from thinpool.core.units import GiB, KiB, MiB
from thinpool.rehearse.vm import VM

from .helpers import lvs, vg_row
from .machines import DEVICES, DISKS

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13")]


def test_pv_extents_match_the_planner_model(vm: VM) -> None:
    vm.run(["pvcreate", "-q", *DEVICES])
    vm.run(["vgcreate", "-q", "probe", *DEVICES])
    rows = vm.run(["pvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "pv_name,pv_pe_count,dev_size"]).stdout
    real = {name: int(count) for name, count, _ in (line.split() for line in rows.splitlines() if line.strip())}
    predicted = {path: Device(path, size).extents_as_pv(4 * MiB) for path, size in zip(DEVICES, DISKS, strict=True)}
    assert real == predicted
    assert real["/dev/vdd"] == 190511


def test_thin_pool_and_snapshot_report(vm: VM) -> None:
    vm.run(["pvcreate", "-q", "/dev/vda"])
    vm.run(["vgcreate", "-q", "docker", "/dev/vda"])
    vm.run(
        [
            "lvcreate",
            "-q",
            "--type",
            "thin-pool",
            "-l",
            "500",
            "-c",
            "512k",
            "--poolmetadatasize",
            "16m",
            "--zero",
            "n",
            "-n",
            "pool",
            "docker",
        ]
    )
    vm.run(["lvcreate", "-q", "-V", "1g", "-T", "docker/pool", "-n", "vol"])
    vm.run(["dd", "if=/dev/urandom", "of=/dev/docker/vol", "bs=1M", "count=64", "oflag=direct", "status=none"])
    vm.run(["lvcreate", "-q", "-s", "-n", "snap", "docker/vol"])
    found = lvs(vm, "docker")
    pool, vol, snap, spare = found["pool"], found["vol"], found["snap"], found["lvol0_pmspare"]
    assert pool.attr[0] == "t" and pool.segtype == "thin-pool"
    assert pool.size == 500 * 4 * MiB and pool.metadata_size == 16 * MiB and pool.chunk_size == 512 * KiB
    assert pool.seg_monitor == "monitored"
    assert float(pool.data_percent) > 0
    assert vol.attr[0] == "V" and vol.size == GiB and vol.pool_lv == "pool"
    assert snap.origin == "vol" and snap.pool_lv == "pool"
    assert spare.hidden and spare.size == 16 * MiB  # the hidden spare lvm added by itself
    assert vg_row(vm, "docker")["free_count"] == 1023 - 500 - 4 - 4


def test_classic_recipe_fails_for_want_of_the_spare(vm: VM) -> None:
    """The hand recipe on the 744.19 GiB disk: lvconvert needs the spare's extents and there are none."""
    vm.run(["pvcreate", "-q", "/dev/vdd"])
    vm.run(["vgcreate", "-q", "docker", "/dev/vdd"])
    assert vg_row(vm, "docker")["extent_count"] == 190511
    vm.run(["lvcreate", "-q", "-y", "-L", "744M", "-n", "thinpoolmeta", "docker"])
    vm.run(["lvcreate", "-q", "-y", "-l", "100%FREE", "-n", "thinpool", "docker"])
    converted = vm.run(
        ["lvconvert", "-y", "--type", "thin-pool", "--poolmetadata", "docker/thinpoolmeta", "docker/thinpool"],
        check=False,
    )
    assert converted.returncode == 5
    assert 'Volume group "docker" has insufficient free space (0 extents): 186 required.' in converted.stderr
