"""thinpool under the release's real systemd (PID 1, udev, lvm's own units), across real reboots on the same disks.

The guest boots the release's systemd; what the tests write to its root (fstab, daemon.json, units, lvm
profiles) is kept on a state disk, and each reboot is a clean shutdown and a new boot of the same disks.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from thinpool.core.units import MiB
from thinpool.rehearse.vm import VM

from .helpers import lvs, thinpool_json
from .machines import tiny_images

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

TEXTFILE = "/var/lib/node_exporter/textfile_collector/thinpool.prom"
SOONER = "/etc/systemd/system/thinpool-maintain.timer.d/sooner.conf"
CHECK_LOG = "/var/log/thin_check.args"
# lvm's thin_check_executable pointed at a wrapper that logs its arguments, then runs the real thin_check:
# what lvm ran when the boot activated the pool. SYSTEMD_RESET gives lvm.conf back.
LOG_THIN_CHECK = f"""set -e
printf '#!/bin/sh\\necho "$*" >> {CHECK_LOG}\\nexec /usr/sbin/thin_check "$@"\\n' > /usr/local/sbin/thin_check-logged
chmod 755 /usr/local/sbin/thin_check-logged; rm -f {CHECK_LOG}
[ -f /var/lib/lvm.conf.orig ] || cp /etc/lvm/lvm.conf /var/lib/lvm.conf.orig
sed -i 's|^\\(\\s*\\)# thin_check_executable = .*|\\1thin_check_executable = "/usr/local/sbin/thin_check-logged"|' \\
  /etc/lvm/lvm.conf
lvmconfig global/thin_check_executable
"""


def _show(vm: VM, unit: str, *properties: str) -> dict[str, str]:
    shown = vm.run(["systemctl", "show", unit, *(f"--property={name}" for name in properties)]).stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def _monotonic(vm: VM, unit: str, what: str) -> int:
    """When ``unit`` reached a state in this boot (µs since boot; 0: not in this boot)."""
    return int(_show(vm, unit, what)[what])


def _wait_for(vm: VM, unit: str, what: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while (value := _monotonic(vm, unit, what)) == 0 and time.monotonic() < deadline:
        time.sleep(5)
    return value


def _reboot(vm: VM, *, new_tpm: bool = False) -> str:
    """A clean reboot on the same disks; returns the state systemd reached once its boot jobs were done."""
    vm.reboot(new_tpm=new_tpm)
    return vm.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=600).stdout.strip()


def _assert_opened_then_activated_then_docker(vm: VM) -> None:
    """This boot opened vda_crypt, then activated the pool, then started docker."""
    opened = _show(vm, "systemd-cryptsetup@vda_crypt.service", "ActiveEnterTimestampMonotonic", "ActiveState")
    activated = _show(vm, "thinpool-activate.service", "ActiveEnterTimestampMonotonic")
    docker = _show(vm, "docker.service", "ExecMainStartTimestampMonotonic")
    moments = [int(opened["ActiveEnterTimestampMonotonic"]), int(activated["ActiveEnterTimestampMonotonic"]),
               int(docker["ExecMainStartTimestampMonotonic"])]  # fmt: skip
    assert opened["ActiveState"] == "active" and 0 < moments[0] < moments[1] < moments[2], moments


def _luks_header(vm: VM, device: str) -> dict[str, Any]:
    """``device``'s LUKS2 header as cryptsetup prints it in JSON."""
    return dict(json.loads(vm.run(["cryptsetup", "luksDump", "--dump-json-metadata", device]).stdout))


def _token_types(header: dict[str, Any]) -> list[str]:
    """The types of a header's tokens (systemd-cryptenroll's TPM2 slot: systemd-tpm2)."""
    return [token["type"] for token in header["tokens"].values()]


