"""Power cuts: the guest loses power (qemu killed, nothing synced) while a command runs, boots again on the
same disks under its real systemd, and the same command run again converges to what one whole run makes.

After every cut: each file written before the command reads back its checksum, and each config file is the
old one or the new one, whole (never empty, partial or missing where it was). After the re-run: lvm and
the kernel agree on the pool's transaction id and doctor finds nothing critical.

CI cuts a fresh apply at two points in a row (the second cut on the re-run of the first);
THINPOOL_MATRIX=full cuts each step of each command from a fresh start, on both releases.
"""

from __future__ import annotations

import json

import pytest

from thinpool.rehearse.vm import VM

from .helpers import damage_metadata, lvs, thinpool_json
from .machines import tiny_images
from .power import Cut, Witness, cut_power_at, precious_file, sha256_lines, transaction_ids

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

APPLY = ("apply", "--yes", "--engine", "docker-overlay2-thin", "--volume-size", "1GiB", "/dev/vda")
PLAN = ("plan", "--json", "--engine", "docker-overlay2-thin", "--volume-size", "1GiB", "--disk-size", "4GiB")
DAEMON_JSON = "/etc/docker/daemon.json"
DROP_IN = "/etc/systemd/system/docker.service.d/thinpool.conf"
PROFILE = "/etc/lvm/profile/thinpool-docker-thinpool.profile"
LVM_LOCAL = "/etc/lvm/lvmlocal.conf"  # apply adds the fast boot check to it
CONFIGS = ("/etc/fstab", DAEMON_JSON, DROP_IN, PROFILE, LVM_LOCAL)
PRECIOUS = "/root/precious"
USER_FSTAB_LINE = "tmpfs /mnt/scratch tmpfs defaults,noauto 0 0\n"
USER_SETTINGS = '{\n  "log-level": "warn"\n}\n'

APPLY_CUTS = {
    "pvcreate": Cut("pvcreate"),
    "vgcreate": Cut("vgcreate"),
    "pool": Cut("lvcreate", "thin-pool", delay=0.2),
    "volume": Cut("lvcreate", "--type thin ", delay=0.3),
    "mkfs": Cut("mkfs.xfs", delay=0.3),
    "fstab": Cut("mount", "/var/lib/docker", hold=True),  # the fstab line written, not yet mounted
    "engine": Cut("systemctl", "daemon-reload", hold=True),  # daemon.json and the drop-in written
    "exit": Cut(""),  # all it said it did must be on the disks
}
CI_APPLY_CHAIN = ("pool", "exit")  # the sweep cuts every step, "fstab" among them, each from a fresh host
SWEEP = pytest.mark.sweep


# a fresh host (systemd_vm's reset), then the user's own fstab line and daemon.json, a precious file ------

FRESH_HOST = f"""set -e
grep -v -e /mnt/scratch /etc/fstab > /etc/fstab.new || true
printf '%s' '{USER_FSTAB_LINE}' >> /etc/fstab.new && mv /etc/fstab.new /etc/fstab
mkdir -p /etc/docker && printf '%s' '{USER_SETTINGS}' > /etc/docker/daemon.json
sync
"""


def _fresh_host(vm: VM) -> tuple[Witness, str]:
    vm.run(["bash", "-c", FRESH_HOST], timeout=300)
    precious = precious_file(vm, PRECIOUS, 4)
    witness = Witness(CONFIGS)
    witness.start(vm)
    return witness, precious


def _after_cut(vm: VM, witness: Witness, precious: str) -> None:
    now = witness.look(vm)
    assert sha256_lines(vm, PRECIOUS) == precious
    settings = now[DAEMON_JSON]
    if settings is not None:
        assert json.loads(settings)["log-level"] == "warn"
    assert USER_FSTAB_LINE in (now["/etc/fstab"] or "")


DIAGNOSE_MOUNT = """journalctl -b --no-pager -u var-lib-docker.mount -u thinpool-activate.service | tail -20
lvs -a docker; journalctl -b --no-pager | grep -iE 'lvm|thin_check|pvscan' | tail -20"""


