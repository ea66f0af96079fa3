"""--encrypt on the release's own cryptsetup: LUKS2 under each PV, the key file, crypttab, what is refused and
left untouched, and (under the release's systemd) the boot that opens the disks before the pool and docker, or
keeps both down when the key is missing."""

from __future__ import annotations

import time

import pytest

from thinpool.cli.options import spec_to_argv
from thinpool.core import crypt
from thinpool.core.spec import Encryption, PoolSpec
from thinpool.core.units import MiB
from thinpool.rehearse.vm import VM

from .helpers import assert_pool_matches, thinpool_json
from .machines import host_plan, tiny_images

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

KEY = "/etc/thinpool/keys/docker.key"
SPEC = PoolSpec(devices=("/dev/vda", "/dev/vdc"), encryption=Encryption(KEY))
MARK = "thinpool-plaintext-mark-0123456789"


def _hash(vm: VM, device: str) -> str:
    """The device's first 64 MiB: the LUKS header, and the data area behind it."""
    return vm.run(["bash", "-c", f"head -c {64 * MiB} {device} | sha256sum"]).stdout


def test_each_disk_gets_luks_the_pool_is_exactly_planned_and_nothing_readable_reaches_the_disk(vm: VM) -> None:
    code, result, err = thinpool_json(vm, "apply", "--yes", *spec_to_argv(SPEC))
    assert code == 0 and result["ok"], err or result
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
    on = {
        path: vm.run(["bash", "-c", f"grep -c -a -m1 {MARK} {path} || true"], timeout=300).stdout.strip()
        for path in ("/dev/mapper/vda_crypt", "/dev/vda")
    }
    assert on == {"/dev/mapper/vda_crypt": "1", "/dev/vda": "0"}, on


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


def _unit(vm: VM, unit: str, *properties: str) -> dict[str, str]:
    shown = vm.run(["systemctl", "show", unit, *(f"--property={name}" for name in properties)]).stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def _reboot(vm: VM) -> str:
    vm.reboot()
    return vm.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=600).stdout.strip()


RUN = ("docker", "run", "--rm", "--network", "none", "-v", "vol1:/v", "tiny:1", "sh", "-c")


def test_at_boot_the_key_opens_the_disk_before_the_pool_and_docker_and_without_it_all_stay_down(
    systemd_vm: VM,
) -> None:
    vm = systemd_vm
    images = tiny_images(vm)
    args = ("--encrypt", "--engine", "docker-overlay2-thin", "--volume-size", "1GiB", "/dev/vda")
    code, result, err = thinpool_json(vm, "apply", "--yes", *args)
    assert code == 0 and result["ok"], err or result
    vm.thinpool("install-units")
    vm.run(["systemctl", "enable", "--now", "docker.service"], timeout=300)
    vm.run(["docker", "import", images["rootfs"], "tiny:1"], timeout=300)
    vm.run([*RUN, "echo kept > /v/data"], timeout=300)

    assert _reboot(vm) in ("running", "degraded")
    opened = _unit(vm, "systemd-cryptsetup@vda_crypt.service", "ActiveEnterTimestampMonotonic", "ActiveState")
    activated = _unit(vm, "thinpool-activate.service", "ActiveEnterTimestampMonotonic")
    docker = _unit(vm, "docker.service", "ExecMainStartTimestampMonotonic")
    moments = [int(opened["ActiveEnterTimestampMonotonic"]), int(activated["ActiveEnterTimestampMonotonic"]),
               int(docker["ExecMainStartTimestampMonotonic"])]  # fmt: skip
    assert opened["ActiveState"] == "active" and 0 < moments[0] < moments[1] < moments[2], moments
    assert vm.run([*RUN, "cat /v/data"], timeout=300).stdout == "kept\n"

    vm.run(["mv", KEY, "/root/docker.key.saved"])  # the key is gone: the disk cannot be opened at boot
    assert _reboot(vm) in ("running", "degraded")
    assert _unit(vm, "systemd-cryptsetup@vda_crypt.service", "ActiveState")["ActiveState"] == "failed"
    assert _unit(vm, "docker.service", "ExecMainStartTimestampMonotonic")["ExecMainStartTimestampMonotonic"] == "0"
    assert vm.run(["findmnt", "/var/lib/docker"], check=False).returncode != 0
    assert vm.run(["ls", "-A", "/var/lib/docker"]).stdout == ""  # nothing started on the empty folder
    doctor = vm.thinpool("doctor", "docker/thinpool", check=False)
    assert doctor.returncode != 0 and "vda_crypt (UUID=" in doctor.stderr and "is missing" in doctor.stderr
    assert "systemctl restart systemd-cryptsetup@vda_crypt.service" in doctor.stderr, doctor.stderr

    vm.run(["mv", "/root/docker.key.saved", KEY])  # doctor's fix, step by step
    vm.run(["systemctl", "restart", "systemd-cryptsetup@vda_crypt.service"], timeout=120)
    vm.thinpool("activate", timeout=300)
    started = time.monotonic()
    vm.run(["systemctl", "start", "docker.service"], timeout=300)
    assert vm.run([*RUN, "cat /v/data"], timeout=300).stdout == "kept\n"
    print(f"docker up {time.monotonic() - started:.1f}s after the key came back")
