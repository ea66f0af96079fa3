"""What one metrics collection costs, against lvm's own report, in one VM run.

    python3 -m benchmarks.scrape [--runs 7]

In the guest, with Docker and containerd installed (the host's binaries) and a pool made by
thinpool: the median of RUNS of ``python -c pass``, ``lvs`` (the pool's report), ``thinpool
metrics --textfile`` and one HTTP scrape of ``thinpool metrics --listen`` (timed inside one
client process). Targets: a textfile run within 1.3x (python start + one lvs), a scrape
within 1.2x one lvs.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from thinpool.core.lvm import commands
from thinpool.core.units import GiB
from thinpool.rehearse.vm import VM

THINPOOL = f"{sys.executable} -m thinpool"
TIMED = "s=$(date +%s%N); {command} >/dev/null; echo $(( ($(date +%s%N) - s) / 1000 ))"
SCRAPES = (
    "import sys, time, urllib.request\n"
    "url = 'http://127.0.0.1:9720/metrics'\n"
    "for _ in range(100):\n"
    " try: urllib.request.urlopen(url).read(); break\n"
    " except OSError: time.sleep(0.2)\n"
    "for _ in range(int(sys.argv[1])):\n"
    " s = time.perf_counter(); urllib.request.urlopen(url).read()\n"
    " print(int((time.perf_counter() - s) * 1e6))\n"
)


def median_ms(vm: VM, command: str, runs: int) -> float:
    micros = [int(vm.run(["bash", "-c", TIMED.format(command=command)]).stdout) for _ in range(runs)]
    return statistics.median(micros) / 1000


def main() -> int:
    from thinpool.app.context import system_context
    from thinpool.rehearse.kernel import obtain_debian_kernel
    from thinpool.rehearse.vm import VMConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    lvs = " ".join(commands.status_report("docker"))
    with VM(VMConfig(disk_sizes=(4 * GiB,), kernel=obtain_debian_kernel(system_context().runner))) as vm:
        vm.run(["bash", "-c", f"{THINPOOL} apply --yes /dev/vda >/dev/null"], timeout=600)
        vm.run(["bash", "-c", f"{THINPOOL} metrics --textfile /tmp/warm.prom"])  # fills the version cache
        python = median_ms(vm, f"{sys.executable} -c pass", runs)
        report = median_ms(vm, lvs, runs)
        textfile = median_ms(vm, f"{THINPOOL} metrics --textfile /tmp/thinpool.prom", runs)
        pid = vm.start_background([sys.executable, "-m", "thinpool", "metrics", "--listen", "127.0.0.1:9720"])
        try:
            micros = [int(line) for line in vm.python("-c", SCRAPES, str(runs)).stdout.split()]
        finally:
            vm.run(["kill", str(pid)], check=False)
        scrape = statistics.median(micros) / 1000
    print(f"python -c pass                     {python:8.1f} ms")
    print(f"lvs (the pool's status report)     {report:8.1f} ms")
    print(f"thinpool metrics --textfile        {textfile:8.1f} ms  {textfile / (python + report):.2f}x (python + lvs)")
    print(f"one scrape of metrics --listen     {scrape:8.1f} ms  {scrape / report:.2f}x lvs")
    print(f"(medians of {runs}; targets: textfile <= 1.3x, scrape <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