def _volume_mounted_at_boot(vm: VM) -> None:
    """The boot mounted the engine's volume from fstab (else: why, from the journal and the kernel)."""
    if vm.run(["findmnt", "/var/lib/docker"], check=False).returncode == 0:
        return
    why = vm.run(
        ["bash", "-c", DIAGNOSE_MOUNT],
        check=False,
    )
    raise AssertionError(f"/var/lib/docker is not mounted after the boot:\n{why.stdout}{why.stderr}")


def _converged_apply(vm: VM, witness: Witness, precious: str) -> None:
    """apply again: it finishes, a third changes nothing, and the host is what one whole apply makes."""
    code, result, err = thinpool_json(vm, *APPLY)
    assert code == 0 and result["ok"], err or result
    assert thinpool_json(vm, *APPLY)[1]["changed"] is False
    after = witness.read(vm)
    witness.assert_whole(after)
    assert sha256_lines(vm, PRECIOUS) == precious
    fstab = (after["/etc/fstab"] or "").splitlines(keepends=True)
    assert USER_FSTAB_LINE in fstab and sum(" /var/lib/docker " in line for line in fstab) == 1, fstab
    settings = json.loads(after[DAEMON_JSON] or "{}")
    assert settings["log-level"] == "warn" and settings["storage-driver"] == "overlay2", settings
    assert after[DROP_IN] and after[PROFILE]
    assert '"--skip-mappings" ]' in (after[LVM_LOCAL] or "") and (after[LVM_LOCAL] or "").startswith(
        witness.before[LVM_LOCAL] or ""
    )
    layout = json.loads(vm.thinpool(*PLAN).stdout)["layout"]
    found = lvs(vm, "docker")
    pool = found["thinpool"]
    assert (pool.size, pool.metadata_size) == (layout["data_size"], layout["metadata_size"])
    assert pool.seg_monitor == "monitored" and found["docker-data"].active
    mounted = vm.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "/var/lib/docker"]).stdout.split()
    assert mounted == ["xfs", "/dev/mapper/docker-docker--data"], mounted
    _healthy(vm)


def _healthy(vm: VM) -> None:
    lvm_id, kernel_id = transaction_ids(vm, "docker", "thinpool")
    assert lvm_id == kernel_id
    _code, doctor, err = thinpool_json(vm, "doctor")
    assert doctor.get("worst") != "critical", err or doctor.get("findings")
    left = vm.run(["find", "/etc", "/var/lib/thinpool", "-name", "*.thinpool-tmp"], check=False).stdout
    assert left == "", f"temporary files left behind: {left}"


def test_apply_cut_twice_in_a_row_then_finished_by_a_rerun(systemd_vm: VM) -> None:
    """The second cut falls on the re-run of the first: during the pool's lvcreate, then just after the command
    said it was done (every file it wrote, daemon.json and the drop-in last, must be on the disk)."""
    vm = systemd_vm
    witness, precious = _fresh_host(vm)
    for name in CI_APPLY_CHAIN:
        cut_power_at(vm, APPLY_CUTS[name], *APPLY)
        _after_cut(vm, witness, precious)
    _converged_apply(vm, witness, precious)


@SWEEP
@pytest.mark.parametrize("point", list(APPLY_CUTS))
def test_apply_cut_at_one_step_from_a_fresh_host_then_finished_by_a_rerun(systemd_vm: VM, point: str) -> None:
    vm = systemd_vm
    witness, precious = _fresh_host(vm)
    cut_power_at(vm, APPLY_CUTS[point], *APPLY)
    _after_cut(vm, witness, precious)
    _converged_apply(vm, witness, precious)


# grow: a second disk added to a pool in use -------------------------------------------------------------

GROW = ("grow", "--yes", "/dev/vdb")
GROW_CUTS = {
    "vgextend": Cut("vgextend", delay=0.0),
    "metadata": Cut("lvextend", "--poolmetadatasize", delay=0.2),
    "data": Cut("lvextend", "--extents", delay=0.2),
}


