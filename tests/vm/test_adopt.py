"""A pool another tool made, adopted: thinpool backs it up and watches it, and nothing of the owner's changes.

The Proxmox-shaped host is made by hand the way Proxmox VE's installer and its lvmthin storage make it:
VG pve with root and swap, the thin pool pve/data (lvcreate, then lvconvert --type thin-pool), a guest's disk
vm-100-disk-0 (not auto-activated), a template's base-101-disk-0 (read-only, activation skipped) and a
snapshot snap_vm-100-disk-0_before.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from thinpool.rehearse.vm import VM

from .helpers import thinpool_json

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

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
