"""thinpool apply on real lvm in the VM: exact layouts, idempotency, safety, autoextend."""

from __future__ import annotations

import json

import pytest

from thinpool.cli.options import spec_to_argv
from thinpool.core.boot_check import BootCheck
from thinpool.core.spec import PoolSpec
from thinpool.core.units import MiB
from thinpool.rehearse.vm import SHARE_MOUNT, VM

from .helpers import assert_pool_matches, fill_until_grown, lvs, thinpool_json, vg_row
from .machines import CLASSIC_DISK, SIZES, host_plan

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13")]


def test_classic_disk_gets_exactly_the_planned_pool(vm: VM) -> None:
    spec = PoolSpec(devices=("/dev/vdd",))
    plan = host_plan(spec)
    assert SIZES["/dev/vdd"] == CLASSIC_DISK
    code, result, err = thinpool_json(vm, "apply", "--yes", *spec_to_argv(spec))
    assert code == 0, err
    assert result["ok"] and [step["status"] for step in result["steps"]] == ["done"] * 6
    assert result["steps"][-1]["kind"] == "lvm-config"  # the fast boot check, after the pool's five
    assert_pool_matches(vm, plan)


def test_second_apply_changes_nothing(vm: VM) -> None:
    spec = PoolSpec(devices=("/dev/vda",))
    assert thinpool_json(vm, "apply", "--yes", *spec_to_argv(spec))[0] == 0
    seqno = vg_row(vm, "docker")["seqno"]
    code, result, _ = thinpool_json(vm, "apply", "--yes", *spec_to_argv(spec))
    assert code == 0 and result["changed"] is False and result["steps"] == []
    assert vg_row(vm, "docker")["seqno"] == seqno  # lvm metadata was not written again
    text = vm.thinpool("plan", "--detailed-exitcode", *spec_to_argv(spec), check=False)
    assert text.returncode == 0 and "No changes" in text.stdout


def test_saved_plan_applies_once_then_is_stale(vm: VM) -> None:
    # --boot-check full: this plan on virtual disks has not read the guest's lvmlocal.conf (see test_bad_input)
    spec = PoolSpec(devices=("/dev/vda", "/dev/vdb"), vg="multi", boot_check=BootCheck.FULL)
    plan = host_plan(spec)
    (vm.share / "plan.json").write_text(plan.to_json())
    code, _, err = thinpool_json(vm, "apply", "--yes", f"{SHARE_MOUNT}/plan.json")
    assert code == 0, err
    assert_pool_matches(vm, plan)
    assert plan.layout is not None and plan.layout.free_extents == 2 * 1023
    code, refusal, _ = thinpool_json(vm, "apply", "--yes", f"{SHARE_MOUNT}/plan.json")
    assert code == 1 and refusal["error"] == "StalePlan" and "thinpool plan --out" in refusal["fix"]


def _edge_hashes(vm: VM, device: str) -> str:
    script = f"head -c 1048576 {device} | sha256sum; tail -c 1048576 {device} | sha256sum"
    return vm.run(["bash", "-c", script]).stdout


def test_disk_with_a_filesystem_is_refused_untouched_until_wipe(vm: VM) -> None:
    vm.run(["mkfs.ext4", "-q", "-F", "/dev/vde"])
    before = _edge_hashes(vm, "/dev/vde")
    code, refusal, _ = thinpool_json(vm, "apply", "--yes", "/dev/vde")
    assert code == 1 and refusal["error"] == "UnsafeDevice"
    assert "ext4" in refusal["problem"] and "--wipe" in refusal["fix"]
    assert _edge_hashes(vm, "/dev/vde") == before
    code, result, err = thinpool_json(vm, "apply", "--yes", "--wipe", "/dev/vde")
    assert code == 0, err
    assert result["steps"][0]["argv"] == ["wipefs", "--all", "/dev/vde"]
    assert "ext4" not in vm.run(["wipefs", "/dev/vde"]).stdout


