"""Reading lvm's JSON reports from the guest."""

from __future__ import annotations

import json
from typing import Any

from thinpool.core.lvm import commands, report
from thinpool.core.model import LogicalVolume
from thinpool.rehearse.vm import VM


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
