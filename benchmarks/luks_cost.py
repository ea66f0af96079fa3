"""What --encrypt costs a pool's writes: the same thin pool on a plain disk and on LUKS2, in one VM run.

    python3 -m benchmarks.luks_cost [--rounds 3] [--out docs/benchmarks/luks.json]
    python3 -m benchmarks.luks_cost --from-json docs/benchmarks/luks.json   # table only

Debian 13's guest, two disks of one size: thinpool apply makes a pool on each (the second with --encrypt, so
with the same chunk and layout, on its LUKS2 mapping), and a 1 GiB thin volume in each. Then, in rounds that
alternate the two pools: 256 MiB of sequential 1 MiB direct writes, and 8,192 direct 4 KiB writes at random
offsets in 64 MiB, each round in a region of the volume not mapped yet (so the first write to each chunk also
provisions it, as a container's first writes do). The median of each is kept, and the encrypted pool's
figures are given as a ratio to the plain one's: under emulation the absolute figures mean little. TCG
emulates AES-NI, so the ratio is an upper bound (docs/benchmarks). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from typing import Any

from benchmarks import recorded
from thinpool.core.units import GiB, MiB

DISK = 3 * GiB
VOLUME = "1g"
POOLS = {"plain": ("--vg", "plain"), "luks": ("--vg", "secret", "--encrypt")}
SEQUENTIAL = 256 * MiB
RANDOM_WRITES = 8192
# A region of the volume per round and pool, so that every write lands where nothing is mapped yet.
REGION = 320 * MiB
WRITE = """import mmap, os, random, sys, time
path, kind, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
size = 1 << 20 if kind == "seq" else 4096
buffer = mmap.mmap(-1, size)
buffer.write(os.urandom(size))
fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
offsets = [start + i * size for i in range(count)]
if kind == "rand":
    random.seed(start)
    offsets = [start + random.randrange(0, (64 << 20) // size) * size for _ in range(count)]
began = time.monotonic()
for offset in offsets:
    os.pwrite(fd, buffer, offset)
os.fsync(fd)
print(int((time.monotonic() - began) * 1000))
"""


def _millis(vm: Any, pool: str, kind: str, start: int, count: int) -> int:
    device = f"/dev/{POOLS[pool][1]}/bench"
    return int(vm.python("-c", WRITE, device, kind, str(start), str(count), timeout=3600).stdout.split()[-1])


def measure(vm: Any, rounds: int) -> dict[str, Any]:
    for pool, options in POOLS.items():
        disk = vm.devices[list(POOLS).index(pool)]
        vm.thinpool("apply", "--yes", *options, disk, timeout=900)
        vm.run(["lvcreate", "-q", "-y", "-V", VOLUME, "-T", f"{options[1]}/thinpool", "-n", "bench"])
    times: dict[str, dict[str, list[int]]] = {pool: {"seq": [], "rand": []} for pool in POOLS}
    for round_ in range(rounds):
        for pool in POOLS if round_ % 2 == 0 else reversed(list(POOLS)):
            start = round_ * REGION
            times[pool]["seq"].append(_millis(vm, pool, "seq", start, SEQUENTIAL // MiB))
            times[pool]["rand"].append(_millis(vm, pool, "rand", start + SEQUENTIAL, RANDOM_WRITES))
            print(f"round {round_ + 1} {pool}: {times[pool]['seq'][-1]} ms seq, {times[pool]['rand'][-1]} ms rand",
                  file=sys.stderr, flush=True)  # fmt: skip
    return {pool: {kind: statistics.median(values) for kind, values in kinds.items()} for pool, kinds in times.items()}


def run_in_vm(rounds: int) -> dict[str, Any]:
    from thinpool.app.context import system_context
    from thinpool.rehearse import guest
    from thinpool.rehearse.vm import VM, VMConfig

    root = guest.obtain(guest.release_named("debian-13"), system_context().runner, print)
    config = VMConfig(disk_sizes=(DISK, DISK), kernel=root.kernel, guest=root, write_budget=8 * GiB, lifetime=7200)
    with VM(config) as vm:
        versions = vm.run(["bash", "-c", "uname -r; cryptsetup --version; lvm version | head -1"]).stdout
        medians = measure(vm, rounds)
    return {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, qemu TCG guest",
        "versions": "; ".join(line.strip() for line in versions.splitlines() if line.strip()),
        "rounds": rounds,
        "sequential_bytes": SEQUENTIAL,
        "random_writes": RANDOM_WRITES,
        "millis": medians,
    }


def table(data: dict[str, Any]) -> str:
    plain, luks = data["millis"]["plain"], data["millis"]["luks"]
    seq_mib = data["sequential_bytes"] // MiB
    lines = ["| write | plain pool | pool on LUKS2 | LUKS / plain |", "|---|---|---|---|"]
    for kind, label in (("seq", f"{seq_mib} MiB sequential, 1 MiB direct"), ("rand", "8,192 random 4 KiB direct")):
        lines.append(
            f"| {label} | {plain[kind] / 1000:.2f} s | {luks[kind] / 1000:.2f} s | {luks[kind] / plain[kind]:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    def own_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--rounds", type=int, default=3, help="rounds per pool, alternating (default 3)")

    return recorded.main(__doc__, own_options, lambda args: run_in_vm(args.rounds), table)


if __name__ == "__main__":
    sys.exit(main())
