"""Container churn: containers created, run and removed per minute on the pool as thinpool configures
it, against Docker's own direct-lvm recipe (data 95%VG, metadata 1%VG, chunk 512K), in one VM run.

    python3 -m benchmarks.churn [--containers 12]

Everything runs inside the rehearsal VM; nothing starts on this host.
"""

from __future__ import annotations

import argparse
import json
import sys

from thinpool.core.units import GiB
from thinpool.rehearse.images import rootfs_tar
from thinpool.rehearse.vm import SHARE_MOUNT

RESET = r"""
pkill -x dockerd
for i in $(seq 50); do
  ps -eo stat=,comm= | awk '$1 !~ /^Z/ && $2 ~ /^(dockerd|containerd)/' | grep -q . || break; sleep 0.2
done
pkill -9 -x 'dockerd|containerd|containerd-shim-runc-v2' 2>/dev/null
awk '$2 ~ "^/(var/lib|run)/(docker|containerd)" {print $2}' /proc/mounts | sort -r | xargs -r umount -l
rm -rf /etc/docker /var/lib/docker /run/docker /run/containerd /var/run/docker.pid
vgremove -ff -y docker >/dev/null 2>&1; dmsetup remove_all --force; pvremove -ff -y /dev/vda >/dev/null 2>&1
wipefs -a -q /dev/vda; rm -f /etc/lvm/profile/*.profile; true
"""
# Docker's documentation, "Configure direct-lvm mode manually" (plus the VM's missing udev).
DOCKER_DAEMON_JSON = {
    "storage-driver": "devicemapper",
    "storage-opts": [
        "dm.thinpooldev=/dev/mapper/docker-thinpool",
        "dm.use_deferred_removal=true",
        "dm.use_deferred_deletion=true",
        "dm.override_udev_sync_check=true",
    ],
}
DOCKER_RECIPE = rf"""
set -e
pvcreate -q /dev/vda && vgcreate -q docker /dev/vda
lvcreate -q --wipesignatures y -n thinpool docker -l 95%VG
lvcreate -q --wipesignatures y -n thinpoolmeta docker -l 1%VG
lvconvert -q -y --zero n -c 512K --thinpool docker/thinpool --poolmetadata docker/thinpoolmeta
mkdir -p /etc/lvm/profile /etc/docker
printf 'activation {{\n thin_pool_autoextend_threshold=80\n thin_pool_autoextend_percent=20\n}}\n' \
  > /etc/lvm/profile/docker-thinpool.profile
lvchange -q --metadataprofile docker-thinpool docker/thinpool
lvchange -q --monitor y docker/thinpool
printf '%s\n' '{json.dumps(DOCKER_DAEMON_JSON)}' > /etc/docker/daemon.json
"""
START = r"""
(dockerd --iptables=false --bridge=none --ip-masq=false > /tmp/dockerd.log 2>&1 &)
for i in $(seq 240); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
docker import {image} tiny:1 >/dev/null
"""
CHURN = r"""
start=$(date +%s%N)
for i in $(seq {count}); do
  docker run --rm --network none tiny:1 sh -c 'dd if=/dev/zero of=/x bs=1M count=4 2>/dev/null' || exit 1
done
echo $(( ($(date +%s%N) - start) / 1000000 ))
"""


def main() -> int:
    from thinpool.app.context import system_context
    from thinpool.rehearse.kernel import obtain_debian_kernel
    from thinpool.rehearse.vm import VM, VMConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=12)
    count = parser.parse_args().containers
    thinpool = (
        f"{sys.executable} -m thinpool apply --yes --engine docker-devicemapper "
        "--storage-opt dm.override_udev_sync_check=true /dev/vda >/dev/null"
    )
    setups = {"thinpool (docker-devicemapper)": thinpool, "Docker's direct-lvm recipe": DOCKER_RECIPE}
    rates = {}
    with VM(VMConfig(disk_sizes=(8 * GiB,), kernel=obtain_debian_kernel(system_context().runner), lifetime=3000)) as vm:
        (vm.share / "tiny.tar").write_bytes(rootfs_tar())
        for name, setup in setups.items():
            vm.run(["bash", "-c", RESET], check=False, timeout=300)
            vm.run(["bash", "-c", setup], timeout=600)
            vm.run(["bash", "-c", START.format(image=f"{SHARE_MOUNT}/tiny.tar")], timeout=600)
            millis = int(vm.run(["bash", "-c", CHURN.format(count=count)], timeout=1800).stdout)
            rates[name] = count * 60_000 / millis
            print(f"{name:<32} {count} containers in {millis / 1000:.1f} s: {rates[name]:.1f} per minute")
        vm.run(["bash", "-c", RESET], check=False, timeout=300)
    first, second = rates.values()
    print(f"ratio (thinpool / Docker's recipe): {first / second:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
