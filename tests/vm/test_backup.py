"""thinpool backup on real pools: dumped live from a held metadata snapshot or through the inactive pool's
component, restorable to metadata thin_check passes, rotated, and taken by maintain when the metadata moves."""

from __future__ import annotations

import json
from typing import Any

import pytest

from thinpool.rehearse.vm import VM

from .helpers import pool_with_files, thinpool_json

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13")]

TPOOL = "docker-thinpool-tpool"


def _backup(vm: VM, *args: str) -> dict[str, Any]:
    code, made, err = thinpool_json(vm, "backup", "--json", *args)
    assert code == 0, err or made
    return made


def _kernel_status(vm: VM) -> list[str]:
    return vm.run(["dmsetup", "status", TPOOL]).stdout.split()


def _lv_field(vm: VM, lv: str, field: str) -> str:
    return vm.run(["lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", field, lv]).stdout.strip()


def _restores(vm: VM, made: dict[str, Any]) -> str:
    """The backup restored into a new LV the size of the pool's metadata, checked, and dumped again
    (thin tools open with O_DIRECT, which the guest's tmpfs refuses: the target is a real device).
    The pool's size comes from the manifest: a live dump's superblock says nr_data_blocks="0", and
    thin-provisioning-tools 1.x needs the real size in that line (the README's way, for both versions)."""
    dump = f"{made['folder']}/{made['files']['metadata']}"
    size = _lv_field(vm, "docker/thinpool", "lv_metadata_size")
    blocks = made["nr_data_blocks"]
    script = (
        f'zcat {dump} | sed \'1s/nr_data_blocks="[0-9]*"/nr_data_blocks="{blocks}"/\' > /tmp/backup.xml && '
        f"lvcreate -q -y -L {size}b -n restored docker && "
        f"thin_restore -q --nr-data-blocks {blocks} -i /tmp/backup.xml -o /dev/docker/restored && "
        "thin_check -q /dev/docker/restored && thin_dump /dev/docker/restored > /tmp/again.xml && "
        "sed -i 's/ nr_data_blocks=\"[0-9]*\"//' /tmp/backup.xml /tmp/again.xml && cmp /tmp/backup.xml /tmp/again.xml; "
        "status=$?; lvremove -q -y docker/restored; rm -f /tmp/backup.xml /tmp/again.xml; exit $status"
    )
    return vm.run(["bash", "-c", script], check=False).stderr


def test_a_live_pool_is_backed_up_from_a_held_snapshot_and_the_backup_restores(vm: VM) -> None:
    pool_with_files(vm, 20)
    # A backup killed between reserve and release leaves the kernel holding a snapshot: the next one copes.
    vm.run(["dmsetup", "message", TPOOL, "0", "reserve_metadata_snap"])
    made = _backup(vm)
    kernel = _kernel_status(vm)
    assert kernel[6] == "-"  # no metadata snapshot left held
    assert made["method"] == "metadata-snapshot" and made["nr_data_blocks"] == int(kernel[5].split("/")[1])
    assert made["transaction_id"] == int(kernel[3]) == made["lvm_transaction_id"]
    thin_id = _lv_field(vm, "docker/vol", "thin_id")
    assert made["devices"][thin_id] * made["data_block_size"] * 512 >= 60 * 1024**2  # the 60 MiB written, mapped
    assert _restores(vm, made) == ""
    assert "transaction_id" in vm.run(["cat", f"{made['folder']}/{made['files']['vg']}"]).stdout
    assert vm.run(["stat", "-c", "%a", made["folder"]]).stdout.strip() == "700"
    vm.run(["umount", "/mnt/vol"])


def test_an_inactive_pool_is_read_through_its_component_and_left_inactive(vm: VM) -> None:
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0
    vm.run(["lvcreate", "-q", "-V", "1g", "-T", "docker/thinpool", "-n", "vol"])
    vm.run(["dd", "if=/dev/urandom", "of=/dev/docker/vol", "bs=1M", "count=30", "oflag=direct", "status=none"])
    vm.run(["vgchange", "-q", "-an", "docker"])
    made = _backup(vm)
    assert made["method"] == "component-activation" and _lv_field(vm, "docker/vol", "thin_id") in made["devices"]
    assert _restores(vm, made) == ""
    active = vm.run(["lvs", "-a", "--noheadings", "-o", "lv_name", "-S", "lv_active=active", "docker"]).stdout
    assert active.split() == []  # the metadata component was deactivated again
    vm.run(["vgchange", "-q", "-ay", "docker"])  # and the pool activates: nothing holds its metadata
    listed = json.loads(vm.thinpool("backup", "--list", "--json").stdout)["backups"]
    assert [item["transaction_id"] for item in listed] == [made["transaction_id"]]


def test_maintain_backs_up_when_the_metadata_moves_and_keeps_the_newest(vm: VM) -> None:
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0

    def maintain() -> dict[str, Any]:
        code, result, err = thinpool_json(vm, "maintain", "docker/thinpool", "--backup-every", "1s", "--keep", "2")
        assert code == 0 and result["ok"], err or result
        return dict(result["pools"][0]["backup"])

    assert maintain()["reason"] == "the pool has no backup yet"
    assert maintain() == {"reason": "", "taken": None, "error": ""}  # nothing changed: no new backup
    for n in (1, 2):
        vm.run(["sleep", "1"])  # backups are named by the second
        vm.run(["lvcreate", "-q", "-V", "1g", "-T", "docker/thinpool", "-n", f"vol{n}"])  # the kernel's id moves
        taken = maintain()
        assert "metadata changed" in taken["reason"] and taken["taken"]["transaction_id"] == int(_kernel_status(vm)[3])
    listed = json.loads(vm.thinpool("backup", "--list", "--json").stdout)["backups"]
    assert len(listed) == 2 and listed[0]["transaction_id"] == taken["taken"]["transaction_id"]
    names = vm.run(["ls", "/var/lib/thinpool/backups/docker-thinpool"]).stdout.split()
    assert len(names) == 6  # two backups of three files each: the oldest was rotated out whole
