"""Runs inside the rehearsal VM: what one chunk size costs and gives back, on a fresh pool made by the caller.

Four measurements, each from dm-thin's own counters (``dmsetup status`` of the pool):
- metadata per GiB: a thin volume written sequentially, 1 GiB;
- write amplification: 4 KiB writes at random places of a snapshot of that volume (how an image
  layer's first writes by a container look to the pool): bytes the pool maps per byte written;
- reclaim: XFS on a thin volume, files written, a random half deleted, ``fstrim``: bytes the pool
  gets back per byte deleted, for small (64 KiB) and large (1 MiB) files;
- churn: thin snapshots made, written (4 MiB and 64 scattered 4 KiB writes), unmapped and deleted
  with dm messages, as the devicemapper engines do for each container: per minute.

Prints one JSON line. Invoked by benchmarks/chunks.py; not a test.
"""

from __future__ import annotations

import json
import mmap
import os
import random
import sys
import time
from pathlib import Path

from thinpool.app.context import system_context

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
DMSETUP = ("dmsetup", "--noudevsync", "--noudevrules", "--verifyudev")
MOUNT = Path("/mnt/chunk-bench")
runner = system_context().runner


def run(*argv: str) -> str:
    return runner.run(argv, timeout=900).stdout


def usage(tpool: str) -> tuple[int, int]:
    """(metadata bytes used, data chunks mapped) as dm-thin counts them."""
    run("sync")
    fields = run("dmsetup", "status", tpool).split()
    return int(fields[4].split("/")[0]) * 4096, int(fields[5].split("/")[0])


def buffer(size: int) -> memoryview:
    area = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT needs
    area.write(os.urandom(size))
    return memoryview(area)


def write(device: str, ranges: list[tuple[int, int]], block: memoryview) -> None:
    """Write ``block`` at each (offset, count of blocks) with O_DIRECT, then fsync."""
    fd = os.open(device, os.O_WRONLY | os.O_DIRECT)
    try:
        for offset, count in ranges:
            for index in range(count):
                os.pwrite(fd, block, offset + index * len(block))
        os.fsync(fd)
    finally:
        os.close(fd)


def scattered(span: int, writes: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    return [(rng.randrange(span // (4 * KiB)) * 4 * KiB, 1) for _ in range(writes)]


def sequential_and_snapshot(vg: str, pool: str, tpool: str, chunk: int) -> dict[str, float]:
    run("lvcreate", "-q", "-V", "4g", "-T", f"{vg}/{pool}", "-n", "image")
    meta0, data0 = usage(tpool)
    write(f"/dev/{vg}/image", [(0, 1024)], buffer(MiB))
    meta1, data1 = usage(tpool)
    run("lvcreate", "-q", "-s", "-kn", "-ay", "-n", "container", f"{vg}/image")
    writes = 1024
    started = time.monotonic()
    write(f"/dev/{vg}/container", scattered(GiB, writes, seed=1), buffer(4 * KiB))
    seconds = time.monotonic() - started
    _, data2 = usage(tpool)
    run("lvremove", "-q", "-y", f"{vg}/container", f"{vg}/image")
    return {
        "metadata_per_gib": meta1 - meta0,
        "sequential_chunks": data1 - data0,
        "snapshot_writes": writes,
        "snapshot_mapped": (data2 - data1) * chunk,
        "snapshot_writes_per_second": writes / seconds,
    }


def reclaim(vg: str, pool: str, tpool: str, chunk: int, file_size: int, files: int) -> dict[str, float]:
    """Bytes the pool gets back per byte deleted: XFS, a random half of ``files`` files deleted, fstrim."""
    run("lvcreate", "-q", "-V", "4g", "-T", f"{vg}/{pool}", "-n", "fs")
    run("mkfs.xfs", "-q", "-f", f"/dev/{vg}/fs")
    MOUNT.mkdir(parents=True, exist_ok=True)
    run("mount", "-o", "noatime", f"/dev/{vg}/fs", str(MOUNT))
    try:
        content = os.urandom(file_size)
        for index in range(files):
            (MOUNT / f"f{index}").write_bytes(content)
        _, before = usage(tpool)
        rng = random.Random(7)  # noqa: S311 - a reproducible workload, not a secret
        deleted = rng.sample(range(files), files // 2)
        for index in deleted:
            (MOUNT / f"f{index}").unlink()
        run("fstrim", str(MOUNT))
        _, after = usage(tpool)
    finally:
        run("umount", str(MOUNT))
        run("lvremove", "-q", "-y", f"{vg}/fs")
    return {"deleted": len(deleted) * file_size, "reclaimed": (before - after) * chunk}


def churn(vg: str, pool: str, tpool: str, rounds: int) -> dict[str, float]:
    """Per minute: snapshot of a written image made, mapped, written, unmapped and deleted with dm messages."""
    run("lvcreate", "-q", "-V", "4g", "-T", f"{vg}/{pool}", "-n", "image")
    write(f"/dev/{vg}/image", [(0, 256)], buffer(MiB))
    run("lvchange", "-q", "-an", f"{vg}/image")  # an inactive origin needs no suspend for create_snap
    origin = int(
        json.loads(run("lvs", "--reportformat", "json", "-o", "thin_id", f"{vg}/image"))["report"][0]["lv"][0][
            "thin_id"
        ]
    )
    big, small = buffer(MiB), buffer(4 * KiB)
    started = time.monotonic()
    for index in range(rounds):
        device_id = 1000 + index
        name = f"bench-churn-{device_id}"
        run("dmsetup", "message", tpool, "0", f"create_snap {device_id} {origin}")
        run(*DMSETUP, "create", name, "--table", f"0 {4 * GiB // 512} thin /dev/mapper/{tpool} {device_id}")
        write(f"/dev/mapper/{name}", [(128 * MiB, 4)], big)
        write(f"/dev/mapper/{name}", scattered(256 * MiB, 64, seed=index), small)
        run(*DMSETUP, "remove", name)
        run("dmsetup", "message", tpool, "0", f"delete {device_id}")
    seconds = time.monotonic() - started
    run("lvremove", "-q", "-y", f"{vg}/image")
    return {"rounds": rounds, "per_minute": rounds * 60 / seconds}


def main() -> None:
    spec = json.loads(sys.argv[1])
    vg, pool, chunk = spec["vg"], spec["pool"], spec["chunk"]
    tpool = f"{vg}-{pool}-tpool"
    run("lvcreate", "-q", "-V", "1g", "-T", f"{vg}/{pool}", "-n", "keep")  # keeps the -tpool mapping up
    result = {"chunk": chunk, **sequential_and_snapshot(vg, pool, tpool, chunk)}
    result["reclaim_small"] = reclaim(vg, pool, tpool, chunk, 64 * KiB, spec["small_files"])
    result["reclaim_large"] = reclaim(vg, pool, tpool, chunk, MiB, spec["large_files"])
    result["churn"] = churn(vg, pool, tpool, spec["churn_rounds"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
