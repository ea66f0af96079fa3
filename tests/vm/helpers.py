"""Reading lvm's JSON reports from the guest."""

from __future__ import annotations

import json
import time
from typing import Any

from thinpool.core.lvm import commands, report
from thinpool.core.model import LogicalVolume
from thinpool.core.plan import Plan
from thinpool.rehearse.vm import VM

# No udev in the guest: dockerd must be told not to wait for it (containerd reads DM_DISABLE_UDEV).
NO_UDEV = ("--storage-opt", "dm.override_udev_sync_check=true")
DOCKERD = ("dockerd", "--iptables=false", "--bridge=none", "--ip-masq=false")


def lvs(vm: VM, vg: str) -> dict[str, LogicalVolume]:
    found = report.parse_lvs(vm.run(list(commands.lvs_report(vg))).stdout)
    return {lv.bare_name: lv for lv in found}


def vg_row(vm: VM, vg: str) -> dict[str, Any]:
    rows = report.parse_vgs(vm.run(list(commands.vgs_report(vg))).stdout)
    assert len(rows) == 1
    return rows[0]


def fill_until_grown(vm: VM, size: int, megabytes: int, timeout: float) -> int:
    """``megabytes`` written into a new thin volume of docker/thinpool (whose data is ``size`` bytes): the pool's
    data size once dmeventd has grown it past ``size``, or as it is when ``timeout`` seconds have passed."""
    vm.run(["lvcreate", "-q", "-V", "256m", "-T", "docker/thinpool", "-n", "fill"])
    vm.run(["dd", "if=/dev/urandom", "of=/dev/docker/fill", "bs=1M", f"count={megabytes}", "oflag=direct",
            "status=none"])  # fmt: skip
    deadline, grown = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        grown = lvs(vm, "docker")["thinpool"].size
        if grown > size:
            break
        time.sleep(2)
    return grown


def thinpool_json(vm: VM, *args: str, timeout: int = 300) -> tuple[int, dict[str, Any], str]:
    done = vm.thinpool(*args, "--json", check=False, timeout=timeout)
    try:
        data = json.loads(done.stdout)
    except ValueError:
        data = {"unreadable": done.stdout}
    return done.returncode, data, done.stderr


def start_daemon(vm: VM, argv: tuple[str, ...], ready: list[str], log: str) -> None:
    vm.run(["bash", "-c", f"({' '.join(argv)} > {log} 2>&1 &)"])
    waited = vm.run(
        ["bash", "-c", f"for i in $(seq 120); do {' '.join(ready)} >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1"],
        check=False,
        timeout=120,
    )
    assert waited.returncode == 0, vm.run(["tail", "-20", log]).stdout


# (a zombie dockerd does not count: the guest's agent reaps only between requests)
STOP_DOCKER = """pkill -x dockerd
for i in $(seq 120); do ps -eo stat=,comm= | awk '$1 !~ /^Z/ && $2 == "dockerd"' | grep -q . || exit 0; sleep 0.5; done
exit 1"""


def stop_docker(vm: VM) -> None:
    vm.run(["bash", "-c", STOP_DOCKER], timeout=120)


def pool_with_files(vm: VM, megabytes: int) -> str:
    """A fresh docker/thinpool with an ext4 thin volume docker/vol mounted on /mnt/vol holding three
    random files of ``megabytes`` each; returns their sha256sum lines."""
    code, result, err = thinpool_json(vm, "apply", "--yes", "/dev/vda")
    assert code == 0, err or result
    vm.run(["lvcreate", "-q", "-V", "1g", "-T", "docker/thinpool", "-n", "vol"])
    vm.run(["mkfs.ext4", "-q", "/dev/docker/vol"])
    vm.run(["mount", "--mkdir", "/dev/docker/vol", "/mnt/vol"])
    vm.run(["bash", "-c", f"for n in 1 2 3; do head -c {megabytes}M /dev/urandom > /mnt/vol/file$n; done; sync"])
    return vm.run(["bash", "-c", "cd /mnt/vol && sha256sum file1 file2 file3"]).stdout


def damage_metadata(vm: VM, dd_args: str, pool: str = "docker/thinpool") -> None:
    """Zero part of ``pool``'s metadata (``dd_args`` say where) the way it happens to a pool: deactivated,
    its metadata swapped out with ``lvconvert --thinpool --poolmetadata``, written over, swapped back."""
    vg = pool.split("/")[0]
    swap = ["lvconvert", "-q", "-y", "--thinpool", pool, "--poolmetadata", f"{vg}/other"]
    vm.run(["vgchange", "-q", "-an", vg])
    size = vm.run(["lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_metadata_size", pool])
    vm.run(["lvcreate", "-q", "-y", "-an", "-Zn", "-L", f"{size.stdout.strip()}b", "-n", "other", vg])
    vm.run(swap)
    vm.run(["lvchange", "-q", "-ay", f"{vg}/other"])
    vm.run(["bash", "-c", f"dd if=/dev/zero of=/dev/{vg}/other {dd_args} oflag=direct status=none"])
    vm.run(["lvchange", "-q", "-an", f"{vg}/other"])
    vm.run(swap)
    vm.run(["lvremove", "-q", "-y", f"{vg}/other"])  # now holds the scratch LV's old bytes only


# thinpool run in its own process group with one program wrapped so that it marks its start
# (polling pgrep missed short commands on a loaded machine), then the whole group killed.
KILL_AT_COMMAND = r"""
command=$1 delay=$2; shift 2
wrappers=/tmp/step-wrappers
rm -rf "$wrappers"; mkdir -p "$wrappers"
printf '#!/bin/sh\ntouch %s/started\nexec %s "$@"\n' "$wrappers" "$(command -v "$command")" > "$wrappers/$command"
chmod +x "$wrappers/$command"
PATH="$wrappers:$PATH" setsid "$@" > /tmp/interrupted.log 2>&1 &
leader=$!
while kill -0 "$leader" 2>/dev/null && [ ! -e "$wrappers/started" ]; do sleep 0.01; done
sleep "$delay"
kill -9 -- "-$leader"
wait "$leader"
echo "exit $?"
"""


def kill_at_command(vm: VM, command: str, delay: float, *args: str) -> None:
    """``thinpool ARGS`` SIGKILLed (with what it runs) ``delay`` seconds after it starts ``command``."""
    killed = vm.run(
        ["bash", "-c", KILL_AT_COMMAND, "kill-at", command, str(delay), *vm.thinpool_argv, *args], timeout=300
    )
    assert killed.stdout.strip() == "exit 137", vm.run(["cat", "/tmp/interrupted.log"]).stdout  # died by SIGKILL


def assert_pool_matches(vm: VM, plan: Plan) -> None:
    layout = plan.layout
    assert layout is not None
    extent = layout.extent_size
    found = lvs(vm, plan.vg)
    pool = found[plan.pool]
    assert pool.size == layout.data_extents * extent
    assert pool.metadata_size == layout.metadata_extents * extent
    assert pool.chunk_size == layout.chunk_size
    assert pool.seg_monitor == "monitored"
    assert pool.profile == f"thinpool-{plan.vg}-{plan.pool}"
    assert found["lvol0_pmspare"].size == layout.metadata_extents * extent
    assert vg_row(vm, plan.vg)["free_count"] == layout.headroom_extents + layout.left_extents