def test_mounted_disk_is_never_touched_even_with_wipe(vm: VM) -> None:
    vm.run(["mkfs.ext4", "-q", "-F", "/dev/vde"])
    vm.run(["mkdir", "-p", "/mnt/busy"])
    vm.run(["mount", "-o", "ro", "/dev/vde", "/mnt/busy"])  # read-only: the kernel itself writes nothing
    try:
        before = _edge_hashes(vm, "/dev/vde")
        code, refusal, _ = thinpool_json(vm, "apply", "--yes", "--wipe", "/dev/vde")
        assert code == 1 and "mounted at /mnt/busy" in refusal["problem"]
        assert _edge_hashes(vm, "/dev/vde") == before
    finally:
        vm.run(["umount", "/mnt/busy"])


def test_dashed_names_and_their_device_mapper_path(vm: VM) -> None:
    spec = PoolSpec(devices=("/dev/vdb",), vg="my-vg", pool="docker-pool")
    code, _, err = thinpool_json(vm, "apply", "--yes", *spec_to_argv(spec))
    assert code == 0, err
    assert_pool_matches(vm, host_plan(spec))
    assert vm.run(["test", "-b", "/dev/mapper/my--vg-docker--pool"], check=False).returncode == 0


def test_existing_vg_with_other_volumes_is_shared_not_disturbed(vm: VM) -> None:
    vm.run(["pvcreate", "-q", "/dev/vdc"])
    vm.run(["vgcreate", "-q", "docker", "/dev/vdc"])
    vm.run(["lvcreate", "-q", "-y", "-l", "100", "-n", "other", "docker"])
    vm.run(["bash", "-c", "echo keep-me > /dev/docker/other"])
    code, result, err = thinpool_json(vm, "apply", "--yes", "--vg", "docker")
    assert code == 0, err
    assert [step["kind"] for step in result["steps"]] == ["lvm-profile", "thin-pool", "monitoring", "lvm-config"]
    found = lvs(vm, "docker")
    assert found["other"].size == 100 * 4 * MiB
    assert vm.run(["head", "-c", "7", "/dev/docker/other"]).stdout == "keep-me"
    assert found["thinpool"].is_thin_pool


def test_dmeventd_grows_the_pool_per_the_profile(vm: VM) -> None:
    """threshold 70 / percent 50: filling a thin volume past 70% makes dmeventd add 50%."""
    spec_args = ["--data-size", "64MiB", "--autoextend-threshold", "70", "--autoextend-percent", "50", "/dev/vdc"]
    code, _, err = thinpool_json(vm, "apply", "--yes", *spec_args)
    assert code == 0, err
    profile = vm.run(["cat", "/etc/lvm/profile/thinpool-docker-thinpool.profile"]).stdout
    assert "thin_pool_autoextend_threshold = 70" in profile
    size = fill_until_grown(vm, 64 * MiB, 52, timeout=90)
    assert size == 64 * MiB + 32 * MiB  # one step of 50% (16 extents -> 24)


def test_apply_json_result_is_a_versioned_envelope(vm: VM) -> None:
    code, result, _ = thinpool_json(vm, "apply", "--yes", "/dev/vde")
    assert code == 0
    assert result["schema_version"] == 1 and result["kind"] == "thinpool-result"
    assert json.dumps(result)  # plain JSON all the way down
    assert all(isinstance(step["seconds"], float) for step in result["steps"])


def test_conflicting_spec_is_refused_and_nothing_recreated(vm: VM) -> None:
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0
    seqno = vg_row(vm, "docker")["seqno"]
    code, refusal, _ = thinpool_json(vm, "apply", "--yes", "--chunk-size", "64k", "/dev/vda")
    assert code == 1 and "chunk 512 KiB (wanted 64 KiB)" in refusal["problem"]
    assert "thinpool grow" in refusal["fix"]
    assert vg_row(vm, "docker")["seqno"] == seqno


def test_device_held_by_device_mapper_is_never_touched(vm: VM) -> None:
    vm.run(["dmsetup", "create", "holder", "--table", "0 2048 linear /dev/vde 0"])
    try:
        before = _edge_hashes(vm, "/dev/vde")
        code, refusal, _ = thinpool_json(vm, "apply", "--yes", "--wipe", "/dev/vde")
        assert code == 1 and "held by dm-" in refusal["problem"]
        assert _edge_hashes(vm, "/dev/vde") == before
    finally:
        vm.run(["dmsetup", "remove", "holder"])
