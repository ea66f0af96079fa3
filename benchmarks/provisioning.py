"""Provisioning overhead: ``thinpool apply`` against the same lvm commands run raw, in one VM run.

    python3 -m benchmarks.provisioning [--runs 3]

thinpool reads the devices and lvm's reports before planning and verifies every step from a
fresh report; the raw run is just the plan's own commands in a shell. Prints medians and the ratio
(issue 18's budget: 1.5), and the ratio once the interpreter's own start (``python -c pass``,
measured in the same run) is taken off apply: under TCG that start alone exceeds the budget's room.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys

from thinpool.core import planner
from thinpool.core.model import virtual_disks
from thinpool.core.spec import PoolSpec
from thinpool.core.units import GiB

RESET = (
    "vgremove -ff -y docker >/dev/null 2>&1; pvremove -ff -y /dev/vda >/dev/null 2>&1; wipefs -a -q /dev/vda; "
    "rm -f /etc/lvm/profile/thinpool-*.profile"
)
TIMED = "start=$(date +%s%N); {body}; end=$(date +%s%N); echo $(( (end - start) / 1000000 ))"


def raw_script() -> str:
    """The plan's commands and profile write, as an operator would paste them."""
    plan = planner.plan(PoolSpec(devices=("/dev/vda",)), virtual_disks([4 * GiB], ["/dev/vda"]))
    lines = []
    for action in plan.actions:
        if action.op == "write":
            lines.append(f"mkdir -p /etc/lvm/profile && printf %s {shlex.quote(action.content)} > {action.path}")
        else:
            lines.append(shlex.join(action.argv) + " >/dev/null")
    return " && ".join(lines)


def main() -> int:
    from thinpool.app.context import system_context
    from thinpool.rehearse.kernel import obtain_debian_kernel
    from thinpool.rehearse.vm import VM, VMConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    apply = f"{shlex.quote(sys.executable)} -m thinpool apply --yes /dev/vda >/dev/null"
    timings: dict[str, list[int]] = {"thinpool apply": [], "raw lvm commands": [], "python -c pass": []}
    with VM(VMConfig(disk_sizes=(4 * GiB,), kernel=obtain_debian_kernel(system_context().runner))) as vm:
        for _ in range(runs):
            for name, body in (("thinpool apply", apply), ("raw lvm commands", raw_script())):
                vm.run(["bash", "-c", RESET], check=False)
                timings[name].append(int(vm.run(["bash", "-c", TIMED.format(body=body)], timeout=600).stdout))
            python = f"{shlex.quote(sys.executable)} -c pass"
            timings["python -c pass"].append(int(vm.run(["bash", "-c", TIMED.format(body=python)]).stdout))
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name, values in timings.items():
        print(f"{name:<18} median {medians[name]:6.0f} ms  (runs: {', '.join(map(str, values))} ms)")
    apply_ms, raw_ms = medians["thinpool apply"], medians["raw lvm commands"]
    print(f"ratio: {apply_ms / raw_ms:.2f} (budget 1.5)")
    print(f"ratio without the interpreter's start: {(apply_ms - medians['python -c pass']) / raw_ms:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
