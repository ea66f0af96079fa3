"""A pool another tool made, adopted: thinpool backs it up and watches it, and nothing of the owner's changes.

Incus is the release's own (incus-base, containers only), its daemon started by hand on the shared VM: it
makes its LVM thin pool on a disk, imports a busybox image from the share (no network), runs a container and
snapshots it. thinpool adopts that pool, backs it up, repairs its metadata, and Incus goes on with it.

The Proxmox-shaped host is made by hand the way Proxmox VE's installer and its lvmthin storage make it:
VG pve with root and swap, the thin pool pve/data (lvcreate, then lvconvert --type thin-pool), a guest's disk
vm-100-disk-0 (not auto-activated), a template's base-101-disk-0 (read-only, activation skipped) and a
snapshot snap_vm-100-disk-0_before.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from thinpool.rehearse.vm import VM

from .helpers import damage_metadata, start_daemon, thinpool_json
from .machines import tiny_incus_image

pytestmark = pytest.mark.vm

PROXMOX_SHAPE = r"""
set -e
pvcreate -q /dev/vda
vgcreate -q pve /dev/vda
lvcreate -q -y -L 256m -n root pve
lvcreate -q -y -L 128m -n swap pve
lvcreate -q -Wy --yes -L 2g -n data pve
lvconvert -q --yes --type thin-pool --poolmetadatasize 64m pve/data
lvcreate -q -aly -V 64m --name vm-100-disk-0 --thinpool pve/data
lvchange -q --setautoactivation n pve/vm-100-disk-0
head -c 16M /dev/urandom > /dev/pve/vm-100-disk-0
lvcreate -q -n snap_vm-100-disk-0_before -pr -s pve/vm-100-disk-0
lvcreate -q -aly -V 32m --name vm-101-disk-0 --thinpool pve/data
lvrename -q pve vm-101-disk-0 base-101-disk-0
lvchange -q -an -pr -ky pve/base-101-disk-0
sync
"""
# Everything lvm records of each LV of pve, and of pve itself.
FIELDS = "lv_name,lv_attr,lv_size,lv_tags,lv_profile,lv_when_full,origin,pool_lv,seg_monitor,data_percent,thin_id"


def _record(vm: VM) -> dict[str, Any]:
    lvs = json.loads(vm.run(["lvs", "-a", "--reportformat", "json", "--units", "b", "-o", FIELDS, "pve"]).stdout)
    vgs = json.loads(vm.run(["vgs", "--reportformat", "json", "-o", "vg_tags,vg_free_count", "pve"]).stdout)
    return {
        "lvs": {row["lv_name"]: row for row in lvs["report"][0]["lv"]},
        "vg": vgs["report"][0]["vg"][0],
        "disk": vm.run(["sha256sum", "/dev/pve/vm-100-disk-0"]).stdout.split()[0],
    }


def _changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, set[str]]:
    """Each LV whose record differs, with the fields that differ (the VG's and the disk's too)."""
    found = {
        name: {key for key in row if after["lvs"].get(name, {}).get(key) != row[key]}
        for name, row in before["lvs"].items()
    }
    found["(vg)"] = {key for key in before["vg"] if after["vg"][key] != before["vg"][key]}
    found["(disk)"] = {"sha256"} if after["disk"] != before["disk"] else set()
    assert set(after["lvs"]) == set(before["lvs"]), "an LV was added or removed"
    return {name: keys for name, keys in found.items() if keys}


@pytest.mark.sweep  # CI time: CI adopts the real Incus pool below; this runs with THINPOOL_MATRIX=full
@pytest.mark.releases("debian-12", "debian-13", ci="debian-13")
def test_a_proxmox_shaped_pool_is_adopted_backed_up_and_nothing_of_it_changes(vm: VM) -> None:
    vm.run(["bash", "-c", PROXMOX_SHAPE], timeout=300)
    before = _record(vm)

    code, preview, err = thinpool_json(vm, "adopt", "pve/data", "--dry-run")
    assert code == 0 and preview["owner"]["owner"] == "proxmox", err or preview
    assert [step["argv"][-1] for step in preview["planned"]] == ["pve/data"]
    assert _changed(before, _record(vm)) == {}  # a preview changes nothing

    code, adopted, err = thinpool_json(vm, "adopt", "pve/data", "--yes")
    assert code == 0 and adopted["ok"] and adopted["changed"], err or adopted
    duties = {duty["what"]: duty["done"] for duty in adopted["duties"]}
    assert duties["back up its metadata"] and not duties["trim"] and duties["set the when-full mode"]
    tagged = _record(vm)
    assert _changed(before, tagged) == {"data": {"lv_tags"}}  # only thinpool's tags, on the pool
    assert set(tagged["lvs"]["data"]["lv_tags"].split(",")) == {"thinpool.adopted", "thinpool.when-full"}
    assert thinpool_json(vm, "adopt", "pve/data", "--yes")[1]["changed"] is False
    made_by = [
        line.split(None, 2)[2] for line in vm.thinpool("status", "pve/data").stdout.splitlines() if "made by" in line
    ]
    assert made_by and made_by[0].startswith("Proxmox VE (its volumes are named as Proxmox VE names them"), made_by
    assert made_by[0].endswith(", adopted by thinpool)"), made_by

    code, doctor, err = thinpool_json(vm, "doctor", "pve/data")
    found = {finding["code"]: finding for finding in doctor["findings"]}
    assert "made by Proxmox VE" in found["pool-owner"]["problem"], doctor
    assert not [finding for finding in doctor["findings"] if finding["severity"] == "critical"], doctor

    code, cared, err = thinpool_json(vm, "maintain")  # the timer's pass: every pool made or adopted
    assert code == 0 and cared["ok"], err or cared
    (pass_,) = cared["pools"]
    assert (pass_["vg"], pass_["pool"]) == ("pve", "data") and pass_["backup"]["taken"], pass_
    assert not [step for step in pass_["steps"] if step["kind"] == "reclaim"]
    listed = json.loads(vm.thinpool("backup", "--list", "pve/data", "--json").stdout)["backups"]
    assert len(listed) == 1 and listed[0]["transaction_id"] == pass_["backup"]["taken"]["transaction_id"]

    # The pool cannot autoextend (no profile): its owner left the mode to thinpool, so writes now fail at
    # once when it is full. The owner's volumes, their data, and pve's record are as they were.
    assert _changed(before, _record(vm)) == {"data": {"lv_tags", "lv_when_full"}}
    assert _record(vm)["lvs"]["data"]["lv_when_full"] == "error"


INCUSD = ("/usr/libexec/incus/incusd", "--group", "incus-admin")
INCUS_POOL = "tp/IncusThinPool"  # Incus names the VG after its storage pool, and the thin pool IncusThinPool


def _incus(vm: VM, *args: str, timeout: int = 300) -> str:
    return vm.run(["incus", *args], timeout=timeout).stdout


def _in_c1(vm: VM, command: str) -> str:
    return _incus(vm, "exec", "c1", "--", "sh", "-c", command).strip()


def _tp_record(vm: VM) -> dict[str, dict[str, str]]:
    fields = "lv_name,lv_attr,lv_size,lv_tags,lv_profile,lv_when_full,origin,pool_lv,thin_id"
    lvs = json.loads(vm.run(["lvs", "-a", "--reportformat", "json", "--units", "b", "-o", fields, "tp"]).stdout)
    return {row["lv_name"]: row for row in lvs["report"][0]["lv"]}


@pytest.fixture
def incus(vm: VM) -> Any:
    start_daemon(vm, INCUSD, ["incus", "admin", "waitready", "--timeout", "1"], "/var/log/incusd.log")
    yield vm
    vm.run(["bash", "-c", "incus stop --all --force; incus admin shutdown --timeout 60"], check=False, timeout=120)


@pytest.mark.releases("debian-13")
def test_an_incus_pool_is_adopted_backed_up_repaired_and_incus_still_manages_it(incus: VM) -> None:
    vm = incus
    _incus(vm, "storage", "create", "tp", "lvm", "source=/dev/vdb", "volume.size=128MiB")
    _incus(vm, "image", "import", tiny_incus_image(vm), "--alias", "tiny")
    _incus(vm, "launch", "tiny", "c1", "--storage", "tp", timeout=600)
    _in_c1(vm, "echo hello > /kept; sync")
    _incus(vm, "snapshot", "create", "c1", "before")
    _incus(vm, "stop", "c1", timeout=120)
    made = _tp_record(vm)
    assert {"containers_c1", "containers_c1-before"} <= set(made), made

    code, adopted, err = thinpool_json(vm, "adopt", INCUS_POOL, "--yes")
    assert code == 0 and adopted["owner"]["owner"] == "incus" and adopted["changed"], err or adopted
    duties = {duty["what"]: duty["done"] for duty in adopted["duties"]}
    assert duties["back up its metadata"] and not duties["trim"], duties
    after = _tp_record(vm)
    changed = {name for name, row in made.items() if after[name] != row}
    assert changed == {"IncusThinPool"} and set(after) == set(made), (made, after)
    assert {key for key in made["IncusThinPool"] if after["IncusThinPool"][key] != made["IncusThinPool"][key]} == {
        "lv_tags"
    }

    # Incus made the pool of all of tp with lvm's default metadata (4 MiB): doctor says so, with fixes in lvm's
    # words (Incus sets neither after the pool is made), and following them gives a pool doctor finds clean.
    code, doctor, err = thinpool_json(vm, "doctor", INCUS_POOL)
    found = {finding["code"]: finding for finding in doctor["findings"]}
    assert "made by Incus" in found["pool-owner"]["problem"], doctor
    assert code == 3 and found["metadata-below-model"]["severity"] == "warning", json.dumps(doctor)
    grow = found["metadata-below-model"]["fix"].split(" (")[0]
    assert re.fullmatch(r"vgextend tp /dev/sdX && lvextend --poolmetadatasize \+\d+m tp/IncusThinPool", grow), grow
    no_room = found["no-autoextend-profile"]
    assert no_room["severity"] == "info" and no_room["fix"].startswith("vgextend tp /dev/sdX && lvextend -l +")
    vm.run(["bash", "-c", grow.replace("/dev/sdX", "/dev/vdc")])
    code, doctor, err = thinpool_json(vm, "doctor", INCUS_POOL)
    (room,) = [finding for finding in doctor["findings"] if finding["code"] == "no-autoextend-profile"]
    assert room["severity"] == "warning" and room["fix"] == f"thinpool adopt {INCUS_POOL} --autoextend", doctor
    code, armed, err = thinpool_json(vm, "adopt", INCUS_POOL, "--autoextend", "--yes")
    assert code == 0 and armed["changed"], err or armed
    code, backup, err = thinpool_json(vm, "backup", INCUS_POOL)
    assert code == 0, err or backup
    code, doctor, err = thinpool_json(vm, "doctor", INCUS_POOL)
    assert code == 0 and {finding["severity"] for finding in doctor["findings"]} == {"info"}, json.dumps(doctor)

    damage_metadata(vm, "bs=4k count=1", pool=INCUS_POOL)  # the superblock
    code, repaired, err = thinpool_json(vm, "repair", INCUS_POOL, "--yes")
    assert code == 0 and repaired["before"]["state"] == "damaged", err or repaired
    assert repaired["after"]["state"] == "healthy" and repaired["lost"] == [], repaired

    _incus(vm, "start", "c1", timeout=300)
    assert _in_c1(vm, "cat /kept") == "hello"  # the container's own files, through Incus
    _in_c1(vm, "echo changed > /kept; sync")
    _incus(vm, "stop", "c1", timeout=120)
    _incus(vm, "snapshot", "restore", "c1", "before", timeout=300)
    _incus(vm, "start", "c1", timeout=300)
    assert _in_c1(vm, "cat /kept") == "hello"  # and its snapshot's

    # Incus still manages the pool: it creates, snapshots and deletes on it.
    _incus(vm, "launch", "tiny", "c2", "--storage", "tp", timeout=600)
    _incus(vm, "snapshot", "create", "c2", "s1")
    assert {"containers_c2", "containers_c2-s1"} <= set(_tp_record(vm))
    _incus(vm, "delete", "--force", "c2", timeout=300)
    assert not {name for name in _tp_record(vm) if name.startswith("containers_c2")}
    code, doctor, err = thinpool_json(vm, "doctor", INCUS_POOL)
    assert not [f for f in doctor["findings"] if f["severity"] == "critical"], doctor
