"""Soak: cycles of container and image churn per engine and reclaim choice, in one VM run.

    python3 -m benchmarks.soak [--cycles 6] [--containers 4] [--write-mib 64] [--out docs/benchmarks]

Each cycle runs CONTAINERS containers that each write WRITE_MIB and exit, commits the first as
an image (Docker), then removes every container and the image. After each cycle the pool's
mapped bytes, its metadata use and (for overlay2-thin) what XFS holds are read, and the cycle's
containers per minute. Reclaim choices for overlay2-thin: none, ``thinpool maintain`` after
each cycle (fstrim of the thin volume), or the ``discard`` mount option (online discard). The
devicemapper engines discard a device when they delete it (dm.blkdiscard, discard_blocks).

With --out, writes soak.json and soak.svg (pool mapped per cycle) there. Everything runs in
the rehearsal VM; nothing starts on this host.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

from benchmarks.plot import line_chart
from thinpool.core.units import GiB, MiB
from thinpool.rehearse.images import rootfs_tar, write_oci_archive
from thinpool.rehearse.vm import SHARE_MOUNT, VM

THINPOOL = f"{sys.executable} -m thinpool"
RESET = r"""
pkill -x dockerd; pkill -x containerd
for i in $(seq 50); do
  ps -eo stat=,comm= | awk '$1 !~ /^Z/ && $2 ~ /^(dockerd|containerd)/' | grep -q . || break; sleep 0.2
