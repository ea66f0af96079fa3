"""The chunk-size trade-off, measured on real pools in the rehearsal VM: 64 KiB to 1 MiB.

    python3 -m benchmarks.chunks [--out docs/benchmarks/chunks.json] [--containers 12]
    python3 -m benchmarks.chunks --from-json docs/benchmarks/chunks.json   # table only

Per chunk size, on a fresh 4 GiB pool (benchmarks/guest_chunks.py): metadata per GiB written,
the write amplification of a snapshot's first 4 KiB writes (what devicemapper and containerd
containers do to their image), what fstrim gets back after a random half of an XFS volume's
files is deleted (overlay2 on a thin volume), and snapshot churn with dm messages; then Docker
20.10's own churn on devicemapper, on a pool thinpool made with that chunk. Prints figures; asserts
nothing. The planner's default chunk per engine cites this table (docs/benchmarks).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from benchmarks import churn as docker_churn
from benchmarks import recorded
from benchmarks.metadata_scale import SETUP as FRESH_POOL
from thinpool.core.units import GiB, KiB, MiB
from thinpool.rehearse.vm import SHARE_MOUNT

GUEST = Path(__file__).with_name("guest_chunks.py")
CHUNKS = (64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1024 * KiB)
SPEC = {"vg": "bench", "pool": "pool", "small_files": 4096, "large_files": 256, "churn_rounds": 40}
CLEAR = "vgremove -ff -y bench >/dev/null 2>&1; pvremove -ff -y {disk} >/dev/null 2>&1; wipefs -a -q {disk}; true"


def docker_rate(vm: Any, chunk: int, containers: int) -> float:
    """Docker devicemapper containers per minute on a pool thinpool made with ``chunk``."""
    apply = (
        f"{sys.executable} -m thinpool apply --yes --engine docker-devicemapper --chunk-size {chunk}b "
        "--storage-opt dm.override_udev_sync_check=true /dev/vda >/dev/null"
    )
    vm.run(["bash", "-c", docker_churn.RESET], check=False, timeout=300)
    vm.run(["bash", "-c", apply], timeout=600)
    vm.run(["bash", "-c", docker_churn.START.format(image=f"{SHARE_MOUNT}/tiny.tar")], timeout=600)
    millis = int(vm.run(["bash", "-c", docker_churn.CHURN.format(count=containers)], timeout=1800).stdout)
    vm.run(["bash", "-c", docker_churn.RESET], check=False, timeout=300)
    return containers * 60_000 / millis


def run_in_vm(containers: int) -> dict[str, Any]:
    from thinpool.app.context import system_context
    from thinpool.rehearse.images import rootfs_tar
    from thinpool.rehearse.kernel import obtain_debian_kernel
    from thinpool.rehearse.vm import VM, VMConfig

    config = VMConfig(
        disk_sizes=(8 * GiB,),
        kernel=obtain_debian_kernel(system_context().runner),
        write_budget=12 * GiB,
        lifetime=7200,
    )
    results = []
    with VM(config) as vm:
        (vm.share / "tiny.tar").write_bytes(rootfs_tar())
        versions = vm.run(["bash", "-c", "uname -r; lvm version | head -3; thin_check -V; dockerd --version"]).stdout
        disk = vm.devices[0]
        for chunk in CHUNKS:
            vm.run(
                ["bash", "-c", FRESH_POOL.format(disk=disk, data=5 * GiB, chunk=chunk, metadata=64 * MiB)], timeout=600
            )
            out = vm.run_script(GUEST, json.dumps({**SPEC, "chunk": chunk}), timeout=3600).stdout
            measured = json.loads(out.strip().splitlines()[-1])
            vm.run(["bash", "-c", CLEAR.format(disk=disk)], timeout=300)
            measured["docker_per_minute"] = docker_rate(vm, chunk, containers)
            print(f"chunk {chunk // KiB} KiB measured", file=sys.stderr, flush=True)
            results.append(measured)
    return {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, qemu TCG guest",
        "versions": versions.strip(),
        "containers": containers,
        "results": results,
    }


def figures(result: dict[str, Any]) -> dict[str, float]:
    """The table's row: each figure as its reader wants it."""
    small, large = result["reclaim_small"], result["reclaim_large"]
    return {
        "chunk": result["chunk"],
        "metadata_per_gib": result["metadata_per_gib"],
        "amplification": result["snapshot_mapped"] / (result["snapshot_writes"] * 4 * KiB),
        "first_writes_per_second": result["snapshot_writes_per_second"],
        "reclaim_small": small["reclaimed"] / small["deleted"],
        "reclaim_large": large["reclaimed"] / large["deleted"],
        "dm_churn": result["churn"]["per_minute"],
        "docker_churn": result["docker_per_minute"],
    }


def table(data: dict[str, Any]) -> str:
    header = (
        "chunk",
        "metadata per GiB written",
        "snapshot write amplification (4 KiB writes)",
        "snapshot first writes per s",
        "fstrim gets back: 64 KiB files",
        "1 MiB files",
        "dm snapshot churn per min",
        f"Docker containers per min ({data['containers']})",
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in data["results"]:
        row = figures(result)
        lines.append(
            f"| {row['chunk'] // KiB} KiB | {row['metadata_per_gib'] // KiB:,} KiB | {row['amplification']:.1f} × "
            f"| {row['first_writes_per_second']:.0f} | {row['reclaim_small']:.0%} | {row['reclaim_large']:.0%} "
            f"| {row['dm_churn']:.0f} | {row['docker_churn']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    def own_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--containers", type=int, default=12, help="Docker containers per chunk size")

    return recorded.main(__doc__, own_options, lambda args: run_in_vm(args.containers), table)


if __name__ == "__main__":
    sys.exit(main())
