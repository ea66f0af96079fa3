"""What dm-thin costs each engine: its store on an XFS thin volume of the pool, as thinpool wires it, against
the same XFS (ftype=1, pquota, noatime) on a plain linear LV of the same disk, in one Debian 13 VM run.

    python3 -m benchmarks.engine_cost [--containers 12] [--payload-mib 64] [--engine NAME ...]

For Docker's classic store (docker-overlay2-thin), Docker's containerd image store (docker-containerd-thin: the
data root and containerd's root each on a volume of its own), containerd's overlayfs snapshotter
(containerd-overlayfs-thin) and Podman (podman-overlay-thin), it measures:
  * image import: MiB/s of importing a busybox root with a random payload (docker import, ctr images import of
    an OCI layout, podman import);
  * container churn: containers created, run writing 4 MiB, and removed, per minute.
It prints each figure and the ratio thin / linear. Everything runs inside the VM; nothing starts on this host.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from thinpool.core.units import GiB, MiB
from thinpool.rehearse.images import rootfs_tar, write_oci_archive
from thinpool.rehearse.vm import SHARE_MOUNT, VM

RESET = r"""
pkill -x dockerd; pkill -x containerd
for i in $(seq 50); do
  ps -eo stat=,comm= | awk '$1 !~ /^Z/ && $2 ~ /^(dockerd|containerd)/' | grep -q . || break; sleep 0.2
done
pkill -9 -x 'dockerd|containerd|containerd-shim-runc-v2' 2>/dev/null
awk '$2 ~ "^/(var/lib|run)/(docker|containerd|containers)" {print $2}' /proc/mounts | sort -r | xargs -r umount -l
rm -rf /etc/docker /var/lib/docker /var/lib/containerd /var/lib/containers /run/docker /run/containerd \
  /run/containers /etc/containers/storage.conf /etc/systemd/system/docker.service.d \
  /etc/systemd/system/containerd.service.d