done
pkill -9 -x 'dockerd|containerd|containerd-shim-runc-v2' 2>/dev/null
awk '$2 ~ "^/(var/lib|run)/(docker|containerd)" {print $2}' /proc/mounts | sort -r | xargs -r umount -l
rm -rf /etc/docker /etc/containerd /var/lib/docker /var/lib/containerd /run/docker /run/containerd /var/run/docker.pid
[ -f /run/fstab.orig ] || cp /etc/fstab /run/fstab.orig; cp /run/fstab.orig /etc/fstab
vgremove -ff -y docker >/dev/null 2>&1; dmsetup remove_all --force; pvremove -ff -y /dev/vda >/dev/null 2>&1
wipefs -a -q /dev/vda; rm -f /etc/lvm/profile/*.profile; true
"""
DOCKERD = "(dockerd --iptables=false --bridge=none --ip-masq=false > /tmp/dockerd.log 2>&1 &)"
CONTAINERD = "(containerd > /tmp/containerd.log 2>&1 &)"
WAIT = "for i in $(seq 240); do {probe} >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1"
WRITE = "dd if=/dev/zero of=/x bs=1M count={mib} 2>/dev/null && sync"
DOCKER_CYCLE = r"""
set -e
start=$(date +%s%N)
for i in $(seq {count}); do docker run --name c$i --network none tiny:1 sh -c '{write}'; done
docker commit c1 churn:img >/dev/null
for i in $(seq {count}); do docker rm c$i >/dev/null; done
docker rmi churn:img >/dev/null
sync
echo $(( ($(date +%s%N) - start) / 1000000 ))
"""
CTR_CYCLE = r"""
set -e
start=$(date +%s%N)
for i in $(seq {count}); do
  ctr run --snapshotter devmapper docker.io/library/tiny:1 c$i sh -c '{write}'
done
for i in $(seq {count}); do ctr containers rm c$i; done
sync
echo $(( ($(date +%s%N) - start) / 1000000 ))
"""
POOL_REPORT = "lvs --noheadings --units b --nosuffix -o lv_size,data_percent,lv_metadata_size,metadata_percent"
DATA_ROOT_MOUNT = "/dev/mapper/docker-docker--data /var/lib/docker"


@dataclass(frozen=True)
class Setup:
    engine: str  # overlay2 | devicemapper | containerd
    reclaim: str  # none | maintain | discard | engine


SETUPS = {
    "overlay2-thin, no reclaim": Setup("overlay2", "none"),
    "overlay2-thin + thinpool maintain": Setup("overlay2", "maintain"),
    "overlay2-thin + discard mount": Setup("overlay2", "discard"),
    "docker devicemapper": Setup("devicemapper", "engine"),
    "containerd devmapper": Setup("containerd", "engine"),
}


@dataclass
class Cycle:
    cycle: int
    seconds: float
    containers_per_minute: float
    pool_mapped: int
    metadata_used: int
    fs_used: int  # XFS used on the data root (overlay2-thin), 0 otherwise
    maintain_seconds: float = 0.0


@dataclass
class Run:
    name: str
    setup: Setup
    baseline_mapped: int = 0
    cycles: list[Cycle] = field(default_factory=list)


def _sh(vm: VM, script: str, timeout: int = 900) -> str:
    return vm.run(["bash", "-c", script], timeout=timeout).stdout


def _apply(vm: VM, setup: Setup) -> None:
    engine = {
        "overlay2": "docker-overlay2-thin",
        "devicemapper": "docker-devicemapper",
        "containerd": "containerd-devmapper",
    }[setup.engine]
    extra = " --storage-opt dm.override_udev_sync_check=true" if setup.engine == "devicemapper" else ""
    _sh(vm, f"{THINPOOL} apply --yes --engine {engine}{extra} /dev/vda >/dev/null")
    if setup.reclaim == "discard":  # the same mount with online discard
        _sh(vm, f"umount /var/lib/docker && mount -o pquota,noatime,discard {DATA_ROOT_MOUNT}")
    if setup.engine == "containerd":
        _sh(vm, CONTAINERD)
        _sh(vm, WAIT.format(probe="ctr version"))
        _sh(vm, f"ctr images import --snapshotter devmapper {SHARE_MOUNT}/soak-oci.tar >/dev/null")
    else:
        _sh(vm, DOCKERD)
        _sh(vm, WAIT.format(probe="docker version"))
        _sh(vm, f"docker import {SHARE_MOUNT}/soak-rootfs.tar tiny:1 >/dev/null")


def _measure(vm: VM, setup: Setup) -> tuple[int, int, int]:
    """(pool mapped, metadata used, XFS used) in bytes, from lvm's percent and df."""
    size, percent, metadata, metadata_percent = _sh(vm, f"{POOL_REPORT} docker/thinpool").split()
    fs_used = 0
    if setup.engine == "overlay2":
        fs_used = int(_sh(vm, "df -B1 --output=used /var/lib/docker | tail -1"))
    mapped = int(int(size) * Decimal(percent) / 100)
    return mapped, int(int(metadata) * Decimal(metadata_percent) / 100), fs_used


def soak(vm: VM, name: str, setup: Setup, cycles: int, count: int, mib: int) -> Run:
    vm.run(["bash", "-c", RESET], check=False, timeout=300)
    _apply(vm, setup)
    run = Run(name, setup, baseline_mapped=_measure(vm, setup)[0])
    template = CTR_CYCLE if setup.engine == "containerd" else DOCKER_CYCLE
    for number in range(1, cycles + 1):
        millis = int(_sh(vm, template.format(count=count, write=WRITE.format(mib=mib)), timeout=1800))
        maintain = 0.0
        if setup.reclaim == "maintain":
            maintain = (
                float(
                    _sh(
                        vm,
                        f"s=$(date +%s%N); {THINPOOL} maintain docker/thinpool >/dev/null; "
                        "echo $(( ($(date +%s%N) - s) / 1000000 ))",
                    )
                )
                / 1000
            )
        mapped, metadata, fs_used = _measure(vm, setup)
        cycle = Cycle(number, millis / 1000, count * 60_000 / millis, mapped, metadata, fs_used, maintain)
        run.cycles.append(cycle)
        print(
            f"{name:<36} cycle {number}: {cycle.containers_per_minute:5.1f}/min, pool maps "
            f"{mapped / MiB:7.1f} MiB, metadata {metadata / 1024:6.0f} KiB"
            + (f", XFS holds {fs_used / MiB:6.1f} MiB" if fs_used else "")
            + (f", maintain {maintain:.1f} s" if maintain else ""),
            flush=True,
        )
    return run


def summary(runs: list[Run]) -> str:
    lines = [
        "| setup | containers/min (median) | pool maps after last cycle | XFS holds | maps / holds "
        "| metadata first → last |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        last, first = run.cycles[-1], run.cycles[0]
        rate = statistics.median(cycle.containers_per_minute for cycle in run.cycles)
        holds = f"{last.fs_used / MiB:,.0f} MiB" if last.fs_used else "-"
        ratio = f"{last.pool_mapped / last.fs_used:.1f}" if last.fs_used else "-"
        lines.append(
            f"| {run.name} | {rate:.1f} | {last.pool_mapped / MiB:,.0f} MiB | {holds} | {ratio} "
            f"| {first.metadata_used / 1024:,.0f} → {last.metadata_used / 1024:,.0f} KiB |"
        )
    return "\n".join(lines)


def main() -> int:
    from thinpool.app.context import system_context
    from thinpool.rehearse.kernel import obtain_debian_kernel
    from thinpool.rehearse.vm import VMConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--containers", type=int, default=4)
    parser.add_argument("--write-mib", type=int, default=64)
    parser.add_argument("--only", action="append", choices=sorted(SETUPS), help="run only these setups")
    parser.add_argument("--out", type=Path, help="write soak.json and soak.svg into this folder")
    args = parser.parse_args()
    disk = 6 * GiB
    config = VMConfig(
        disk_sizes=(disk,), kernel=obtain_debian_kernel(system_context().runner), lifetime=7200, write_budget=disk + GiB
    )
    runs = []
    with VM(config) as vm:
        (vm.share / "soak-rootfs.tar").write_bytes(rootfs_tar())
        write_oci_archive(vm.share / "soak-oci.tar", "docker.io/library/tiny:1")
        for name, setup in SETUPS.items():
            if not args.only or name in args.only:
                runs.append(soak(vm, name, setup, args.cycles, args.containers, args.write_mib))
        vm.run(["bash", "-c", RESET], check=False, timeout=300)
    print(summary(runs))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "soak.json").write_text(json.dumps([asdict(run) for run in runs], indent=1) + "\n")
        series = {
            run.name: [(0.0, run.baseline_mapped / MiB)] + [(c.cycle, c.pool_mapped / MiB) for c in run.cycles]
            for run in runs
        }
        title = f"Pool mapped per churn cycle ({args.containers} containers x {args.write_mib} MiB + an image)"
        (args.out / "soak.svg").write_text(line_chart(series, title=title, x_label="cycle", y_label="MiB mapped"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
