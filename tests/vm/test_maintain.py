"""thinpool maintain on real pools: churned space comes back, and a pool that cannot grow fails writes fast."""

from __future__ import annotations

import json
from typing import Any

import pytest

from thinpool.core.units import MiB
from thinpool.rehearse.vm import VM

from .helpers import lvs, thinpool_json, vg_row

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13")]

DATA_ROOT = "/var/lib/docker"  # where overlay2-thin mounts its volume (the VM's reset unmounts it)


def _status(vm: VM, target: str) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(vm.thinpool("status", target, "--json").stdout)
    return status


def _maintain(vm: VM, *args: str) -> dict[str, Any]:
    code, result, err = thinpool_json(vm, "maintain", *args)
    assert code == 0, err or result
    assert result["ok"]
    return result


def _doctor_fix(vm: VM, target: str, code: str) -> str:
    report = json.loads(vm.thinpool("doctor", target, "--json", check=False).stdout)
    found = [finding for finding in report["findings"] if finding["code"] == code]
    assert found, [finding["code"] for finding in report["findings"]]
    return str(found[0]["fix"])


def test_churned_space_comes_back_and_a_second_pass_does_nothing(vm: VM) -> None:
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0
    # A thin volume as overlay2-thin makes it (tagged, XFS, mounted on the data root), then churn:
    # files written, synced and deleted, as containers and images come and go.
    vm.run(["lvcreate", "-q", "-V", "3g", "-T", "docker/thinpool", "-n", "data", "--addtag", "thinpool.managed"])
    vm.run(["mkfs.xfs", "-q", "-n", "ftype=1", "/dev/docker/data"])
    vm.run(["mount", "--mkdir", "-o", "noatime", "/dev/docker/data", DATA_ROOT])
    churn = f"for n in 1 2 3; do dd if=/dev/zero of={DATA_ROOT}/layer$n bs=1M count=200 status=none; done; sync; "
    vm.run(["bash", "-c", churn + f"rm {DATA_ROOT}/layer*; sync"], timeout=300)
    before = _status(vm, "docker/thinpool")
    volume = before["volumes"][0]
    assert volume["filesystem"]["mount_point"] == DATA_ROOT
    assert volume["mapped"] >= 590 * MiB and volume["filesystem"]["used"] < 100 * MiB
    assert before["reclaimable"] == volume["mapped"] - volume["filesystem"]["used"]
    fix = _doctor_fix(vm, "docker/thinpool", "reclaimable-space")
    assert fix == "thinpool maintain docker/thinpool"
    result = _maintain(vm, "docker/thinpool")  # the fix doctor printed
    pool = result["pools"][0]
    assert [step["argv"][:3] for step in pool["steps"]] == [["fstrim", "--minimum", str(512 * 1024)]]
    after = _status(vm, "docker/thinpool")
    used = after["volumes"][0]["filesystem"]["used"]
    print(f"mapped {before['volumes'][0]['mapped']} -> {after['volumes'][0]['mapped']} bytes; XFS uses {used}")
    assert after["volumes"][0]["mapped"] <= 2 * used + 256 * MiB  # the bound once maintain has run
    assert after["data_used"] < before["data_used"] - 500 * MiB  # the pool itself got the space back
    assert pool["reclaimable_after"] == after["reclaimable"] < 256 * MiB
    assert "reclaimable-space" not in vm.thinpool("doctor", "docker/thinpool", "--json", check=False).stdout
    again = _maintain(vm)  # every pool thinpool made
    assert again["pools"][0]["changed"] is False and again["pools"][0]["steps"] == []


def _timed_write(vm: VM, device: str, seek_mib: int) -> tuple[int, float]:
    """One direct 1 MiB write to a region not mapped yet: (exit status, seconds it took)."""
    script = (
        "import subprocess, sys, time; start = time.monotonic(); "
        f"code = subprocess.run(['dd', 'if=/dev/zero', 'of={device}', 'bs=1M', 'count=1', 'seek={seek_mib}', "
        "'oflag=direct', 'status=none'], stderr=subprocess.DEVNULL).returncode; "
        "print(code, time.monotonic() - start)"
    )
    code, seconds = vm.python("-c", script, timeout=180).stdout.split()
    return int(code), float(seconds)


def test_a_pool_that_cannot_grow_fails_writes_fast_and_queues_again_after_grow(vm: VM) -> None:
    assert (
        thinpool_json(vm, "apply", "--yes", "--vg", "vg2", "--pool", "small", "--data-size", "512m", "/dev/vdc")[0] == 0
    )
    assert _status(vm, "vg2/small")["when_full"] == "queue"
    assert _maintain(vm, "vg2/small")["pools"][0]["steps"] == []  # it can autoextend: queueing is right
    free = vg_row(vm, "vg2")["free_count"]
    vm.run(["lvcreate", "-q", "-y", "-Zn", "-an", "-l", str(free), "-n", "filler", "vg2"])  # no room to grow now
    pool = _maintain(vm, "vg2/small")["pools"][0]
    assert [step["argv"] for step in pool["steps"]] == [["lvchange", "--errorwhenfull", "y", "vg2/small"]]
    assert lvs(vm, "vg2")["small"].when_full == "error" and pool["when_full"] == "error"
    vm.run(["lvcreate", "-q", "-V", "1g", "-T", "vg2/small", "-n", "vol"])
    filled = vm.run(
        ["dd", "if=/dev/zero", "of=/dev/vg2/vol", "bs=1M", "count=600", "oflag=direct", "status=none"],
        check=False,
        timeout=300,
    )
    assert filled.returncode != 0  # the pool is full
    code, seconds = _timed_write(vm, "/dev/vg2/vol", 900)
    assert code != 0 and seconds < 20, seconds  # the writer gets its error now, not after dm-thin's 60 s queue
    unhealthy = _doctor_fix(vm, "vg2/small", "pool-unhealthy")
    assert unhealthy == "thinpool grow /dev/sdX --vg vg2 --pool small"  # lvextend would fail: the VG is full
    code, result, err = thinpool_json(vm, "grow", "--yes", "--vg", "vg2", "--pool", "small", "/dev/vde")
    assert code == 0, err or json.dumps(result.get("steps"), indent=1)  # each step's status and error, whole
    pool = _maintain(vm, "vg2/small")["pools"][0]
    assert [step["argv"] for step in pool["steps"]] == [["lvchange", "--errorwhenfull", "n", "vg2/small"]]
    assert lvs(vm, "vg2")["small"].when_full == "queue"
    code, _ = _timed_write(vm, "/dev/vg2/vol", 900)
    assert code == 0  # room again: the write lands
    report = json.loads(vm.thinpool("doctor", "vg2/small", "--json", check=False).stdout)
    assert report["findings"] == [], report["findings"]