[ -f /run/fstab.orig ] || cp /etc/fstab /run/fstab.orig; cp /run/fstab.orig /etc/fstab
vgremove -ff -y docker >/dev/null 2>&1; dmsetup remove_all --force; pvremove -ff -y /dev/vda >/dev/null 2>&1
wipefs -a -q /dev/vda; rm -f /etc/lvm/profile/*.profile; true
"""
LINEAR = r"""
set -e
pvcreate -q /dev/vda && vgcreate -q docker /dev/vda
n=0
for root in {roots}; do
  n=$((n + 1))
  lvcreate -q -y -L {size} -n linear$n docker
  mkfs.xfs -q -n ftype=1 /dev/docker/linear$n
  mkdir -p $root && mount -o pquota,noatime /dev/docker/linear$n $root
done
{configure}
"""
TIMED = r"""
start=$(date +%s%N)
{command}
echo $(( ($(date +%s%N) - start) / 1000000 ))
"""
WRITE_4_MIB = "dd if=/dev/urandom of=/x bs=1M count=4 2>/dev/null"
DOCKERD = (
    "(dockerd --iptables=false --bridge=none --ip-masq=false > /tmp/dockerd.log 2>&1 &); "
    "for i in $(seq 240); do docker version >/dev/null 2>&1 && break; sleep 0.5; done"
)
CONTAINERD = (
    "(containerd > /tmp/containerd.log 2>&1 &); "
    "for i in $(seq 240); do ctr version >/dev/null 2>&1 && break; sleep 0.5; done"
)
DOCKER_RUN = f"docker run --rm --network none big:1 sh -c '{WRITE_4_MIB}' || exit 1"


@dataclass(frozen=True)
class Engine:
    name: str
    roots: tuple[str, ...]  # its stores, each on a volume of its own
    start: str  # starts the daemon and waits for it ("" for podman: no daemon)
    load: str  # imports the image from the share
    run: str  # one container, {n} its number
    configure: str = ""  # what thinpool's configuration does that the linear setup must do by hand

    @property
    def volume_size(self) -> str:
        return f"{6 // len(self.roots)}g"


ENGINES = (
    Engine(
        "docker-overlay2-thin",
        ("/var/lib/docker",),
        DOCKERD,
        f"docker import {SHARE_MOUNT}/big-rootfs.tar big:1 >/dev/null",
        DOCKER_RUN,
    ),
    Engine(
        "docker-containerd-thin",
        ("/var/lib/docker", "/var/lib/containerd"),
        f"{CONTAINERD}; {DOCKERD.replace('dockerd ', 'dockerd --containerd=/run/containerd/containerd.sock ', 1)}",
        f"docker import {SHARE_MOUNT}/big-rootfs.tar big:1 >/dev/null",
        DOCKER_RUN,
        """mkdir -p /etc/docker && echo '{"features": {"containerd-snapshotter": true}}' > /etc/docker/daemon.json""",
    ),
    Engine(
        "containerd-overlayfs-thin",
        ("/var/lib/containerd",),
        CONTAINERD,
        f"ctr images import {SHARE_MOUNT}/big-oci.tar >/dev/null",
        f"ctr run --rm docker.io/library/big:1 c$n sh -c '{WRITE_4_MIB}' || exit 1",
    ),
    Engine(
        "podman-overlay-thin",
        ("/var/lib/containers/storage",),
        "",
        f"podman import {SHARE_MOUNT}/big-rootfs.tar big:1 >/dev/null",
        f"podman run --rm --network none big:1 sh -c '{WRITE_4_MIB}' || exit 1",
    ),
)


def _millis(vm: VM, command: str, timeout: int = 1800) -> int:
    return int(vm.run(["bash", "-c", TIMED.format(command=command)], timeout=timeout).stdout.split()[-1])


def measure(vm: VM, engine: Engine, thin: bool, containers: int, payload: int) -> tuple[float, float]:
    """(import MiB/s, containers per minute) for ``engine`` on a thin volume or on a linear LV."""
    vm.run(["bash", "-c", RESET], check=False, timeout=300)
    if thin:
        size = engine.volume_size.replace("g", "GiB")
        vm.thinpool("apply", "--yes", "--engine", engine.name, "--volume-size", size, "/dev/vda", timeout=900)
    else:
        linear = LINEAR.format(roots=" ".join(engine.roots), size=engine.volume_size, configure=engine.configure)
        vm.run(["bash", "-c", linear], timeout=600)
    if engine.start:
        vm.run(["bash", "-c", engine.start], timeout=300)
    loaded = _millis(vm, engine.load)
    churned = _millis(vm, f"for n in $(seq {containers}); do {engine.run}; done")
    return payload / MiB * 1000 / loaded, containers * 60_000 / churned


def main() -> int:
    from thinpool.app.context import system_context
    from thinpool.rehearse import guest
    from thinpool.rehearse.vm import VMConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=12)
    parser.add_argument("--payload-mib", type=int, default=64)
    names = [engine.name for engine in ENGINES]
    parser.add_argument("--engine", action="append", choices=names, help="only these engines (default: every one)")
    options = parser.parse_args()
    chosen = [engine for engine in ENGINES if engine.name in (options.engine or names)]
    payload = os.urandom(options.payload_mib * MiB)
    root = guest.obtain(guest.release_named("debian-13"), system_context().runner, print)
    config = VMConfig(disk_sizes=(10 * GiB,), kernel=root.kernel, guest=root, lifetime=5400)
    print(f"{'engine':<28} {'store':<7} {'import MiB/s':>12} {'containers/min':>15}")
    with VM(config) as vm:
        (vm.share / "big-rootfs.tar").write_bytes(rootfs_tar(payload))
        write_oci_archive(vm.share / "big-oci.tar", "docker.io/library/big:1", payload)
        for engine in chosen:
            figures = {}
            for thin in (True, False):
                figures[thin] = measure(vm, engine, thin, options.containers, len(payload))
                where = "thin" if thin else "linear"
                print(f"{engine.name:<28} {where:<7} {figures[thin][0]:12.1f} {figures[thin][1]:15.1f}")
            (load_thin, churn_thin), (load_linear, churn_linear) = figures[True], figures[False]
            print(f"{engine.name:<28} {'ratio':<7} {load_thin / load_linear:12.2f} {churn_thin / churn_linear:15.2f}")
        vm.run(["bash", "-c", RESET], check=False, timeout=300)
    return 0


if __name__ == "__main__":
    sys.exit(main())
