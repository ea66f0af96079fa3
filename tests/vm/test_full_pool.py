"""A pool that fills and cannot grow, under each real engine: the writer fails fast, the rest survives.

The pool is small (512 MiB) and its VG is full, so autoextend cannot help; thinpool maintain
switches it to error-when-full. A writer then fills it: it must get its error within 20 s of the
pool being full (dm-thin's default queue would hold it 60 s, then fail it anyway), another
container's synced data must read back intact, and the engine must keep running. After
thinpool grow (a new disk), new containers run and doctor is clean.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal

import pytest

from thinpool.core.units import MiB
from thinpool.rehearse.vm import VM

from .helpers import DOCKERD, NO_UDEV, lvs, start_daemon, thinpool_json, vg_row

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

POOL = "vg2/small"
KEEP = "dd if=/dev/urandom of=/data bs=1M count=16 2>/dev/null && sync && sha256sum /data > /sum && sleep 100000"
FILL = "dd if=/dev/zero of=/big bs=1M count=1024 conv=fsync"  # twice the pool: fsync reports the failure
# Run the writer in the background and poll the pool; print "EXIT FULL_AT END" (times in seconds).
TIMED_FILL = r"""
rm -f /tmp/writer.*
( sh -c "$1" > /tmp/writer.log 2>&1; echo $? > /tmp/writer.rc; date +%s.%N > /tmp/writer.end ) &
full=none
while [ ! -e /tmp/writer.end ]; do
  used=$(lvs --noheadings -o data_percent "$2" | tr -d ' ')
  if [ "$full" = none ] && awk -v p="$used" 'BEGIN { exit !(p >= 99.5) }'; then full=$(date +%s.%N); fi
  sleep 0.5
