"""thinpool repair on real damage, made the way it happens to a pool's metadata: swapped out with
``lvconvert --thinpool VG/POOL --poolmetadata VG/OTHER``, written over, swapped back."""

from __future__ import annotations

from typing import Any

import pytest

from thinpool.rehearse.vm import VM

from .helpers import damage_metadata, kill_at_command, lvs, pool_with_files, thinpool_json

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13")]

CHECKSUMS = "cd /mnt/vol && sha256sum file1 file2 file3"


def _repair(vm: VM) -> tuple[int, dict[str, Any]]:
    code, result, err = thinpool_json(vm, "repair", "--yes", "--json")
    assert isinstance(result, dict) and "state" in result.get("before", {}), err or result
    return code, result


def test_a_zeroed_superblock_is_restored_from_the_backup_with_every_file(vm: VM) -> None:
    before = pool_with_files(vm, 16)
    holder = vm.start_background(["bash", "-c", "cd /mnt/vol && exec sleep 600"])
    in_mount = f'for i in $(seq 100); do [ "$(readlink /proc/{holder}/cwd)" = /mnt/vol ] && exit 0; sleep 0.1; done'
    vm.run(["bash", "-c", in_mount + "; exit 1"])
    refused = vm.thinpool("repair", "--yes", check=False)  # in use: refused, named with its user, nothing stopped
    vm.run(["bash", "-c", f"kill {holder}; " + in_mount.replace("&& exit 0", "|| exit 0")])  # a zombie has no cwd
    assert refused.returncode == 1, refused.stderr
    assert f"docker/vol (mounted on /mnt/vol; used by {holder} (sleep))" in refused.stderr
    assert thinpool_json(vm, "backup")[0] == 0
    vm.run(["umount", "/mnt/vol"])
    damage_metadata(vm, "bs=4k count=1")  # block 0: the superblock
    code, result = _repair(vm)
    assert code == 0 and result["ok"], result
    assert result["before"]["state"] == "damaged" and result["after"]["state"] == "healthy"
    assert result["restored_from"] and result["lost"] == []
    kept = result["kept"][-1]
    assert kept.startswith("thinpool_meta") and kept in lvs(vm, "docker")  # the damaged original stays
    vm.run(["mount", "/dev/docker/vol", "/mnt/vol"])
    assert vm.run(["bash", "-c", CHECKSUMS]).stdout == before  # every file back, byte for byte
    vm.run(["umount", "/mnt/vol"])
    assert _repair(vm)[1]["before"]["state"] == "healthy"  # a second run finds nothing to do


def test_zeroed_btree_blocks_without_a_backup_leave_a_pool_that_activates(vm: VM, release: str) -> None:
    """thin-provisioning-tools 0.9's thin_repair (Debian 12) makes empty metadata of what is left: the pool
    activates without its volumes. 1.1's (Debian 13) finds "no compatible roots" and fails: the repair is refused
    and the pool is left as it was, its metadata untouched."""
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0
    for n in (1, 2):
        vm.run(["lvcreate", "-q", "-V", "1g", "-T", "docker/thinpool", "-n", f"vol{n}"])
        vm.run(["dd", "if=/dev/urandom", f"of=/dev/docker/vol{n}", "bs=1M", "count=16", "oflag=direct", "status=none"])
    damage_metadata(vm, "bs=4k seek=1 count=300")  # the device and mapping trees
    activation = vm.run(["lvchange", "-ay", "docker/thinpool"], check=False)
    assert activation.returncode != 0 and "Manual repair required" in activation.stderr  # lvm's own check
    if release == "debian-13":
        code, refused, err = thinpool_json(vm, "repair", "--yes", "--json")
        assert code != 0 and "still damaged after lvconvert --repair failed" in refused["problem"], err or refused
        assert "no compatible roots found" in refused["problem"] and "dd" in refused["fix"]
        pools = lvs(vm, "docker")
        assert not pools["thinpool"].active and not any(name.startswith("thinpool_meta") for name in pools)
        return
    code, result = _repair(vm)
    assert code == 1 and result["before"]["state"] == "damaged"
    assert result["ran"][0] == "lvconvert --repair" and "thinpool_meta0" in result["kept"]
    assert result["after"]["state"] == "lost" and result["lost"] == ["vol1", "vol2"]
    assert any("no backup" in warning for warning in result["warnings"])
    pools = lvs(vm, "docker")
    assert pools["thinpool"].active and "thinpool_meta0" in pools  # it activates; the original is kept
    vm.run(["lvchange", "-an", "docker/thinpool"])
    vm.run(["lvchange", "-y", "-ay", "docker/thinpool_tmeta"], input="")
    checked = vm.run(["thin_check", "/dev/mapper/docker-thinpool_tmeta"], check=False)
    vm.run(["lvchange", "-an", "docker/thinpool_tmeta"])
    assert checked.returncode == 0, checked.stderr  # the repaired metadata passes thin_check