def _pool_in_use(vm: VM) -> tuple[Witness, str, str]:
    """A fresh host applied whole, with a file on the engine's volume: returns the witness, the
    precious file's sum and the volume's file's sum."""
    witness, precious = _fresh_host(vm)
    assert thinpool_json(vm, *APPLY)[0] == 0
    on_volume = precious_file(vm, "/var/lib/docker/precious", 16)
    witness.start(vm)
    return witness, precious, on_volume


def _converged_grow(vm: VM, witness: Witness, precious: str, on_volume: str) -> None:
    code, result, err = thinpool_json(vm, *GROW)
    assert code == 0, err or result
    assert "/dev/vdb" in vm.run(["pvs", "--noheadings", "-o", "pv_name", "-S", "vg_name=docker"]).stdout
    grown = lvs(vm, "docker")["thinpool"].size
    assert thinpool_json(vm, "grow", "--yes")[1]["changed"] is False  # nothing left to grow
    assert lvs(vm, "docker")["thinpool"].size == grown
    witness.assert_whole(witness.read(vm))
    assert sha256_lines(vm, PRECIOUS, "/var/lib/docker/precious") == precious + on_volume
    _healthy(vm)


@SWEEP
@pytest.mark.parametrize("point", list(GROW_CUTS))
def test_grow_cut_then_finished_by_a_rerun(systemd_vm: VM, point: str) -> None:
    vm = systemd_vm
    witness, precious, on_volume = _pool_in_use(vm)
    cut_power_at(vm, GROW_CUTS[point], *GROW)
    _after_cut(vm, witness, precious)
    _converged_grow(vm, witness, precious, on_volume)


# repair: restored from a backup, cut before and after the metadata swap -------------------------------

REPAIR = ("repair", "--yes")
REPAIR_CUTS = {
    "before-swap": Cut("lvconvert", "--poolmetadata", hold=True),
    "after-swap": Cut("lvrename", hold=True),
}


def _damaged_pool_with_a_backup(vm: VM) -> str:
    """The pool's volume unmounted, backed up, then its superblock zeroed; returns the volume's file's sum."""
    _pool_in_use(vm)
    on_volume = sha256_lines(vm, "/var/lib/docker/precious")
    assert thinpool_json(vm, "backup")[0] == 0
    vm.run(["umount", "/var/lib/docker"])
    damage_metadata(vm, "bs=4k count=1")  # block 0: the superblock
    vm.run(["sync"])
    vm.run(["sync"])
    return on_volume


def _up_without_the_pool(vm: VM) -> None:
    """The boot on metadata still damaged went on (fstab's nofail: no emergency mode, so this agent answers);
    docker, enabled, stayed down rather than start on an empty data root; doctor says why and what mends it."""
    assert vm.run(["findmnt", "/var/lib/docker"], check=False).returncode != 0
    docker = vm.run(["systemctl", "is-active", "docker.service"], check=False).stdout.strip()
    assert docker in ("inactive", "failed"), docker
    assert not vm.run(["ls", "-A", "/var/lib/docker"]).stdout, "docker wrote to the empty mount point"
    _code, doctor, err = thinpool_json(vm, "doctor")
    # lvm's check refused the damaged metadata (pool-inactive), or, the superblock being all zeros, the
    # kernel formatted it afresh and the volumes are gone from it (metadata-needs-repair): repair mends both
    mends = [f for f in doctor.get("findings", []) if "thinpool repair docker/thinpool --yes" in f["fix"]]
    assert any(finding["severity"] == "critical" for finding in mends), err or doctor