done
wait
echo "$(cat /tmp/writer.rc) $full $(cat /tmp/writer.end)"
"""


@dataclass(frozen=True)
class Engine:
    name: str
    apply_args: tuple[str, ...]
    daemon: tuple[str, ...]
    ready: tuple[str, ...]
    load: tuple[str, ...]  # the image file is appended
    run: str  # NAME and CMD are filled in
    detach: str
    exec: str
    remove: str

    def command(self, template: str, name: str, cmd: str = "") -> str:
        return template.format(name=name, cmd=cmd.replace("'", "'\\''"))


DOCKER_COMMANDS = {
    "ready": ("docker", "version"),
    "load": ("docker", "import"),
    "run": "docker run --network none --name {name} tiny:1 sh -c '{cmd}'",
    "detach": "docker run -d --network none --name {name} tiny:1 sh -c '{cmd}'",
    "exec": "docker exec {name} sh -c '{cmd}'",
    "remove": "docker rm -f {name}",
}
CTR = "ctr run --snapshotter devmapper"
ENGINES = {
    "docker-devicemapper": Engine(
        "docker-devicemapper", ("--engine", "docker-devicemapper", *NO_UDEV), DOCKERD, **DOCKER_COMMANDS  # type: ignore[arg-type]
    ),
    "docker-overlay2-thin": Engine(
        "docker-overlay2-thin", ("--engine", "docker-overlay2-thin", "--volume-size", "2GiB"), DOCKERD,
        **DOCKER_COMMANDS,  # type: ignore[arg-type]
    ),
    "containerd-devmapper": Engine(
        "containerd-devmapper",
        ("--engine", "containerd-devmapper"),
        ("containerd",),
        ("ctr", "version"),
        ("ctr", "images", "import", "--snapshotter", "devmapper"),
        CTR + " docker.io/library/tiny:1 {name} sh -c '{cmd}'",
        CTR + " -d docker.io/library/tiny:1 {name} sh -c '{cmd}'",
        "ctr task exec --exec-id probe {name} sh -c '{cmd}'",
        "ctr task kill -s KILL {name}; sleep 1; ctr task rm -f {name}; ctr containers rm {name}",
    ),
}  # fmt: skip


def _sh(vm: VM, command: str, timeout: int = 300, check: bool = True) -> str:
    return vm.run(["bash", "-c", command], timeout=timeout, check=check).stdout


def _data_used(vm: VM) -> int:
    pool = lvs(vm, "vg2")["small"]
    return int(pool.size * Decimal(pool.data_percent) / 100)


def _maintain(vm: VM) -> list[list[str]]:
    code, result, err = thinpool_json(vm, "maintain", POOL)
    assert code == 0 and result["ok"], err or result
    return [step["argv"] for step in result["pools"][0]["steps"]]


@pytest.mark.parametrize(
    "engine_name",
    [
        # Debian 12's dm-thin when full runs in CI in test_maintain; under Docker 20.10's devicemapper, in the full matrix
        pytest.param(name, marks=[pytest.mark.releases("debian-12"), pytest.mark.sweep])
        if name == "docker-devicemapper"
        else pytest.param(name, marks=pytest.mark.sweep)  # dm-thin's full pool, as above, through containerd
        if name == "containerd-devmapper"
        else name
        for name in sorted(ENGINES)
    ],
)
def test_a_full_pool_fails_its_writer_fast_and_the_host_recovers_after_grow(
    vm: VM, images: dict[str, str], engine_name: str
) -> None:
    engine = ENGINES[engine_name]
    code, result, err = thinpool_json(
        vm, "apply", "--yes", "--vg", "vg2", "--pool", "small", "--data-size", "512m", *engine.apply_args, "/dev/vdc"
    )
    assert code == 0, err or result
    start_daemon(vm, engine.daemon, list(engine.ready), f"/tmp/{engine.name}.log")
    image = images["oci"] if engine.name.startswith("containerd") else images["rootfs"]
    vm.run([*engine.load, image, *(("tiny:1",) if engine.load[0] == "docker" else ())], timeout=300)
    try:
        _fill_and_recover(vm, engine)
    finally:  # the keeper's process would outlive its engine and hold the pool
        _sh(vm, engine.command(engine.remove, "keeper"), check=False)


def _fill_and_recover(vm: VM, engine: Engine) -> None:
    _sh(vm, engine.command(engine.detach, "keeper", KEEP))
    checksum = _sh(
        vm,
        f"for i in $(seq 120); do {engine.command(engine.exec, 'keeper', 'test -s /sum && cat /sum')} && exit 0; "
        "sleep 0.5; done; exit 1",
    )
    # The VG loses its room: the pool cannot grow, and maintain makes it fail writes at once.
    free = vg_row(vm, "vg2")["free_count"]
    vm.run(["lvcreate", "-q", "-y", "-Zn", "-an", "-l", str(free), "-n", "filler", "vg2"])
    assert _maintain(vm) == [["lvchange", "--errorwhenfull", "y", POOL]]

    before_fill = _data_used(vm)
    writer = engine.command(engine.run, "writer", FILL)
    exit_code, full_at, ended = vm.run(["bash", "-c", TIMED_FILL, "fill", writer, POOL], timeout=600).stdout.split()
    print(f"{engine.name}: writer exit {exit_code}, pool full at {full_at}, writer ended {ended}")
    print(_sh(vm, "tail -3 /tmp/writer.log"))
    assert exit_code != "0"  # the writer was told
    if full_at != "none":
        assert float(ended) - float(full_at) < 20  # within 20 s of the pool being full, not after 60 s
    _sh(vm, "sync; echo 3 > /proc/sys/vm/drop_caches")
    assert _sh(vm, engine.command(engine.exec, "keeper", "sha256sum /data")) == checksum  # read from the disk again
    vm.run(list(engine.ready))  # the engine keeps running

    _sh(vm, engine.command(engine.remove, "writer"), check=False)
    code, result, err = thinpool_json(vm, "grow", "--yes", "--vg", "vg2", "--pool", "small", "/dev/vde")
    assert code == 0, err or result
    assert _maintain(vm)[-1:] == [["lvchange", "--errorwhenfull", "n", POOL]]  # it can grow again: queue
    assert _sh(vm, engine.command(engine.run, "after", "echo alive")).strip() == "alive"  # new containers run
    _maintain(vm)  # trims what the writer left, where a filesystem of thinpool's holds it
    # The writer's space came back: devicemapper and devmapper discard a removed device
    # (dm.blkdiscard, discard_blocks; Docker's deferred deletion may take a moment), overlay2-thin
    # was trimmed by maintain. What is left is what was there before it, and the new container.
    deadline = time.monotonic() + 30
    while _data_used(vm) > before_fill + 64 * MiB and time.monotonic() < deadline:
        time.sleep(1)
    assert _data_used(vm) <= before_fill + 64 * MiB, (before_fill, _data_used(vm))
    report = json.loads(vm.thinpool("doctor", POOL, "--json", check=False).stdout)
    assert report["findings"] == [], report["findings"]
