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
    checked = pool["metadata_check"]["ran"]  # the first pass's full check, on the live pool's snapshot
    assert checked["ok"] and checked["tool"].startswith(("0.9", "1.1")) and checked["metadata_used"] > 0, pool
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
    assert again["pools"][0]["metadata_check"]["reason"] == ""  # checked this week


def _boot_check_finding(vm: VM) -> list[dict[str, Any]]:
    report = json.loads(vm.thinpool("doctor", "docker/thinpool", "--json", check=False).stdout)
    return [finding for finding in report["findings"] if finding["code"] == "boot-check-over-budget"]


def test_doctor_warns_of_a_slow_boot_check_until_apply_sets_the_fast_one_and_full_takes_it_out(vm: VM) -> None:
    """The check's record as a pool with years of snapshots would leave it (a full check of 200 s), on a host
    that kept lvm's full check (--boot-check full); then apply's default writes the fast check, lvm runs it
    when it activates the pool, and --boot-check full gives lvmlocal.conf back as shipped."""
    shipped = vm.run(["sha256sum", "/etc/lvm/lvmlocal.conf"]).stdout
    assert thinpool_json(vm, "apply", "--yes", "--boot-check", "full", "/dev/vda")[0] == 0
    assert vm.run(["sha256sum", "/etc/lvm/lvmlocal.conf"]).stdout == shipped
    ran = _maintain(vm, "docker/thinpool", "--backup-every", "0")["pools"][0]["metadata_check"]["ran"]
    assert ran["ok"] and _boot_check_finding(vm) == []  # a fresh pool's check takes no time
    record = "/var/lib/thinpool/checks/docker-thinpool.json"
    vm.run(["bash", "-c", f'sed -i \'s/"millis": [0-9]*/"millis": 200000/\' {record}'])
    (slow,) = _boot_check_finding(vm)
    lvm_has = vm.run(["lvmconfig", "--typeconfig", "full", "global/thin_check_options"]).stdout.strip()
    assert "about 200 s, over the 60 s budget" in slow["problem"] and lvm_has.startswith("thin_check_options=")
    assert "--boot-check fast" in slow["fix"]

    code, result, err = thinpool_json(vm, "apply", "--yes", "/dev/vda")  # the fix: apply's default
    assert code == 0 and [step["kind"] for step in result["steps"]] == ["lvm-config"], err or result
    now = vm.run(["lvmconfig", "--typeconfig", "full", "global/thin_check_options"]).stdout
    assert '"--skip-mappings"' in now and _boot_check_finding(vm) == []
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[1]["changed"] is False
    # and lvm runs the fast check when it activates the pool (what a boot does)
    vm.run(["vgchange", "-q", "-an", "docker"])
    activated = vm.run(["bash", "-c", "vgchange -ay -vvvv docker 2>&1 | grep -i 'thin_check'"]).stdout
    ran = [line for line in activated.splitlines() if "Executing" in line or "Running" in line]
    assert ran and all("--skip-mappings" in line for line in ran), activated[-2000:]
    print(f"lvm had {lvm_has}; now {now.strip()}; at activation: {ran[0].strip()}")

    code, result, err = thinpool_json(vm, "apply", "--yes", "--boot-check", "full", "/dev/vda")
    assert code == 0 and [step["kind"] for step in result["steps"]] == ["lvm-config"], err or result
    assert vm.run(["sha256sum", "/etc/lvm/lvmlocal.conf"]).stdout == shipped


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
