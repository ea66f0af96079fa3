"""The metadata model at its default scale: 1,000 thin devices on one real pool in the rehearsal VM.

    python3 -m benchmarks.metadata_scale [--devices 1000] [--out docs/benchmarks/metadata-scale.json]
    python3 -m benchmarks.metadata_scale --from-json docs/benchmarks/metadata-scale.json   # table only

A base image (lvm's thin volume, written sequentially), chained layers that each append their
data, then containers: snapshots of the top layer, each making a few 4 KiB writes at random
places of the image. Layers and containers are made with dm messages (``create_snap``), as the
container engines make them, so a thousand devices take minutes. At each checkpoint it prints the
metadata dm-thin uses (minus its reserve) next to thinpool's model: the model must never be
below it, and not far above (issue 18: between 1.0 and 1.5). It prints figures; it asserts nothing
(tests/vm/test_metadata_model.py runs a short version that asserts).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import recorded
from benchmarks.metadata import reserve
from thinpool.core import sizing
from thinpool.core.units import GiB, KiB, MiB

GUEST = Path(__file__).with_name("guest_devices.py")
POOL_DATA = 4 * GiB
METADATA = 256 * MiB
CHUNKS = (64 * KiB, 512 * KiB)
WORKLOAD = {"base_mib": 256, "layers": 12, "layer_mib": 16, "writes": 4, "volume_gib": 10}
SETUP = """
set -e
vgremove -ff -y bench >/dev/null 2>&1 || true
pvremove -ff -y {disk} >/dev/null 2>&1 || true
wipefs -a -q {disk}
pvcreate -q {disk} && vgcreate -q bench {disk}
lvcreate -q -y --type thin-pool -n pool -L {data}b --chunksize {chunk}b --poolmetadatasize {metadata}b --zero n bench
"""


def checkpoints(devices: int, workload: dict[str, Any] = WORKLOAD) -> list[int]:
    """Where to measure: a few points on the way to ``devices`` (after the layers)."""
    first = 1 + workload["layers"]
    return sorted({point for point in (devices // 10, devices // 4, devices // 2, devices) if point > first})


def measure(
    vm: Any, disk: str, chunk: int, devices: int, workload: dict[str, Any] = WORKLOAD, data: int = POOL_DATA
) -> dict[str, Any]:
    """One fresh pool of ``data`` bytes with ``chunk`` on ``disk``, filled to ``devices`` thin devices."""
    vm.run(["bash", "-c", SETUP.format(disk=disk, data=data, chunk=chunk, metadata=METADATA)], timeout=600)
    spec = {
        **workload,
        "chunk": chunk,
        "data": data,
        "vg": "bench",
        "pool": "pool",
        "checkpoints": checkpoints(devices, workload),
    }
    out = vm.run_script(GUEST, json.dumps(spec), timeout=3600).stdout
    return {**json.loads(out.strip().splitlines()[-1]), "spec": spec}


def modelled(spec: dict[str, Any], devices: int, metadata_total: int) -> int:
    """thinpool's model for the pool after ``devices`` thin devices of this workload."""
    usage = sizing.PoolUsage(
        data_size=spec.get("data", POOL_DATA),
        chunk_size=spec["chunk"],
        base_bytes=spec["base_mib"] * MiB,
        layers=spec["layers"],
        layer_bytes=spec["layer_mib"] * MiB,
        containers=devices - 1 - spec["layers"],
        writes_per_container=spec["writes"],
        metadata_size=metadata_total,
    )
    return sizing.metadata_need(usage)


def rows(data: dict[str, Any]) -> list[dict[str, int]]:
    found = []
    for result in data["results"]:
        for phase in result["phases"]:
            measured = phase["metadata_used"] - reserve(phase["metadata_total"])
            model = modelled(result["spec"], phase["thin_devices"], phase["metadata_total"])
            found.append(
                {
                    "chunk": result["chunk"],
                    "devices": phase["thin_devices"],
                    "measured": measured,
                    "model": model,
                    "data_chunks": phase["data_used_chunks"],
                }
            )
    return found


def table(data: dict[str, Any]) -> str:
    header = ("chunk", "thin devices", "data mapped", "measured", "thinpool model", "model / measured")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows(data):
        mapped = row["data_chunks"] * row["chunk"] // MiB
        lines.append(
            f"| {row['chunk'] // KiB} KiB | {row['devices']:,} | {mapped:,} MiB | {row['measured'] // KiB:,} KiB "
            f"| {row['model'] // KiB:,} KiB | {row['model'] / row['measured']:.2f} |"
        )
    return "\n".join(lines)


def run_in_vm(devices: int) -> dict[str, Any]:
    from thinpool.app.context import system_context
    from thinpool.rehearse.kernel import obtain_debian_kernel
    from thinpool.rehearse.vm import VM, VMConfig

    kernel = obtain_debian_kernel(system_context().runner)
    results = []
    config = VMConfig(disk_sizes=(6 * GiB,), kernel=kernel, write_budget=6 * GiB, lifetime=7200)
    with VM(config) as vm:
        versions = vm.run(["bash", "-c", "uname -r; lvm version | head -3; thin_check -V"]).stdout
        for chunk in CHUNKS:
            started = time.monotonic()
            results.append(measure(vm, vm.devices[0], chunk, devices))
            print(f"chunk {chunk // KiB} KiB: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, qemu TCG guest",
        "versions": versions.strip(),
        "pool_data": POOL_DATA,
        "results": results,
    }


def main() -> int:
    def own_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--devices", type=int, default=sizing.DEFAULT_MAX_THIN_DEVICES)

    return recorded.main(__doc__, own_options, lambda args: run_in_vm(args.devices), table)


if __name__ == "__main__":
    sys.exit(main())
