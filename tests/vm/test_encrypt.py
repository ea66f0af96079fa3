"""--encrypt on the release's own cryptsetup: LUKS2 under each PV, the key file, crypttab, grow and destroy, and
what is refused and left untouched. The boots that open the disks (or keep all down without the key) are in
test_reboot, on the shared systemd guest."""

from __future__ import annotations

import json

import pytest

from thinpool.cli.options import spec_to_argv
from thinpool.core import crypt
from thinpool.core.spec import Encryption, PoolSpec
from thinpool.core.units import MiB
from thinpool.rehearse.vm import VM

from .helpers import assert_pool_matches, thinpool_json
from .machines import host_plan

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

KEY = "/etc/thinpool/keys/docker.key"
SPEC = PoolSpec(devices=("/dev/vda", "/dev/vdc"), encryption=Encryption(KEY))
MARK = "thinpool-plaintext-mark-0123456789"


SCAN = """import sys
mark, found, tail = sys.argv[2].encode(), False, b""
with open(sys.argv[1], "rb") as device:
    while not found and (block := device.read(1 << 20)):
        found, tail = mark in tail + block, block[-len(mark):]
print(found)
"""


def _holds(vm: VM, device: str, mark: str) -> bool:
    """Whether ``mark`` is anywhere on ``device``, read whole."""
    return vm.python("-c", SCAN, device, mark, timeout=600).stdout.strip() == "True"


def _hash(vm: VM, device: str) -> str:
    """The device's first 64 MiB: the LUKS header, and the data area behind it."""
    return vm.run(["bash", "-c", f"head -c {64 * MiB} {device} | sha256sum"]).stdout


def test_each_disk_gets_luks_the_pool_is_exactly_planned_and_nothing_readable_reaches_the_disk(vm: VM) -> None:
    # a saved plan, as an operator reviews it: its LUKS UUIDs are drawn once, and the apply keeps them
    vm.thinpool("plan", "--out", "/root/plan.json", *spec_to_argv(SPEC))
    planned = json.loads(vm.run(["cat", "/root/plan.json"]).stdout)["actions"]
    uuids = {action["argv"][-1]: action["argv"][action["argv"].index("--uuid") + 1] for action in planned
             if action["kind"] == "luks-header"}  # fmt: skip
    code, result, err = thinpool_json(vm, "apply", "--yes", "/root/plan.json")
    assert code == 0 and result["ok"], err or result
    assert {device: vm.run(["cryptsetup", "luksUUID", device]).stdout.strip() for device in uuids} == uuids
    kinds = [step["kind"] for step in result["steps"]]
    per_disk = ["luks-header", "luks-header-backup", "luks-mapping"]
    assert kinds[:8] == ["key-file", *per_disk, *per_disk, "crypttab"]
    assert_pool_matches(vm, host_plan(SPEC))  # exact extents: the mapping's size was known before luksFormat
    mode = vm.run(["stat", "-c", "%a %s", KEY, "/etc/thinpool/keys"]).stdout.split()
    assert mode == ["400", str(crypt.KEY_BYTES), "700", mode[3]], mode
    crypttab = vm.run(["cat", "/etc/crypttab"]).stdout
    for device in SPEC.devices:
        uuid = vm.run(["cryptsetup", "luksUUID", device]).stdout.strip()
        assert f"{crypt.mapping_name(device)} UUID={uuid} {KEY} {crypt.CRYPTTAB_OPTIONS}\n" in crypttab
        dump = vm.run(["cryptsetup", "luksDump", device]).stdout
        assert "Version:       \t2" in dump and "offset: 16777216 [bytes]" in dump, dump
        kept = crypt.header_backup(KEY, uuid)  # the header's copy opens the disk like the header
        assert vm.run(["cryptsetup", "open", "--test-passphrase", "--header", kept, "--key-file", KEY, device]).ok
    pvs = vm.run(["pvs", "--noheadings", "-o", "pv_name", "--select", "vg_name=docker"]).stdout.split()
    assert sorted(pvs) == ["/dev/mapper/vda_crypt", "/dev/mapper/vdc_crypt"]
    again = thinpool_json(vm, "apply", "--yes", *spec_to_argv(SPEC))
    assert again[0] == 0 and again[1]["changed"] is False, again

    # What a thin volume holds is on the mapping in the clear and nowhere on the disk.
    vm.run(["lvcreate", "-q", "-y", "-V", "64m", "-T", "docker/thinpool", "-n", "plain"])
    vm.run(["bash", "-c", f"yes {MARK} | head -c {32 * MiB} > /dev/docker/plain && sync"])
    on = {path: _holds(vm, path, MARK) for path in ("/dev/mapper/vda_crypt", "/dev/vda")}
    assert on == {"/dev/mapper/vda_crypt": True, "/dev/vda": False}, on

    # grow encrypts the disk it adds with the VG's key; destroy --erase-encryption leaves no key slot to open
    code, result, err = thinpool_json(vm, "grow", "--yes", "/dev/vdb")
    assert code == 0 and [step["kind"] for step in result["steps"]][:4] == [*per_disk, "crypttab"], err or result
    assert "vdb_crypt UUID=" in vm.run(["cat", "/etc/crypttab"]).stdout
    vm.run(["lvchange", "-q", "-an", "docker/plain"])
    code, result, err = thinpool_json(vm, "destroy", "--yes", "--erase-encryption")
    assert code == 0 and result["ok"], err or result
    erased = [step["kind"] for step in result["steps"] if step["kind"].startswith("luks")]
    assert erased == ["luks-mapping", "luks-header", "luks-header-backup"] * 3, result["steps"]
    assert vm.run(["bash", "-c", "ls /dev/mapper | grep _crypt || true"]).stdout == ""
    assert vm.run(["bash", "-c", "cat /etc/crypttab; ls /etc/thinpool/keys"]).stdout == "docker.key\n"
    for device in ("/dev/vda", "/dev/vdb", "/dev/vdc"):
        opened = vm.run(["cryptsetup", "open", "--test-passphrase", "--key-file", KEY, device], check=False)
        assert opened.returncode != 0, f"{device} still opens with the key"


def test_a_luks_disk_is_never_formatted_again_and_a_refusal_leaves_it_as_it_was(vm: VM) -> None:
    """Someone else's LUKS disk: a wrong key, a missing key, and no --encrypt are each refused, and the disk's
    header and data area hash the same after each; no key file, mapping or crypttab line is made."""
    vm.run(["bash", "-c", "head -c 64 /dev/urandom > /root/theirs.key && head -c 64 /dev/urandom > /root/other.key"])
    vm.run(["cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations",
            "1000", "--key-file", "/root/theirs.key", "/dev/vdb"])  # fmt: skip
    before = _hash(vm, "/dev/vdb")
    refusals = {
        "wrong key": (("--encrypt", "--key-file", "/root/other.key"), "does not open /dev/vdb's LUKS header"),
        "no key": (("--encrypt",), f"the key file {KEY} is missing"),
        "not --encrypt": ((), "crypto_LUKS signature"),
    }
    for name, (options, said) in refusals.items():
        code, refusal, err = thinpool_json(vm, "apply", "--yes", *options, "/dev/vdb")
        assert code == 1 and said in refusal.get("problem", ""), (name, refusal, err)
        assert refusal["fix"] and "Traceback" not in err, name
        assert _hash(vm, "/dev/vdb") == before, f"{name}: the disk changed"
    made = vm.run(["bash", "-c", f"ls {KEY} /etc/crypttab /dev/mapper/vdb_crypt 2>/dev/null || true"]).stdout
    assert made == "", made