def test_a_pool_changed_behind_lvms_back_gets_lvms_transaction_id_set_to_the_kernels(vm: VM) -> None:
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0
    vm.run(["lvcreate", "-q", "-V", "1g", "-T", "docker/thinpool", "-n", "vol1"])
    # What Docker's devicemapper does: a thin device made with dm messages, the kernel's id moved on.
    tpool = "docker-thinpool-tpool"
    vm.run(["dmsetup", "message", tpool, "0", "create_thin 7"])
    vm.run(["dmsetup", "message", tpool, "0", "set_transaction_id 1 2"])
    refused = vm.run(["lvcreate", "-q", "-V", "1g", "-T", "docker/thinpool", "-n", "vol2"], check=False)
    assert refused.returncode != 0 and "unexpected transaction id 2, expecting 1" in refused.stderr
    code, result = _repair(vm)
    assert code == 0 and result["before"]["state"] == "ahead" and result["after"]["state"] == "healthy", result
    assert result["ran"][0].startswith("set lvm's transaction id 1 -> 2") and result["kept"] == []
    assert "ids 7" in result["warnings"][0]  # the engine's device is named, and kept
    vm.run(["lvcreate", "-q", "-V", "1g", "-T", "docker/thinpool", "-n", "vol2"])  # lvm works on the pool again
    assert lvs(vm, "docker")["vol2"].thin_id == 2 and lvs(vm, "docker")["thinpool"].transaction_id == 3
    devices = vm.run(
        [
            "bash",
            "-c",
            f"dmsetup message {tpool} 0 reserve_metadata_snap && "
            f"thin_dump -m /dev/mapper/docker-thinpool_tmeta | grep -o 'dev_id=\"[0-9]*\"'; "
            f"dmsetup message {tpool} 0 release_metadata_snap",
        ]
    ).stdout
    assert devices.split() == ['dev_id="1"', 'dev_id="2"', 'dev_id="7"']  # Docker's device is still there


@pytest.mark.releases("debian-12", "debian-13", ci="debian-13")  # the resume is thinpool's own; CI time
@pytest.mark.parametrize(
    "command",
    ["thin_restore", pytest.param("lvrename", marks=pytest.mark.sweep)],  # CI: the kill before the swap
)
def test_a_repair_killed_halfway_is_finished_by_the_next_run(vm: VM, command: str) -> None:
    """Killed while restoring the backup (before the swap), or while keeping the original (after it)."""
    before = pool_with_files(vm, 8)
    assert thinpool_json(vm, "backup")[0] == 0
    vm.run(["umount", "/mnt/vol"])
    damage_metadata(vm, "bs=4k count=1")
    kill_at_command(vm, command, 0.0, "repair", "--yes")
    code, result = _repair(vm)
    assert code == 0 and result["ok"] and result["after"]["state"] == "healthy", result
    names = set(lvs(vm, "docker"))
    assert "thinpool_restore" not in names and {"thinpool_meta0"} <= names, names  # the original kept, named
    vm.run(["mount", "/dev/docker/vol", "/mnt/vol"])
    assert vm.run(["bash", "-c", CHECKSUMS]).stdout == before
    vm.run(["umount", "/mnt/vol"])
