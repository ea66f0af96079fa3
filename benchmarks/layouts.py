"""What each layout costs or gives a pool's writes: the same two disks, each layout in turn, in one VM run.

    python3 -m benchmarks.layouts [--rounds 3] [--containers 8] [--out docs/benchmarks/layouts.json]
    python3 -m benchmarks.layouts --from-json docs/benchmarks/layouts.json   # table only

Debian 13's guest, two disks of one size. For each layout, in rounds that take the layouts in turn (reversed
every other round): thinpool apply makes the pool on both disks with Docker on it (docker-overlay2-thin), waits
until every RAID part is in sync (a resync would compete with the writes), then times on a 1 GiB thin volume
256 MiB of sequential 1 MiB direct writes and 8,192 direct 4 KiB writes at random offsets in 64 MiB (each
first write to a chunk also provisions it), and the containers run and removed one after another, each
writing 4 MiB. The pool is destroyed after each. The median of each figure is kept, and each layout's is given
as a ratio to all-linear on the same disks: under emulation the absolute figures mean little, and the two
virtual disks share one host disk, so striping cannot add a second disk's speed here (docs/benchmarks).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from typing import Any

from benchmarks import recorded
from benchmarks.churn import CHURN
from benchmarks.luks_cost import WRITE
from thinpool.core.units import GiB, MiB
from thinpool.rehearse.images import rootfs_tar
from thinpool.rehearse.vm import SHARE_MOUNT

DISK = 3 * GiB
LAYOUTS = {
    "linear": ("--metadata-layout", "linear"),
    "linear, raid1 metadata": (),  # the default on two disks
    "striped": ("--layout", "striped"),
    "raid1": ("--layout", "raid1"),
}
SEQUENTIAL = 256 * MiB
RANDOM_WRITES = 8192
APPLY = ("apply", "--yes", "--engine", "docker-overlay2-thin", "--volume-size", "1g", "--data-size", "2g")
START = r"""
(dockerd --iptables=false --bridge=none --ip-masq=false > /tmp/dockerd.log 2>&1 &)
for i in $(seq 240); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
docker import {image} tiny:1 >/dev/null
"""
STOP = r"""
pkill -x dockerd; for i in $(seq 100); do pgrep -x 'dockerd|containerd' >/dev/null || break; sleep 0.2; done
pkill -9 -x 'dockerd|containerd|containerd-shim-runc-v2' 2>/dev/null; true
"""
RESET = r"""
umount -l /var/lib/docker 2>/dev/null; vgremove -ff -y docker >/dev/null 2>&1; dmsetup remove_all --force
pvremove -ff -y {disks} >/dev/null 2>&1; wipefs -a -q {disks}
rm -rf /etc/docker /var/lib/docker /etc/lvm/profile/thinpool-*.profile; sed -i '\# /var/lib/docker #d' /etc/fstab; true
"""
IN_SYNC = r"""
for i in $(seq 1800); do
  lvs -a --noheadings -o segtype,copy_percent docker | awk '$1 ~ /^raid/ && $2 != "100.00" {n++} END {exit n > 0}' \
    && exit 0
  sleep 1
done; exit 1
"""


def _millis(vm: Any, kind: str, count: int) -> int:
    return int(vm.python("-c", WRITE, "/dev/docker/bench", kind, "0", str(count), timeout=3600).stdout.split()[-1])


def measure_one(vm: Any, options: tuple[str, ...], containers: int) -> dict[str, int]:
    disks = vm.devices[:2]
    vm.thinpool(*APPLY, *options, *disks, timeout=900)
    vm.run(["bash", "-c", IN_SYNC], timeout=1900)
    vm.run(["lvcreate", "-q", "-y", "-V", "1g", "-T", "docker/thinpool", "-n", "bench"])
    figures = {"seq": _millis(vm, "seq", SEQUENTIAL // MiB)}
    vm.run(["lvremove", "-q", "-y", "docker/bench"])  # a fresh volume: the random writes provision too
    vm.run(["lvcreate", "-q", "-y", "-V", "1g", "-T", "docker/thinpool", "-n", "bench"])
    figures["rand"] = _millis(vm, "rand", RANDOM_WRITES)
    vm.run(["lvremove", "-q", "-y", "docker/bench"])
    vm.run(["bash", "-c", START.format(image=f"{SHARE_MOUNT}/tiny.tar")], timeout=600)
    figures["churn"] = int(vm.run(["bash", "-c", CHURN.format(count=containers)], timeout=3600).stdout)
    vm.run(["bash", "-c", STOP + RESET.format(disks=" ".join(disks))], timeout=300)
    return figures


def measure(vm: Any, rounds: int, containers: int) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, list[int]]] = {name: {"seq": [], "rand": [], "churn": []} for name in LAYOUTS}
    for round_ in range(rounds):
        for name in LAYOUTS if round_ % 2 == 0 else reversed(list(LAYOUTS)):
            figures = measure_one(vm, LAYOUTS[name], containers)
            for kind, value in figures.items():
                times[name][kind].append(value)
            print(f"round {round_ + 1} {name}: {figures}", file=sys.stderr, flush=True)
    return {name: {kind: statistics.median(values) for kind, values in kinds.items()} for name, kinds in times.items()}


def run_in_vm(rounds: int, containers: int) -> dict[str, Any]:
    from thinpool.app.context import system_context
    from thinpool.rehearse import guest
    from thinpool.rehearse.vm import VM, VMConfig

    root = guest.obtain(guest.release_named("debian-13"), system_context().runner, print)
    config = VMConfig(disk_sizes=(DISK, DISK), kernel=root.kernel, guest=root, write_budget=24 * GiB, lifetime=10800)
    with VM(config) as vm:
        (vm.share / "tiny.tar").write_bytes(rootfs_tar())
        versions = vm.run(["bash", "-c", "uname -r; lvm version | head -1; dockerd --version"]).stdout
        medians = measure(vm, rounds, containers)
    return {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, qemu TCG guest",
        "versions": "; ".join(line.strip() for line in versions.splitlines() if line.strip()),
        "rounds": rounds,
        "containers": containers,
        "sequential_bytes": SEQUENTIAL,
        "random_writes": RANDOM_WRITES,
        "millis": medians,
    }


def table(data: dict[str, Any]) -> str:
    millis, base = data["millis"], data["millis"]["linear"]
    seq_mib, count = data["sequential_bytes"] // MiB, data["containers"]
    lines = [
        f"| layout | {seq_mib} MiB sequential | / linear | 8,192 random 4 KiB | / linear "
        f"| {count} containers | / linear |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, figures in millis.items():
        cells = [
            f"{figures[kind] / 1000:.2f} s | {figures[kind] / base[kind]:.2f}" for kind in ("seq", "rand", "churn")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nTimes: lower is faster; a ratio above 1 is slower than linear."


def main() -> int:
    def own_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--rounds", type=int, default=3, help="rounds of every layout, in turn (default 3)")
        parser.add_argument("--containers", type=int, default=8, help="containers per churn (default 8)")

    return recorded.main(__doc__, own_options, lambda args: run_in_vm(args.rounds, args.containers), table)


if __name__ == "__main__":
    sys.exit(main())
