"""Runs inside the rehearsal VM: a thousand thin devices on one pool, made with dm messages, metadata measured.

lvm makes the pool and the base image (thin device 1); every layer and container after it is made
the way Docker's devicemapper and containerd's devmapper make theirs: ``create_snap`` sent to the
pool, the device mapped with ``dmsetup create`` only while it is written, then removed. No
``set_transaction_id`` is sent, so lvm's view of the pool stays valid.

Prints one JSON line: the metadata in use at each checkpoint. Invoked by benchmarks/metadata_scale.py
and tests/vm/test_metadata_model.py; not a test.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import NamedTuple

from thinpool.app.context import system_context

MiB = 1024 * 1024
SECTOR = 512
FIRST_ID = 2  # lvm's base volume is thin device 1
DMSETUP = ("dmsetup", "--noudevsync", "--noudevrules", "--verifyudev")
runner = system_context().runner


class Scattered(NamedTuple):
    writes: int
    span: int
    seed: int


NONE = Scattered(0, 4096, 0)


def run(*argv: str) -> str:
    return runner.run(argv, timeout=600).stdout


def pool_usage(tpool: str) -> dict[str, int]:
    """dm-thin's own counters: metadata in 4 KiB blocks, data in chunks."""
    fields = run("dmsetup", "status", tpool).split()
    used_meta, total_meta = (int(n) for n in fields[4].split("/"))
    used_data, total_data = (int(n) for n in fields[5].split("/"))
    return {
        "metadata_used": used_meta * 4096,
        "metadata_total": total_meta * 4096,
        "data_used_chunks": used_data,
        "data_total_chunks": total_data,
    }


def snapshot(tpool: str, device_id: int, origin_id: int) -> None:
    run("dmsetup", "message", tpool, "0", f"create_snap {device_id} {origin_id}")


def write_through(tpool: str, device_id: int, size: int, write: tuple[int, int] | None, scattered: Scattered) -> None:
    """Map thin device ``device_id``, write to it (a sequential range and/or scattered 4 KiB blocks), unmap it."""
    name = f"bench-thin-{device_id}"
    run(*DMSETUP, "create", name, "--table", f"0 {size // SECTOR} thin /dev/mapper/{tpool} {device_id}")
    fd = os.open(f"/dev/mapper/{name}", os.O_WRONLY | os.O_DIRECT)
    try:
        if write is not None:
            _write_range(fd, *write)
        _write_scattered(fd, scattered)
        os.fsync(fd)
    finally:
        os.close(fd)
        run(*DMSETUP, "remove", name)


def _buffer(size: int) -> memoryview:
    import mmap

    area = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT needs
    area.write(os.urandom(size))
    return memoryview(area)


def _write_range(fd: int, offset: int, length: int) -> None:
    block = _buffer(MiB)
    for position in range(offset, offset + length, MiB):
        os.pwrite(fd, block, position)


def _write_scattered(fd: int, scattered: Scattered) -> None:
    """``writes`` 4 KiB writes at random 4 KiB-aligned offsets in the first ``span`` bytes."""
    rng = random.Random(scattered.seed)  # noqa: S311 - a reproducible workload, not a secret
    block = _buffer(4096)
    for _ in range(scattered.writes):
        os.pwrite(fd, block, rng.randrange(scattered.span // 4096) * 4096)


def main() -> None:
    spec = json.loads(sys.argv[1])
    vg, pool, tpool = spec["vg"], spec["pool"], f"{spec['vg']}-{spec['pool']}-tpool"
    base, layer = spec["base_mib"] * MiB, spec["layer_mib"] * MiB
    span = base + spec["layers"] * layer
    size = spec["volume_gib"] * 1024 * MiB
    checkpoints, phases = sorted(spec["checkpoints"]), []

    def measure(devices: int) -> None:
        run("sync")
        phases.append({"thin_devices": devices, **pool_usage(tpool), "time": time.time()})

    run("lvcreate", "-q", "-V", f"{spec['volume_gib']}g", "-T", f"{vg}/{pool}", "-n", "base")
    fd = os.open(f"/dev/{vg}/base", os.O_WRONLY | os.O_DIRECT)
    try:
        _write_range(fd, 0, base)
        os.fsync(fd)
    finally:
        os.close(fd)
    run("dmsetup", "suspend", f"{vg}-base")  # an active origin is suspended while it is snapshotted
    snapshot(tpool, FIRST_ID, 1)
    run("dmsetup", "resume", f"{vg}-base")
    top = FIRST_ID
    write_through(tpool, top, size, (base, layer), NONE)
    for index in range(1, spec["layers"]):
        snapshot(tpool, top + 1, top)
        top += 1
        write_through(tpool, top, size, (base + index * layer, layer), NONE)
    devices = 1 + spec["layers"]
    measure(devices)
    next_id = top + 1
    while devices < checkpoints[-1]:
        snapshot(tpool, next_id, top)
        write_through(tpool, next_id, size, None, Scattered(spec["writes"], span, next_id))
        next_id, devices = next_id + 1, devices + 1
        if devices in checkpoints:
            measure(devices)
            print(f"{devices} devices", file=sys.stderr, flush=True)
    print(json.dumps({"chunk": spec["chunk"], "phases": phases}))


if __name__ == "__main__":
    main()