@SWEEP
@pytest.mark.parametrize("point", list(REPAIR_CUTS))
def test_repair_cut_at_the_metadata_swap_then_finished_by_a_rerun(systemd_vm: VM, point: str) -> None:
    vm = systemd_vm
    on_volume = _damaged_pool_with_a_backup(vm)
    vm.run(["systemctl", "enable", "docker.service"], timeout=120)  # started at boot, as Debian's docker.io has it
    try:
        cut_power_at(vm, REPAIR_CUTS[point], *REPAIR)
        if point == "before-swap":  # the pool's metadata is still the damaged one: lvm will not activate it
            _up_without_the_pool(vm)
        vm.run(["systemctl", "disable", "--now", "docker.service", "docker.socket"], timeout=300)
    finally:
        vm.run(["systemctl", "disable", "docker.service"], check=False, timeout=120)
    vm.run(["umount", "/var/lib/docker"], check=False)  # the boot may have mounted it from fstab, or not
    code, result, err = thinpool_json(vm, *REPAIR)
    assert code == 0 and result["ok"] and result["after"]["state"] == "healthy", err or result
    assert "thinpool_restore" not in lvs(vm, "docker")
    vm.run(["mount", "/var/lib/docker"])
    assert sha256_lines(vm, "/var/lib/docker/precious") == on_volume
    kept = [name for name in lvs(vm, "docker") if name.startswith("thinpool_meta")]
    assert len(kept) == 1, kept  # the damaged original, kept once, whichever run renamed it
    vm.run(["lvremove", "-q", "-y", f"docker/{kept[0]}"])  # as the runbook says, once the pool is checked
    _healthy(vm)


# maintain and install-units ---------------------------------------------------------------------------

MAINTAIN_CUTS = {
    "fstrim": Cut("fstrim", delay=0.1),
    "backup": Cut("thin_dump", delay=0.1),
}


@SWEEP
@pytest.mark.parametrize("point", list(MAINTAIN_CUTS))
def test_maintain_cut_during_its_work_then_a_rerun_finishes(systemd_vm: VM, point: str) -> None:
    vm = systemd_vm
    witness, precious, on_volume = _pool_in_use(vm)
    vm.thinpool("install-units")  # the boot's activation: past leaked blocks a cut fstrim leaves (thin_check)
    vm.run(["bash", "-c", "head -c 64M /dev/urandom > /var/lib/docker/gone && sync && rm /var/lib/docker/gone"])
    # 64 MiB deleted is under the default 256 MiB worth a trim: the cut pass is told to trim from 32 MiB
    cut_power_at(vm, MAINTAIN_CUTS[point], "maintain", "--reclaim-above", "32MiB")
    _after_cut(vm, witness, precious)
    _volume_mounted_at_boot(vm)
    code, result, err = thinpool_json(vm, "maintain")
    assert code == 0, err or result
    backups = json.loads(vm.thinpool("backup", "--list", "--json").stdout)["backups"]
    assert backups, "maintain's re-run kept no backup"
    witness.assert_whole(witness.read(vm))
    assert sha256_lines(vm, PRECIOUS, "/var/lib/docker/precious") == precious + on_volume
    _healthy(vm)


UNITS = ("thinpool-activate.service", "thinpool-maintain.timer")


@SWEEP
@pytest.mark.parametrize("point", ["daemon-reload", "exit"])
def test_install_units_cut_then_a_rerun_enables_them(systemd_vm: VM, point: str) -> None:
    vm = systemd_vm
    _pool_in_use(vm)
    vm.run(
        [
            "bash",
            "-c",
            "systemctl disable --now thinpool-metrics.service thinpool-maintain.timer "
            "thinpool-activate.service 2>/dev/null; true",
        ]
    )
    cut = Cut("systemctl", "daemon-reload", hold=True) if point == "daemon-reload" else Cut("")
    cut_power_at(vm, cut, "install-units")
    vm.thinpool("install-units")
    enabled = vm.run(["systemctl", "is-enabled", *UNITS], check=False).stdout.split()
    assert enabled == ["enabled", "enabled"], enabled
    _healthy(vm)


# migrate's switch (Debian 12: Docker 20.10 still has devicemapper) ------------------------------------

MIGRATE = ("migrate", "--to", "docker-overlay2-thin", "--staging", "/srv/staging", "--yes")
MIGRATE_CUTS = {
    "devices": Cut("vgcfgrestore", hold=True),  # Docker's thin devices about to be recorded in lvm
    "mkfs": Cut("mkfs.xfs", delay=0.3),  # daemon.json stripped, the data root moved aside
    "engine": Cut("systemctl", "daemon-reload", hold=True),  # overlay2's daemon.json and drop-in written
}
IN_C1 = "cat /f /v/data"
DOCKER_UNITS = ("docker.service", "docker.socket")


