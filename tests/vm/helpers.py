"""Reading lvm's JSON reports from the guest."""

from __future__ import annotations

import json
from typing import Any

from thinpool.core.lvm import commands, report
from thinpool.core.model import LogicalVolume
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


def thinpool_json(vm: VM, *args: str, timeout: int = 300) -> tuple[int, dict[str, Any], str]:
    done = vm.thinpool(*args, "--json", check=False, timeout=timeout)
    try:
        data = json.loads(done.stdout)
    except ValueError:
        data = {"unreadable": done.stdout}
    return done.returncode, data, done.stderr


def start_daemon(vm: VM, argv: tuple[str, ...], ready: list[str], log: str) -> None:
    vm.run(["bash", "-c", f"({' '.join(argv)} > {log} 2>&1 &)"])
    waited = vm.run(["bash", "-c", f"for i in $(seq 120); do {' '.join(ready)} >/dev/null 2>&1 && exit 0; "
                                   "sleep 0.5; done; exit 1"], check=False, timeout=120)  # fmt: skip
    assert waited.returncode == 0, vm.run(["tail", "-20", log]).stdout
