"""What lvm's thin_check costs a pool's activation, full and with --skip-mappings, on both pinned releases.

    python3 -m benchmarks.thin_check_cost [--devices 250,1000] [--out docs/benchmarks/thin-check.json]
    python3 -m benchmarks.thin_check_cost --from-json docs/benchmarks/thin-check.json   # table only

lvm runs thin_check on a pool's metadata at every activation, boots included. Per release (Debian 12:
thin-provisioning-tools 0.9; Debian 13: 1.1) and per size, a fresh pool is filled by
benchmarks/guest_devices.py to N thin devices, as benchmarks/metadata_scale.py fills it (a base image,
12 layers, then containers that snapshot the top layer and make a few 4 KiB writes). The pool is then
deactivated, its metadata activated on its own (lvm's read-only component activation), and thin_check
run on it: full, then with --skip-mappings, three rounds interleaved; the median of each is kept, next
to the metadata in use (dm-thin's own count). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks import recorded
from benchmarks.metadata_scale import METADATA, POOL_DATA, SETUP, WORKLOAD
from thinpool.core.units import GiB, KiB, MiB

GUEST = Path(__file__).with_name("guest_devices.py")
RELEASES = ("debian-12", "debian-13")
CHUNK = 64 * KiB
ROUNDS = 3
MODES = {"full": "", "skip-mappings": "--skip-mappings"}
# The metadata on its own: the pool inactive, its _tmeta component active read-only.
ALONE = "vgchange -q -an bench && lvchange -q -ay -y bench/pool_tmeta"
TIMED = """start=$(date +%s%N); thin_check {options} /dev/mapper/bench-pool_tmeta >/dev/null 2>&1; code=$?
echo "$code $(( ($(date +%s%N) - start) / 1000000 ))" """


def check_millis(vm: Any, mode: str) -> int:
    code, millis = vm.run(["bash", "-c", TIMED.format(options=MODES[mode])], timeout=3600).stdout.split()
    if code != "0":
        raise RuntimeError(f"thin_check {MODES[mode]} exited {code} on a healthy pool's metadata")
    return int(millis)


def measure(vm: Any, devices: int) -> dict[str, Any]:
    """A fresh pool filled to ``devices`` thin devices; thin_check's time on its metadata, each mode."""
    disk = vm.devices[0]
    vm.run(["bash", "-c", SETUP.format(disk=disk, data=POOL_DATA, chunk=CHUNK, metadata=METADATA)], timeout=600)
    spec = {**WORKLOAD, "chunk": CHUNK, "data": POOL_DATA, "vg": "bench", "pool": "pool", "checkpoints": [devices]}
    filled = json.loads(vm.run_script(GUEST, json.dumps(spec), timeout=7200).stdout.strip().splitlines()[-1])
    vm.run(["bash", "-c", ALONE], timeout=600)
    times: dict[str, list[int]] = {mode: [] for mode in MODES}
    for _ in range(ROUNDS):
        for mode in MODES:
            times[mode].append(check_millis(vm, mode))
    vm.run(["lvchange", "-q", "-an", "bench/pool_tmeta"], timeout=600)
    phase = filled["phases"][-1]
    return {
        "devices": devices,
        "metadata_used": phase["metadata_used"],
        "metadata_total": phase["metadata_total"],
        "millis": {mode: statistics.median(values) for mode, values in times.items()},
        "rounds": times,
    }


def run_release(name: str, sizes: list[int]) -> dict[str, Any]:
    from thinpool.app.context import system_context
    from thinpool.rehearse import guest
    from thinpool.rehearse.vm import VM, VMConfig

    root = guest.obtain(guest.release_named(name), system_context().runner, print)
    config = VMConfig(disk_sizes=(6 * GiB,), kernel=root.kernel, guest=root, write_budget=8 * GiB, lifetime=7200)
    with VM(config) as vm:
        versions = vm.run(["bash", "-c", "uname -r; lvm version | head -1; thin_check -V"]).stdout.split("\n")
        points = []
        for devices in sizes:
            points.append(measure(vm, devices))
            print(f"{name}: {devices} devices: {points[-1]['millis']}", file=sys.stderr, flush=True)
    return {"release": name, "versions": [line.strip() for line in versions if line.strip()], "points": points}


def run_in_vm(sizes: list[int]) -> dict[str, Any]:
    releases = [run_release(name, sizes) for name in RELEASES]
    return {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, qemu TCG guest",
        "versions": "\n".join(f"{item['release']}: {'; '.join(item['versions'])}" for item in releases),
        "chunk": CHUNK,
        "workload": WORKLOAD,
        "releases": releases,
    }


def table(data: dict[str, Any]) -> str:
    header = ("release", "thin devices", "metadata in use", "full", "skip-mappings", "full per MiB", "skip / full")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for release in data["releases"]:
        tools = release["versions"][-1]
        for point in release["points"]:
            used = point["metadata_used"] / MiB
            full, skip = point["millis"]["full"], point["millis"]["skip-mappings"]
            lines.append(
                f"| {release['release']} (thin_check {tools}) | {point['devices']:,} | {used:.1f} MiB "
                f"| {full / 1000:.2f} s | {skip / 1000:.2f} s | {full / used:.0f} ms | {skip / full:.2f} |"
            )
    return "\n".join(lines)


def main() -> int:
    def own_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--devices", default="250,1000", help="the pool sizes, in thin devices (default 250,1000)")

    return recorded.main(__doc__, own_options, lambda args: run_in_vm([int(n) for n in args.devices.split(",")]), table)


if __name__ == "__main__":
    sys.exit(main())
