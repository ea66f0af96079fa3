"""Runs inside the rehearsal VM: one container-shaped workload on a fresh pool, metadata measured per phase.

Prints one JSON line per phase. Invoked by benchmarks/metadata.py; not a test.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

from thinpool.app.context import system_context

MiB = 1024 * 1024
runner = system_context().runner


def run(*argv: str) -> str:
    return runner.run(argv, timeout=600).stdout


def pool_usage(vg: str, pool: str) -> dict[str, int]:
    """dm-thin's own counters: metadata in 4 KiB blocks, data in chunks."""
    fields = run("dmsetup", "status", f"{vg}-{pool}-tpool").split()
    used_meta, total_meta = (int(n) for n in fields[4].split("/"))
    used_data, total_data = (int(n) for n in fields[5].split("/"))
    return {
        "metadata_used": used_meta * 4096,
        "metadata_total": total_meta * 4096,
        "data_used_chunks": used_data,
        "data_total_chunks": total_data,
    }


def write_sequential(device: str, offset_mib: int, size_mib: int) -> None:
    run(
        "dd",
        "if=/dev/urandom",
        f"of={device}",
        "bs=1M",
        f"seek={offset_mib}",
        f"count={size_mib}",
        "oflag=direct",
        "conv=notrunc",
        "status=none",
    )


def write_scattered(device: str, span: int, writes: int, seed: int) -> None:
    """``writes`` 4 KiB writes at random 4 KiB-aligned offsets in the first ``span`` bytes."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    block = os.urandom(4096)
    fd = os.open(device, os.O_WRONLY)
    try:
        for _ in range(writes):
            os.pwrite(fd, block, rng.randrange(span // 4096) * 4096)
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot(vg: str, origin: str, name: str) -> str:
    run("lvcreate", "-q", "-s", "-kn", "-ay", "-n", name, f"{vg}/{origin}")
    return f"/dev/{vg}/{name}"


def main() -> None:
    spec = json.loads(sys.argv[1])
    vg, pool = spec["vg"], spec["pool"]
    span = (spec["base_mib"] + spec["layers"] * spec["layer_mib"]) * MiB
    phases = []

    def measure(phase: str, devices: int) -> None:
        run("sync")
        phases.append({"phase": phase, "thin_devices": devices, **pool_usage(vg, pool), "time": time.time()})

    run("lvcreate", "-q", "-V", f"{spec['volume_gib']}g", "-T", f"{vg}/{pool}", "-n", "base")
    measure("empty volume", 1)
    write_sequential(f"/dev/{vg}/base", 0, spec["base_mib"])
    measure("base image", 1)
    top = "base"
    for index in range(1, spec["layers"] + 1):
        layer = f"layer{index}"
        device = snapshot(vg, top, layer)
        write_sequential(device, spec["base_mib"] + (index - 1) * spec["layer_mib"], spec["layer_mib"])
        top = layer
    measure(f"{spec['layers']} layers", 1 + spec["layers"])
    devices = 1 + spec["layers"]
    containers = []
    for index in range(1, spec["containers"] + 1):
        device = snapshot(vg, top, f"c{index}")
        write_scattered(device, span, spec["writes"], seed=index)
        containers.append(f"{vg}/c{index}")
    measure(f"{spec['containers']} containers", devices + len(containers))
    for round_ in range(1, spec["churn_rounds"] + 1):
        run("lvremove", "-q", "-y", *containers)
        containers = []
        for index in range(1, spec["containers"] + 1):
            name = f"r{round_}c{index}"
            write_scattered(snapshot(vg, top, name), span, spec["writes"], seed=1000 * round_ + index)
            containers.append(f"{vg}/{name}")
        measure(f"churn {round_}", devices + len(containers))
    print(json.dumps({"workload": spec["name"], "chunk": spec["chunk"], "phases": phases}))


if __name__ == "__main__":
    main()