@pytest.mark.sweep  # CI boots the encrypted pool below, which proves this chain with the unlock before it
def test_after_install_units_a_reboot_brings_the_pool_up_before_docker_which_runs_on_it(systemd_vm: VM) -> None:
    vm = systemd_vm
    images = tiny_images(vm)
    assert vm.run(["ps", "-p", "1", "-o", "comm="]).stdout.strip() == "systemd"
    code, result, err = thinpool_json(
        vm, "apply", "--yes", "--engine", "docker-overlay2-thin", "--volume-size", "1GiB", "/dev/vda"
    )
    assert code == 0, err or result
    installed = vm.thinpool("install-units", "--metrics").stdout
    assert "thinpool-activate.service" in installed
    vm.run(["systemctl", "enable", "--now", "docker.service"], timeout=300)  # as Debian's docker.io has it
    vm.run(["docker", "import", images["rootfs"], "tiny:1"], timeout=300)
    # The timer as installed, fired sooner than its OnBootSec=2min so that the test does not wait for it.
    vm.run(["mkdir", "-p", "/etc/systemd/system/thinpool-maintain.timer.d"])
    vm.run(["bash", "-c", f"printf '[Timer]\\nOnBootSec=\\nOnBootSec=40s\\n' > {SOONER}"])
    assert "thin_check-logged" in vm.run(["bash", "-c", LOG_THIN_CHECK]).stdout

    assert _reboot(vm) in ("running", "degraded")
    activated = _monotonic(vm, "thinpool-activate.service", "ActiveEnterTimestampMonotonic")
    mounted = _monotonic(vm, "var-lib-docker.mount", "ActiveEnterTimestampMonotonic")
    docker = _monotonic(vm, "docker.service", "ExecMainStartTimestampMonotonic")
    assert 0 < activated < docker and 0 < mounted < docker, (activated, mounted, docker)
    found = lvs(vm, "docker")
    assert found["thinpool"].active and found["docker-data"].active and found["thinpool"].seg_monitor == "monitored"
    checks = vm.run(["cat", CHECK_LOG]).stdout.splitlines()  # apply's fast check is what the boot ran
    assert checks and all("--skip-mappings" in line and "thinpool_tmeta" in line for line in checks), checks
    info = json.loads(vm.run(["docker", "info", "--format", "{{json .}}"]).stdout)
    assert info["DockerRootDir"] == "/var/lib/docker" and dict(info["DriverStatus"])["Backing Filesystem"] == "xfs"
    before = Decimal(lvs(vm, "docker")["thinpool"].data_percent)
    vm.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "tiny:1",
            "sh",
            "-c",
            "head -c 67108864 /dev/urandom > /big && sync",
        ],
        timeout=600,
    )
    vm.run(["sync"])
    pool = lvs(vm, "docker")["thinpool"]
    grown = int((Decimal(pool.data_percent) - before) * pool.size / 100)
    assert grown >= 48 * MiB, f"the container's 64 MiB did not land in the pool: it grew {grown} B"

    written = vm.run(["cat", TEXTFILE]).stdout  # the metrics writer, started by systemd at boot
    assert 'thinpool_up{vg="docker",pool="thinpool"} 1.0' in written
    fired = _wait_for(vm, "thinpool-maintain.service", "ExecMainExitTimestampMonotonic", 240)
    assert fired > 0, vm.run(["systemctl", "list-timers", "--all"]).stdout
    assert _show(vm, "thinpool-maintain.service", "Result")["Result"] == "success"
    journal = vm.run(["journalctl", "-b", "-u", "thinpool-maintain.service", "--no-pager"]).stdout
    assert "thinpool maintain" in journal or "Day-2 care" in journal, journal


@pytest.mark.releases("debian-12")
@pytest.mark.sweep  # its own systemd boot of Debian 12; CI runs migrate's steps in test_migrate on the same release
def test_migrate_without_step_moves_a_devicemapper_host_under_systemd_and_it_reboots_on_overlay2(
    systemd_vm: VM,
) -> None:
    """Docker 20.10's devicemapper, with real udev: migrate runs export, systemctl stop, switch, start, import."""
    vm = systemd_vm
    images = tiny_images(vm)
    code, result, err = thinpool_json(vm, "apply", "--yes", "--engine", "docker-devicemapper", "/dev/vda")
    assert code == 0, err or result
    vm.run(["systemctl", "enable", "--now", "docker.service"], timeout=300)
    assert json.loads(vm.run(["docker", "info", "--format", "{{json .Driver}}"]).stdout) == "devicemapper"
    vm.run(["docker", "import", images["rootfs"], "tiny:1"], timeout=300)
    vm.run(
        [
            "docker",
            "run",
            "--network",
            "none",
            "--name",
            "c1",
            "-v",
            "vol1:/v",
            "tiny:1",
            "sh",
            "-c",
            "echo hello > /f && echo kept > /v/data",
        ],
        timeout=300,
    )

    code, result, err = thinpool_json(
        vm,
        "migrate",
        "--to",
        "docker-overlay2-thin",
        "--staging",
        "/srv/staging",
        "--commit-containers",
        "--yes",
        timeout=1200,
    )
    assert code == 0 and result["ok"], err or result
    assert [step["step"] for step in result["steps"]] == ["export", "switch", "import"], result["steps"]
    assert json.loads(vm.run(["docker", "info", "--format", "{{json .Driver}}"]).stdout) == "overlay2"

    assert _reboot(vm) in ("running", "degraded")
    assert _monotonic(vm, "docker.service", "ExecMainStartTimestampMonotonic") > 0
    assert json.loads(vm.run(["docker", "info", "--format", "{{json .Driver}}"]).stdout) == "overlay2"
    run = [
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "vol1:/v",
        "thinpool-migrate/c1:committed",
        "sh",
        "-c",
        "cat /f /v/data",
    ]
    assert vm.run(run, timeout=300).stdout == "hello\nkept\n"


