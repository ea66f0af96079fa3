"""The machines VM tests run on: the guest disks, booting a release's guest with this checkout's package,
the images containers start from, and the plan made here for the guest's disks. conftest.py makes the
shared VM from these; tests import them from here, never from conftest or one another."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from thinpool.app.context import system_context
from thinpool.core import planner
from thinpool.core.model import virtual_disks
from thinpool.core.plan import Plan
from thinpool.core.spec import PoolSpec
from thinpool.core.units import GiB, MiB
from thinpool.errors import ThinpoolError
from thinpool.rehearse import deps, guest
from thinpool.rehearse.images import rootfs_tar, write_oci_archive
from thinpool.rehearse.vm import SHARE_MOUNT, VM, VMConfig

CLASSIC_DISK = 762048 * MiB  # 744.19 GiB: 190511 extents of 4 MiB, the classic recipe's disk
# /dev/vda, /dev/vdb: 4 GiB; /dev/vdc: 2 GiB; /dev/vdd: the classic disk; /dev/vde: 1 GiB
DISKS = (4 * GiB, 4 * GiB, 2 * GiB, CLASSIC_DISK, 1 * GiB)
DEVICES = ("/dev/vda", "/dev/vdb", "/dev/vdc", "/dev/vdd", "/dev/vde")
SIZES = dict(zip(DEVICES, DISKS, strict=True))


def unavailable(reason: str) -> None:
    if os.environ.get("THINPOOL_REQUIRE_VM") == "1":
        pytest.fail(f"the VM tests must run here: {reason}")
    pytest.skip(f"no rehearsal VM: {reason}")


def guest_root(name: str) -> guest.GuestRoot:
    """The release's cached root, built when missing; unavailable (a failure in CI) when it cannot be."""
    if os.geteuid() != 0:
        unavailable("the VM's lvm runs as root; run the tests as root")
    try:
        deps.require()
        return guest.obtain(guest.release_named(name), system_context().runner, print)
    except ThinpoolError as error:
        unavailable(str(error))
        raise


def boot(name: str, deb: Path, disk_sizes: tuple[int, ...] = DISKS, **options: Any) -> VM:
    """A VM on the release's root with this checkout's package installed; the caller closes it."""
    root = guest_root(name)
    machine = VM(VMConfig(disk_sizes=disk_sizes, kernel=root.kernel, guest=root, packages=(deb,), **options))
    machine.start()
    return machine


def boot_systemd(name: str, deb: Path, **options: Any) -> VM:
    """A VM on the release's root under its own systemd, its root changes kept across reboots and power
    cuts on a 4 GiB and a 2 GiB disk, with a TPM 2.0 as today's machines have (``options`` override); the
    caller closes it."""
    settings: dict[str, Any] = {
        "disk_sizes": (4 * GiB, 2 * GiB),
        "systemd": True,
        "keep_root_changes": True,
        "boot_timeout": 300,
        "tpm": True,
    }
    machine = boot(name, deb, **(settings | options))
    print(f"\n{name} with systemd booted in {machine.boot_seconds:.1f}s")
    return machine


# What the systemd tests leave and the next one must not meet: the engine and thinpool's units stopped and
# disabled, the pool gone, the disks blank, and what apply and install-units wrote removed.
SYSTEMD_RESET = """
systemctl disable --now docker.service docker.socket thinpool-metrics.service thinpool-maintain.timer \
  thinpool-activate.service >/dev/null 2>&1 || true
umount /var/lib/docker 2>/dev/null || true
umount /mnt/vol 2>/dev/null || true
vgremove -ff -y docker >/dev/null 2>&1 || true
for mapping in /dev/mapper/*_crypt; do [ -e "$mapping" ] && cryptsetup close "${mapping##*/}"; done
for disk in /dev/vda /dev/vdb; do pvremove -ff -y $disk >/dev/null 2>&1 || true; wipefs -a -q $disk; done
rm -rf /etc/docker /var/lib/docker /var/lib/thinpool /etc/thinpool /etc/crypttab /etc/systemd/system/docker.service.d \
  /etc/systemd/system/thinpool-maintain.timer.d /etc/lvm/profile/thinpool-*
sed -i '/ \\/var\\/lib\\/docker /d' /etc/fstab
[ -f /var/lib/lvmlocal.orig ] || cp /etc/lvm/lvmlocal.conf /var/lib/lvmlocal.orig
cp /var/lib/lvmlocal.orig /etc/lvm/lvmlocal.conf; rm -f /etc/lvm/*.thinpool-*.bak
if [ -f /var/lib/lvm.conf.orig ]; then cp /var/lib/lvm.conf.orig /etc/lvm/lvm.conf; fi
systemctl daemon-reload
sync
"""


def tiny_images(machine: VM) -> dict[str, str]:
    """A busybox root (for docker import) and an OCI archive (for ctr) in ``machine``'s share."""
    (machine.share / "tiny-rootfs.tar").write_bytes(rootfs_tar())
    write_oci_archive(machine.share / "tiny-oci.tar", "docker.io/library/tiny:1")
    return {"rootfs": f"{SHARE_MOUNT}/tiny-rootfs.tar", "oci": f"{SHARE_MOUNT}/tiny-oci.tar"}


# The image's init: stops on SIGPWR (what ``incus stop`` sends an LXC container's init) or SIGTERM.
INCUS_INIT = b"#!/bin/sh\ntrap 'exit 0' PWR TERM\nwhile :; do sleep 1; done\n"
INCUS_METADATA = b"architecture: x86_64\ncreation_date: 1767225600\nproperties:\n  description: tiny busybox\n"


def tiny_incus_image(machine: VM) -> str:
    """A busybox root as an Incus unified image (metadata.yaml and rootfs/) in ``machine``'s share."""
    buffer = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(rootfs_tar())) as root,
        tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as image,
    ):
        _add_file(image, "metadata.yaml", INCUS_METADATA, 0o644)
        for member in root.getmembers():
            data = root.extractfile(member) if member.isfile() else None
            member.name = f"rootfs/{member.name}"
            image.addfile(member, data)
        folder = tarfile.TarInfo("rootfs/sbin")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        image.addfile(folder)
        _add_file(image, "rootfs/sbin/init", INCUS_INIT, 0o755)
    (machine.share / "tiny-incus.tar").write_bytes(buffer.getvalue())
    return f"{SHARE_MOUNT}/tiny-incus.tar"


def _add_file(archive: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    archive.addfile(info, io.BytesIO(data))


def host_plan(spec: PoolSpec) -> Plan:
    """The plan made here, on virtual disks of the guest's names and sizes."""
    return planner.plan(spec, virtual_disks([SIZES[path] for path in spec.devices], spec.devices))
