"""Moving off devicemapper: how long each step of ``thinpool migrate`` takes per GiB of images, in the VM.

    python3 -m benchmarks.migrate [--out docs/benchmarks/migrate.json] [--sizes 128,256,512]
    python3 -m benchmarks.migrate --from-json docs/benchmarks/migrate.json   # table only

For each size, on a fresh host: thinpool's docker-devicemapper pool, Docker 20.10 on it, one image
holding that many MiB of random data (a container's write, committed) and a 16 MiB named volume;
then export (staging on ext4 on a second disk), stop dockerd, switch, start dockerd on overlay2,
import (with its check), and --finish, each timed. Prints figures; asserts nothing (the VM tests do).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from typing import Any

from benchmarks import recorded
from thinpool.core.units import GiB, MiB
from thinpool.rehearse.vm import SHARE_MOUNT

DOCKERD = "dockerd --iptables=false --bridge=none --ip-masq=false"
READY = "for i in $(seq 240); do docker version >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1"
STOP = """pkill -x dockerd
for i in $(seq 240); do ps -eo stat=,comm= | awk '$1 !~ /^Z/ && $2 == "dockerd"' | grep -q . || exit 0; sleep 0.5; done
exit 1"""
RESET = """pkill -x dockerd; sleep 2; pkill -9 -x 'dockerd|containerd|containerd-shim-runc-v2'
awk '$2 ~ "^/var/lib/docker" {{print $2}}' /proc/mounts | sort -r | xargs -r umount -l
rm -rf /etc/docker /var/lib/docker /var/lib/docker.devicemapper /var/lib/thinpool /run/docker /run/docker.sock
[ -f /run/fstab.orig ] || cp /etc/fstab /run/fstab.orig; cp /run/fstab.orig /etc/fstab
vgremove -ff -y docker >/dev/null 2>&1; pvremove -ff -y {disk} >/dev/null 2>&1; wipefs -a -q {disk}
rm -rf /srv/staging/*; true"""
STAGING_DISK = "mkfs.ext4 -q -F {disk} && mount --mkdir {disk} /srv/staging"
STEPS = ("export", "switch", "import", "finish")


def _host(vm: Any, disk: str, size_mib: int) -> None:
    """Docker on devicemapper with one image of ``size_mib`` MiB of random data and a 16 MiB volume."""
    vm.thinpool(
        "apply",
        "--yes",
        "--engine",
        "docker-devicemapper",
        "--storage-opt",
        "dm.override_udev_sync_check=true",
        disk,
        timeout=600,
    )
    _start(vm)
    vm.run(["docker", "import", f"{SHARE_MOUNT}/tiny.tar", "tiny:1"], timeout=600)
    write = f"head -c {size_mib * MiB} /dev/urandom > /big && head -c {16 * MiB} /dev/urandom > /v/data"
    vm.run(
        ["docker", "run", "--network", "none", "--name", "writer", "-v", "vol:/v", "tiny:1", "sh", "-c", write],
        timeout=3600,
    )
    vm.run(["docker", "commit", "writer", f"big:{size_mib}"], timeout=3600)
    vm.run(["docker", "rm", "writer"], timeout=600)


def _start(vm: Any) -> None:
    vm.run(["bash", "-c", f"({DOCKERD} > /tmp/dockerd.log 2>&1 &)"])
    vm.run(["bash", "-c", READY], timeout=180)


def _timed(vm: Any, *args: str) -> float:
    started = time.monotonic()
    vm.thinpool("migrate", "--to", "docker-overlay2-thin", "--staging", "/srv/staging", "--yes", *args, timeout=7200)
    return time.monotonic() - started


def one_size(vm: Any, disk: str, size_mib: int) -> dict[str, Any]:
    _host(vm, disk, size_mib)
    images = int(
        vm.run(
            ["bash", "-c", "docker image inspect $(docker image ls -q) --format '{{.Size}}' | paste -sd+ | bc"]
        ).stdout
    )
    seconds = {"export": _timed(vm, "--step", "export")}
    vm.run(["bash", "-c", STOP], timeout=180)
    seconds["switch"] = _timed(vm, "--step", "switch")
    _start(vm)
    seconds["import"] = _timed(vm, "--step", "import")
    seconds["finish"] = _timed(vm, "--finish")
    return {"image_mib": size_mib, "image_bytes": images, "seconds": seconds}


def run_in_vm(sizes: list[int]) -> dict[str, Any]:
    from thinpool.app.context import system_context
    from thinpool.rehearse.images import rootfs_tar
    from thinpool.rehearse.kernel import obtain_debian_kernel
    from thinpool.rehearse.vm import VM, VMConfig

    largest = max(sizes) * MiB
    config = VMConfig(
        disk_sizes=(4 * GiB + 2 * largest, 2 * largest + 1 * GiB),
        kernel=obtain_debian_kernel(system_context().runner),
        write_budget=8 * largest + 8 * GiB,
        lifetime=7200,
    )
    results = []
    with VM(config) as vm:
        (vm.share / "tiny.tar").write_bytes(rootfs_tar())
        versions = vm.run(["bash", "-c", "uname -r; lvm version | head -1; dockerd --version"]).stdout
        pool_disk, staging_disk = vm.devices
        vm.run(["bash", "-c", STAGING_DISK.format(disk=shlex.quote(staging_disk))], timeout=300)
        for size in sizes:
            vm.run(["bash", "-c", RESET.format(disk=shlex.quote(pool_disk))], timeout=600)
            results.append(one_size(vm, pool_disk, size))
            print(f"{size} MiB: {results[-1]['seconds']}", file=sys.stderr, flush=True)
    return {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, qemu TCG guest",
        "versions": versions.strip(),
        "results": results,
    }


def table(data: dict[str, Any]) -> str:
    header = ("images", *(f"{step} s" for step in STEPS), "total s", "s per GiB of images")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in data["results"]:
        seconds = result["seconds"]
        total = sum(seconds.values())
        per_gib = total * GiB / result["image_bytes"]
        cells = [
            f"{result['image_bytes'] / MiB:.0f} MiB",
            *(f"{seconds[step]:.1f}" for step in STEPS),
            f"{total:.1f}",
            f"{per_gib:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    def own_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--sizes", default="128,256,512", help="image sizes in MiB, comma-separated")

    return recorded.main(__doc__, own_options, lambda args: run_in_vm([int(s) for s in args.sizes.split(",")]), table)


if __name__ == "__main__":
    sys.exit(main())
