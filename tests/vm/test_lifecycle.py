"""thinpool grow and destroy on real lvm in the VM."""

from __future__ import annotations

import pytest

from thinpool.core import sizing
from thinpool.rehearse.vm import VM

from .helpers import lvs, thinpool_json, vg_row

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13")]


def test_grow_onto_a_second_disk(vm: VM) -> None:
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0
    before = lvs(vm, "docker")["thinpool"]
    code, result, err = thinpool_json(vm, "grow", "--yes", "/dev/vdb")
    assert code == 0, err
    assert [step["kind"] for step in result["steps"]][-1] == "pool-data"
    after = lvs(vm, "docker")
    pool = after["thinpool"]
    assert pool.size == result["layout"]["data_size"] > before.size
    assert pool.metadata_size == result["layout"]["metadata_size"]
    assert after["lvol0_pmspare"].size >= pool.metadata_size  # lvm grew the spare with the metadata
    row = vg_row(vm, "docker")
    assert row["extent_count"] == 2 * 1023
    assert row["free_count"] >= sizing.autoextend_step(pool.size // row["extent_size"], 20)
    again = thinpool_json(vm, "grow", "--yes")
    assert again[0] == 0 and again[1]["changed"] is False


def test_destroy_removes_everything_it_made(vm: VM) -> None:
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda", "/dev/vdb")[0] == 0
    code, result, err = thinpool_json(vm, "destroy", "--yes")
    assert code == 0, err
    assert result["ok"]
    assert vm.run(["vgs", "docker"], check=False).returncode != 0
    assert vm.run(["pvs", "--noheadings"]).stdout.strip() == ""
    assert vm.run(["test", "-e", "/etc/lvm/profile/thinpool-docker-thinpool.profile"], check=False).returncode == 1


def test_destroy_refused_while_in_use_and_without_confirmation(vm: VM) -> None:
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0
    unconfirmed = vm.thinpool("destroy", check=False, input="")
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
    vm.run(["lvcreate", "-q", "-V", "1g", "-T", "docker/thinpool", "-n", "layer"])
    code, refusal, _ = thinpool_json(vm, "destroy", "--yes")
    assert code == 1 and "active thin volumes: layer" in refusal["problem"]
    vm.run(["lvchange", "-an", "docker/layer"])
    vm.run(["mkdir", "-p", "/etc/docker"])
    vm.run(
        [
            "bash",
            "-c",
            'echo \'{"storage-opts": ["dm.thinpooldev=/dev/mapper/docker-thinpool"]}\' > /etc/docker/daemon.json',
        ]
    )
    try:
        code, refusal, _ = thinpool_json(vm, "destroy", "--yes")
        assert code == 1 and "daemon.json still points at docker/thinpool" in refusal["problem"]
        assert lvs(vm, "docker")["thinpool"].is_thin_pool  # untouched
    finally:
        vm.run(["rm", "-f", "/etc/docker/daemon.json"])
    assert thinpool_json(vm, "destroy", "--yes")[0] == 0
