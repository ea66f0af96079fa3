"""One rehearsal VM per test session, shared by every test marked ``vm``; reset between tests.

The VM needs qemu, lvm2, busybox and a kernel package (``python -m thinpool.rehearse.deps
--install`` installs them). Without them the tests skip, unless THINPOOL_REQUIRE_VM=1
(set by CI), where a missing piece is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from thinpool.app.context import system_context
from thinpool.core.units import GiB, MiB
from thinpool.errors import ThinpoolError
from thinpool.rehearse import deps
from thinpool.rehearse.images import rootfs_tar, write_oci_archive
from thinpool.rehearse.kernel import obtain_debian_kernel
from thinpool.rehearse.vm import SHARE_MOUNT, VM, VMConfig

CLASSIC_DISK = 762048 * MiB  # 744.19 GiB: 190511 extents of 4 MiB, the classic recipe's disk
# /dev/vda, /dev/vdb: 4 GiB; /dev/vdc: 2 GiB; /dev/vdd: the classic disk; /dev/vde: 1 GiB
DISKS = (4 * GiB, 4 * GiB, 2 * GiB, CLASSIC_DISK, 1 * GiB)
DEVICES = ("/dev/vda", "/dev/vdb", "/dev/vdc", "/dev/vdd", "/dev/vde")

RESET = r"""
# Engines first: stop the daemons, unmount what they mounted, forget their state and configs.
pkill -x dockerd; pkill -x containerd; pkill -x dnsmasq
# (zombies do not count: the agent reaps them only between requests)
alive() { ps -eo stat=,comm= | awk '$1 !~ /^Z/ && $2 ~ /^(dockerd|containerd)/' | grep -q .; }
for i in $(seq 50); do alive || break; sleep 0.2; done
pkill -9 -x 'dockerd|containerd|containerd-shim-runc-v2|containerd-shim' 2>/dev/null
awk '$2 ~ "^/(var/lib|run)/(docker|containerd)" {print $2}' /proc/mounts | sort -r | xargs -r umount -l
rm -rf /etc/docker /etc/containerd /var/lib/docker /var/lib/containerd /run/docker /run/containerd   /run/docker.sock /var/run/docker.pid /etc/systemd/system/docker.service.d /etc/systemd/system/containerd.service.d
[ -f /run/fstab.orig ] || cp /etc/fstab /run/fstab.orig; cp /run/fstab.orig /etc/fstab
for vg in $(vgs --noheadings -o vg_name 2>/dev/null); do vgremove -ff -y "$vg" >/dev/null 2>&1; done
dmsetup remove_all --force >/dev/null 2>&1
for pv in $(pvs --noheadings -o pv_name 2>/dev/null); do pvremove -ff -y "$pv" >/dev/null 2>&1; done
for disk in /dev/vd?; do wipefs -a -q "$disk" >/dev/null 2>&1; done
rm -f /etc/lvm/profile/thinpool-*.profile
rm -rf /var/lib/thinpool/backups /var/lib/thinpool/migrate /var/lib/docker.devicemapper /srv/staging /etc/thinpool /etc/dnsmasq.d
# Without udev, lvm's /dev/VG folders can outlive their VG (a killed lvm): drop those that
# hold only dangling links, or the next vgcreate of that name fails.
for folder in /dev/*/; do
  folder=${folder%/}; entries=$(ls -A "$folder"); [ -n "$entries" ] || continue
  stale=1; for entry in "$folder"/*; do { [ -L "$entry" ] && [ ! -e "$entry" ]; } || stale=0; done
  [ "$stale" = 1 ] && rm -rf "$folder"
done
vgs --noheadings 2>/dev/null | grep -q . && exit 1
exit 0
"""


def unavailable(reason: str) -> None:
    if os.environ.get("THINPOOL_REQUIRE_VM") == "1":
        pytest.fail(f"the VM tests must run here: {reason}")
    pytest.skip(f"no rehearsal VM: {reason}")


@pytest.fixture(scope="session")
def vm_session() -> Iterator[VM]:
    if os.geteuid() != 0:
        unavailable("the VM's lvm runs as root; run the tests as root")
    try:
        deps.require()
        kernel = obtain_debian_kernel(system_context().runner)
    except ThinpoolError as error:
        unavailable(str(error))
    machine = VM(VMConfig(disk_sizes=DISKS, kernel=kernel, write_budget=6 * GiB, lifetime=3000))
    machine.start()
    print(f"\nrehearsal VM booted in {machine.boot_seconds:.1f}s")
    try:
        yield machine
    finally:
        machine.close()


@pytest.fixture
def vm(vm_session: VM) -> VM:
    """The shared VM, blank: no VG, PV label, signature or thinpool profile on any disk."""
    vm_session.run(["bash", "-c", RESET], timeout=120)
    return vm_session


@pytest.fixture(scope="session")
def images(vm_session: VM) -> Iterator[dict[str, str]]:
    if deps.missing(engines=True):
        unavailable(f"the engine tests need {', '.join(sorted(deps.missing(engines=True)))}")
    (vm_session.share / "tiny-rootfs.tar").write_bytes(rootfs_tar())
    write_oci_archive(vm_session.share / "tiny-oci.tar", "docker.io/library/tiny:1")
    yield {"rootfs": f"{SHARE_MOUNT}/tiny-rootfs.tar", "oci": f"{SHARE_MOUNT}/tiny-oci.tar"}
    for name in ("tiny-rootfs.tar", "tiny-oci.tar"):
        (vm_session.share / name).unlink(missing_ok=True)