def _devicemapper_host_exported(vm: VM) -> Witness:
    """Docker 20.10 on devicemapper in the pool, started by systemd, with container c1 (a file in its layer,
    one in volume vol1) exported to the staging folder; Docker then stopped as switch wants it."""
    vm.run(["bash", "-c", "rm -rf /srv/staging /var/lib/docker.devicemapper /var/lib/thinpool"])
    witness, _precious = _fresh_host(vm)
    code, result, err = thinpool_json(vm, "apply", "--yes", "--engine", "docker-devicemapper", "/dev/vda")
    assert code == 0, err or result
    vm.run(["systemctl", "enable", "--now", *DOCKER_UNITS], timeout=300)
    vm.run(["docker", "import", tiny_images(vm)["rootfs"], "tiny:1"], timeout=300)
    c1 = ["docker", "run", "--network", "none", "--name", "c1", "-v", "vol1:/v", "tiny:1", "sh", "-c"]
    vm.run([*c1, "echo hello > /f && echo kept > /v/data"], timeout=300)
    code, result, err = thinpool_json(vm, *MIGRATE, "--step", "export", "--commit-containers", timeout=1200)
    assert code == 0 and result["ok"], err or result
    vm.run(["systemctl", "stop", *DOCKER_UNITS], timeout=300)
    vm.run(["sync"])
    witness.start(vm)
    return witness


def _docker_held_back(vm: VM) -> None:
    """Docker, enabled, did not start at the boot after the cut: the switch's hold said why in its journal,
    and nothing made a fresh store where the data root was moved aside."""
    docker = vm.run(["systemctl", "is-active", "docker.service"], check=False).stdout.strip()
    assert docker in ("inactive", "failed"), docker
    journal = vm.run(["journalctl", "-b", "-u", "docker.service", "--no-pager"]).stdout
    assert "a migrate switch has not finished" in journal, journal[-2000:]
    moved = "[ -d /var/lib/docker.devicemapper ] && ! mountpoint -q /var/lib/docker && ls -A /var/lib/docker"
    made = vm.run(["bash", "-c", moved + " 2>/dev/null"], check=False)
    assert made.stdout == "", f"a store was made on the root filesystem: {made.stdout}"


@SWEEP
@pytest.mark.releases("debian-12")
@pytest.mark.parametrize("point", list(MIGRATE_CUTS))
def test_migrate_switch_cut_then_finished_by_a_rerun(systemd_vm: VM, point: str) -> None:
    vm = systemd_vm
    witness = _devicemapper_host_exported(vm)
    try:
        cut_power_at(vm, MIGRATE_CUTS[point], *MIGRATE, "--step", "switch")
        witness.look(vm)
        _docker_held_back(vm)
        code, switched, err = thinpool_json(vm, *MIGRATE, "--step", "switch", timeout=1200)
        assert code == 0 and switched["ok"], err or switched
        vm.run(["systemctl", "start", "docker.service"], timeout=300)
        assert vm.run(["docker", "info", "--format", "{{.Driver}}"]).stdout.strip() == "overlay2"
        code, imported, err = thinpool_json(vm, *MIGRATE, "--step", "import", timeout=1200)
        assert code == 0 and imported["ok"], err or imported
        run = ["docker", "run", "--rm", "--network", "none", "-v", "vol1:/v", "thinpool-migrate/c1:committed"]
        assert vm.run([*run, "sh", "-c", IN_C1], timeout=300).stdout == "hello\nkept\n"
        stripped = {DAEMON_JSON: USER_SETTINGS}  # the switch's first write: devicemapper's keys gone, the user's kept
        witness.assert_whole(witness.read(vm), between=stripped)
        _healthy(vm)
    finally:
        vm.run(["systemctl", "disable", "--now", *DOCKER_UNITS], check=False, timeout=300)
