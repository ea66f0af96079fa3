"""thinpool activate, as thinpool-activate.service runs it at boot, on a real deactivated VG."""

from __future__ import annotations

import json

import pytest

from thinpool.rehearse.vm import VM

from .helpers import lvs, thinpool_json

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13")]


def test_activate_brings_back_pool_volume_and_monitoring_after_a_reboot_like_deactivation(vm: VM) -> None:
    code, result, err = thinpool_json(
        vm, "apply", "--yes", "--engine", "docker-overlay2-thin", "--volume-size", "1GiB", "/dev/vda"
    )
    assert code == 0, err or result
    vm.run(["bash", "-c", "umount /var/lib/docker && vgchange -q -an docker && vgs -o vg_name,lv_count docker"])
    assert not lvs(vm, "docker")["thinpool"].active
    done = vm.thinpool("activate", "--json", "--wait", "30")
    activation = json.loads(done.stdout)
    assert activation["volumes"] == ["docker/thinpool", "docker/docker-data"] and activation["missing"] == []
    found = lvs(vm, "docker")
    assert found["thinpool"].active and found["docker-data"].active and found["thinpool"].seg_monitor == "monitored"
    vm.run(["mount", "/var/lib/docker"])  # the fstab entry apply wrote now finds its device
    assert "/var/lib/docker xfs" in vm.run(["cat", "/proc/mounts"]).stdout
    again = json.loads(vm.thinpool("activate", "--json").stdout)
    assert again["commands"] == []  # nothing left to do