KEY = "/etc/thinpool/keys/docker.key"
RUN = ("docker", "run", "--rm", "--network", "none", "-v", "vol1:/v", "tiny:1", "sh", "-c")


def test_at_boot_the_key_opens_the_disk_before_the_pool_and_docker_and_without_it_all_stay_down(
    systemd_vm: VM,
) -> None:
    vm = systemd_vm
    images = tiny_images(vm)
    args = ("--encrypt", "--engine", "docker-overlay2-thin", "--volume-size", "1GiB", "/dev/vda")
    code, result, err = thinpool_json(vm, "apply", "--yes", *args)
    assert code == 0 and result["ok"], err or result
    unlock = "x-systemd.requires=systemd-cryptsetup@vda_crypt.service"  # a missing key fails the mount at once
    assert unlock in vm.run(["grep", " /var/lib/docker ", "/etc/fstab"]).stdout
    vm.thinpool("install-units", "--metrics")
    vm.run(["systemctl", "enable", "--now", "docker.service"], timeout=300)
    vm.run(["docker", "import", images["rootfs"], "tiny:1"], timeout=300)
    vm.run([*RUN, "echo kept > /v/data"], timeout=300)
    # The timer as installed, fired sooner than its OnBootSec=2min so that the test does not wait for it.
    vm.run(["mkdir", "-p", "/etc/systemd/system/thinpool-maintain.timer.d"])
    vm.run(["bash", "-c", f"printf '[Timer]\\nOnBootSec=\\nOnBootSec=40s\\n' > {SOONER}"])
    assert "thin_check-logged" in vm.run(["bash", "-c", LOG_THIN_CHECK]).stdout

    assert _reboot(vm) in ("running", "degraded")
    _assert_opened_then_activated_then_docker(vm)
    found = lvs(vm, "docker")
    assert found["thinpool"].active and found["docker-data"].active and found["thinpool"].seg_monitor == "monitored"
    checks = vm.run(["cat", CHECK_LOG]).stdout.splitlines()  # apply's fast check is what the boot ran
    assert checks and all("--skip-mappings" in line and "thinpool_tmeta" in line for line in checks), checks
    assert vm.run([*RUN, "cat /v/data"], timeout=300).stdout == "kept\n"
    written = vm.run(["cat", TEXTFILE]).stdout  # the metrics writer, started by systemd at boot
    assert 'thinpool_up{vg="docker",pool="thinpool"} 1.0' in written
    fired = _wait_for(vm, "thinpool-maintain.service", "ExecMainExitTimestampMonotonic", 240)
    assert fired > 0, vm.run(["systemctl", "list-timers", "--all"]).stdout
    assert _show(vm, "thinpool-maintain.service", "Result")["Result"] == "success"

    vm.run(["mv", KEY, "/root/docker.key.saved"])  # the key is gone: the disk cannot be opened at boot
    assert _reboot(vm) in ("running", "degraded")
    assert _show(vm, "systemd-cryptsetup@vda_crypt.service", "ActiveState")["ActiveState"] == "failed"
    assert _show(vm, "docker.service", "ExecMainStartTimestampMonotonic")["ExecMainStartTimestampMonotonic"] == "0"
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


RECOVERY_KEY = "/root/recovery.key"
KEPT = "/var/lib/docker/thinpool-kept"  # a file on the pool's thin volume


