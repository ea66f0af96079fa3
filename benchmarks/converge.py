"""What converging and watching cost against lvm's own report, in one VM run.

    python3 -m benchmarks.converge [--runs 9]

In the guest, with a pool made by thinpool for docker-overlay2-thin (the host's dockerd on PATH):
the median of RUNS rounds (each runs every command once, in turn) of ``python -c pass``, ``lvs -a``
(one lvm report), a no-op ``thinpool apply`` (the same spec again), ``thinpool status`` and
``thinpool doctor``, and the programs each runs
(counted from ``-v``, which logs every command). Budgets (issue 18), as ratios to
(python start + one ``lvs -a``): no-op apply 2.0, status 1.3, doctor 1.6.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from thinpool.core.units import GiB
from thinpool.rehearse.vm import VM

THINPOOL = f"{sys.executable} -m thinpool"
SPEC = "--engine docker-overlay2-thin --volume-size 1GiB /dev/vda"
TIMED = "s=$(date +%s%N); {command} >/dev/null 2>&1; echo $(( ($(date +%s%N) - s) / 1000 ))"
BUDGETS = {"no-op apply": 2.0, "status": 1.3, "doctor": 1.6}
COMMANDS = {
    "no-op apply": f"{THINPOOL} apply --yes {SPEC}",
    "status": f"{THINPOOL} status",
    "doctor": f"{THINPOOL} doctor",
}


def medians_ms(vm: VM, commands: dict[str, str], runs: int) -> dict[str, float]:
    """Each command's median over ``runs`` rounds; a round runs every command once, so a slow spell of the
    emulator (the spread between runs is ±15 %) falls on all of them alike instead of on one."""
    micros: dict[str, list[int]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            micros[name].append(int(vm.run(["bash", "-c", TIMED.format(command=command)]).stdout))
    return {name: statistics.median(values) / 1000 for name, values in micros.items()}


def programs(vm: VM, command: str) -> list[str]:
    """The programs a thinpool command runs, in order, from its -v log."""
    verbose = command.replace(" -m thinpool ", " -m thinpool -v ", 1)
    log = vm.run(["bash", "-c", f"{verbose} 2>&1 >/dev/null"], check=False).stdout
    return [line.split("run: ", 1)[1].split()[0] for line in log.splitlines() if "runner: run: " in line]


def main() -> int:
    from thinpool.app.context import system_context
    from thinpool.rehearse.kernel import obtain_debian_kernel
    from thinpool.rehearse.vm import VMConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    runs = parser.parse_args().runs
    with VM(VMConfig(disk_sizes=(4 * GiB,), kernel=obtain_debian_kernel(system_context().runner))) as vm:
        vm.run(["bash", "-c", f"{THINPOOL} apply --yes {SPEC} >/dev/null"], timeout=600)
        vm.run(["bash", "-c", f"{THINPOOL} doctor >/dev/null 2>&1; true"])  # fills the version cache, the bytecode
        timed = medians_ms(vm, {"python": f"{sys.executable} -c pass", "lvs": "lvs -a", **COMMANDS}, runs)
        python, report = timed.pop("python"), timed.pop("lvs")
        ran = {name: programs(vm, command) for name, command in COMMANDS.items()}
    base = python + report
    print(f"python -c pass    {python:8.1f} ms")
    print(f"lvs -a            {report:8.1f} ms")
    for name, ms in timed.items():
        verdict = "within" if ms / base <= BUDGETS[name] else "OVER"
        print(
            f"{name:<17} {ms:8.1f} ms  {ms / base:.2f}x (python + lvs), budget {BUDGETS[name]}x: {verdict}; "
            f"{len(ran[name])} programs: {' '.join(ran[name])}"
        )
    print(f"(medians of {runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
