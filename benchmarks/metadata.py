"""Metadata benchmark: real dm-thin pools in the rehearsal VM under container-shaped workloads.

    python3 -m benchmarks.metadata [--out docs/benchmarks/metadata.json]
    python3 -m benchmarks.metadata --from-json docs/benchmarks/metadata.json   # table only

Per workload and chunk size it measures metadata in use (dm-thin's own block counters) after
each phase, and prints it next to thinpool's model, lvm2's default estimate, the man-page
formula of the classic recipe and thin_metadata_size. This prints figures; it asserts nothing.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import recorded
from thinpool.core import sizing
from thinpool.core.units import GiB, KiB, MiB

POOL_DATA = 6 * GiB
WORKLOADS = (
    {"name": "small", "base_mib": 64, "layers": 3, "layer_mib": 8, "containers": 8, "writes": 32, "churn_rounds": 1},
    {"name": "deep layers", "base_mib": 256, "layers": 12, "layer_mib": 32, "containers": 10, "writes": 64,
     "churn_rounds": 0},
    {"name": "many containers", "base_mib": 128, "layers": 3, "layer_mib": 16, "containers": 40, "writes": 64,
     "churn_rounds": 1},
)  # fmt: skip
CHUNKS = (64 * KiB, 512 * KiB)
SETUP = """
set -e
vgremove -ff -y bench >/dev/null 2>&1 || true
pvremove -ff -y /dev/vda >/dev/null 2>&1 || true
wipefs -a -q /dev/vda
pvcreate -q /dev/vda && vgcreate -q bench /dev/vda
lvcreate -q -y --type thin-pool -n pool -L {data} --chunksize {chunk}b --poolmetadatasize 256m --zero n bench
"""


def run_in_vm() -> dict[str, Any]:
    from thinpool.app.context import system_context
    from thinpool.rehearse.kernel import obtain_debian_kernel
    from thinpool.rehearse.vm import VM, VMConfig

    kernel = obtain_debian_kernel(system_context().runner)
    results = []
    guest = Path(__file__).with_name("guest_workload.py")
    with VM(VMConfig(disk_sizes=(8 * GiB,), kernel=kernel, write_budget=9 * GiB, lifetime=3000)) as vm:
        versions = vm.run(["bash", "-c", "uname -r; lvm version | head -3; thin_check -V"]).stdout
        for chunk in CHUNKS:
            for workload in WORKLOADS:
                started = time.monotonic()
                vm.run(["bash", "-c", SETUP.format(data=f"{POOL_DATA}b", chunk=chunk)], timeout=600)
                spec = {**workload, "chunk": chunk, "vg": "bench", "pool": "pool", "volume_gib": 10}
                out = vm.run_script(guest, json.dumps(spec), timeout=1800).stdout
                results.append({**json.loads(out.strip().splitlines()[-1]), "spec": spec})
                print(
                    f"{workload['name']}, chunk {chunk // KiB} KiB: {time.monotonic() - started:.0f}s", file=sys.stderr
                )
    return {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, qemu TCG guest",
        "versions": versions.strip(),
        "pool_data": POOL_DATA,
        "results": results,
    }


def thin_metadata_size(chunk: int, devices: int) -> int:
    argv = ["thin_metadata_size", "-b", f"{chunk // KiB}k", "-s", f"{POOL_DATA // MiB}m", "-m", str(devices)]
    done = subprocess.run([*argv, "-u", "b", "-n"], capture_output=True, text=True, check=True)
    return int(float(done.stdout.split()[0]))


def usage_after(
    spec: dict[str, Any], phase_index: int, data_size: int = POOL_DATA, metadata_size: int | None = None
) -> sizing.PoolUsage:
    """What the pool holds after phase 0 (empty volume), 1 (base), 2 (layers), 3+ (containers, churn)."""
    return sizing.PoolUsage(
        data_size=data_size,
        chunk_size=spec["chunk"],
        base_bytes=spec["base_mib"] * MiB if phase_index >= 1 else 0,
        layers=spec["layers"] if phase_index >= 2 else 0,
        layer_bytes=spec["layer_mib"] * MiB,
        containers=spec["containers"] if phase_index >= 3 else 0,
        writes_per_container=spec["writes"],
        metadata_size=metadata_size,
    )


def reserve(total: int) -> int:
    """dm-thin counts its reserve as used: min(a tenth of the blocks, 4,096 blocks of 4 KiB)."""
    blocks = total // sizing.METADATA_BLOCK
    return min(blocks // sizing.KERNEL_RESERVE_DIVISOR, sizing.KERNEL_RESERVE_CAP // sizing.METADATA_BLOCK) * 4096


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for result in data["results"]:
        spec, chunk = result["spec"], result["chunk"]
        for index, phase in enumerate(result["phases"]):
            structures = phase["metadata_used"] - reserve(phase["metadata_total"])
            usage = usage_after(spec, index, metadata_size=phase["metadata_total"])
            found.append(
                {
                    "workload": spec["name"],
                    "chunk": chunk,
                    "phase": phase["phase"],
                    "devices": phase["thin_devices"],
                    "measured": structures,
                    "model": sizing.metadata_need(usage),
                    "lvm2": max(sizing.METADATA_MIN, sizing.lvm_metadata_estimate(POOL_DATA, chunk)),
                    "man": POOL_DATA // chunk * 64,
                    "tms": thin_metadata_size(chunk, phase["thin_devices"]),
                }
            )
    return found


def table(data: dict[str, Any]) -> str:
    header = (
        "workload",
        "chunk",
        "phase",
        "thin devices",
        "measured",
        "thinpool model",
        "model / measured",
        "lvm2 default",
        "man-page formula",
        "thin_metadata_size",
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows(data):
        lines.append(
            f"| {row['workload']} | {row['chunk'] // KiB} KiB | {row['phase']} | {row['devices']} | "
            f"{_kib(row['measured'])} | {_kib(row['model'])} | {row['model'] / row['measured']:.2f} | "
            f"{_kib(row['lvm2'])} | {_kib(row['man'])} | {_kib(row['tms'])} |"
        )
    return "\n".join(lines)


def _kib(size: int) -> str:
    return f"{size // KiB:,} KiB"


def _mib(size: int) -> str:
    return f"{size / MiB:.2f} MiB"


def main() -> int:
    return recorded.main(__doc__, lambda _parser: None, lambda _args: run_in_vm(), table)


if __name__ == "__main__":
    sys.exit(main())