def _tpm_pool_with_its_key_off_the_host(vm: VM) -> None:
    """apply --encrypt --tpm2 on /dev/vda, docker enabled, a file on the pool, and the key file moved away: the
    recovery key leaves the host, so only the TPM can open the disk at the next boot."""
    args = ("--encrypt", "--tpm2", "--engine", "docker-overlay2-thin", "--volume-size", "1GiB", "/dev/vda")
    code, result, err = thinpool_json(vm, "apply", "--yes", *args)
    assert code == 0 and result["ok"], err or result
    vm.thinpool("install-units")
    vm.run(["systemctl", "enable", "docker.service"], timeout=300)  # started by the boot
    vm.run(["bash", "-c", f"echo kept > {KEPT} && sync"])
    vm.run(["mv", KEY, RECOVERY_KEY])


def test_at_boot_the_tpm_opens_the_disk_before_the_pool_and_docker_with_no_key_on_the_host(systemd_vm: VM) -> None:
    """The TPM opens the disk at boot, with the key file (the recovery key) off the host. The key-file boot above
    runs containers on the pool; here the engine's start and a file on the pool suffice."""
    vm = systemd_vm
    _tpm_pool_with_its_key_off_the_host(vm)
    header = _luks_header(vm, "/dev/vda")
    assert _token_types(header) == ["systemd-tpm2"] and len(header["keyslots"]) == 2
    assert vm.run(["grep", "^vda_crypt ", "/etc/crypttab"]).stdout.split()[2:] == [
        "none",
        "luks,headless=true,tpm2-device=auto",
    ]

    assert _reboot(vm) in ("running", "degraded")
    _assert_opened_then_activated_then_docker(vm)
    assert vm.run(["ls", "/etc/thinpool/keys"]).stdout.strip().endswith(".luks-header")  # no key: only the copy
    assert vm.run(["cat", KEPT]).stdout == "kept\n"

    # grow: the recovery key comes back for it, and the new disk gets its TPM slot too
    code, result, err = thinpool_json(vm, "grow", "--yes", "--encrypt", "--key-file", RECOVERY_KEY, "/dev/vdb")
    assert code == 0 and result["ok"], err or result
    assert _token_types(_luks_header(vm, "/dev/vdb")) == ["systemd-tpm2"]
    assert "vdb_crypt" in vm.run(["grep", "tpm2-device=auto", "/etc/crypttab"]).stdout


@pytest.mark.sweep  # the key-file boot in CI proves the same chain staying down; the TPM's own message is unit-tested
def test_another_tpm_cannot_open_the_disk_all_stay_down_and_doctors_fix_brings_the_data_back(systemd_vm: VM) -> None:
    """A TPM that is not the one enrolled (cleared, or the disks in another machine): the recovery key, then
    enrolling this TPM, as doctor says."""
    vm = systemd_vm
    _tpm_pool_with_its_key_off_the_host(vm)

    assert _reboot(vm, new_tpm=True) in ("running", "degraded")
    assert _show(vm, "systemd-cryptsetup@vda_crypt.service", "ActiveState")["ActiveState"] == "failed"
    assert _show(vm, "docker.service", "ExecMainStartTimestampMonotonic")["ExecMainStartTimestampMonotonic"] == "0"
    assert vm.run(["ls", "-A", "/var/lib/docker"]).stdout == ""  # nothing started on the empty folder
    doctor = vm.thinpool("doctor", "docker/thinpool", check=False)
    assert doctor.returncode != 0 and "vda_crypt (UUID=" in doctor.stderr, doctor.stderr
    assert "the TPM2 did not open it" in doctor.stderr and "--wipe-slot=tpm2" in doctor.stderr, doctor.stderr
    uuid = vm.run(["cryptsetup", "luksUUID", "/dev/vda"]).stdout.strip()  # doctor's fix, with the recovery key
    vm.run(["cryptsetup", "open", "--key-file", RECOVERY_KEY, f"/dev/disk/by-uuid/{uuid}", "vda_crypt"])
    vm.thinpool("activate", timeout=300)
    vm.run(["systemctl", "start", "docker.service"], timeout=300)
    assert vm.run(["cat", KEPT]).stdout == "kept\n"
    enroll = ("systemd-cryptenroll", "--wipe-slot=tpm2", f"--unlock-key-file={RECOVERY_KEY}", "--tpm2-device=auto")
    vm.run([*enroll, "--tpm2-pcrs=7", "/dev/vda"], timeout=120)  # this TPM now
    assert _token_types(_luks_header(vm, "/dev/vda")) == ["systemd-tpm2"]
