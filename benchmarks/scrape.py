"""What one metrics collection costs, against lvm's own report, in one VM run.

    python3 -m benchmarks.scrape [--runs 7]

In the guest, with Docker and containerd installed (the host's binaries) and a pool made by
thinpool: the median of RUNS of ``python -c pass``, ``lvs`` (the pool's report), ``thinpool
metrics --textfile`` and one HTTP scrape of ``thinpool metrics --listen`` (timed inside one
client process), and one write of the textfile writer that stays running (``--textfile
--every``, what thinpool-metrics.service runs; the collection time it writes into each file).
Targets: a textfile write within 1.3x (python start + one lvs), a scrape within 1.2x one lvs.
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

WRITES = (
    "import os, sys, time\n"
    "path, wanted, seen, took = sys.argv[1], int(sys.argv[2]) + 1, 0, []\n"
    "while len(took) < wanted:\n"
    " try: mtime = os.stat(path).st_mtime_ns\n"
    " except FileNotFoundError: mtime = seen\n"
    " if mtime != seen:\n"
    "  seen = mtime\n"
    "  took += [float(line.split()[1]) for line in open(path)\n"
    "           if line.startswith('thinpool_collection_duration_seconds ')]\n"
    " time.sleep(0.05)\n"
    "print(*[int(value * 1e6) for value in took[1:]])\n"  # the first write warms the process
)


def writer_ms(vm: VM, runs: int) -> float:
    """Median collection time of the running textfile writer, read from the files it writes."""
    argv = [sys.executable, "-m", "thinpool", "metrics", "--textfile", "/tmp/every.prom", "--every", "2s"]
    pid = vm.start_background(argv)
    try:
        micros = [int(word) for word in vm.python("-c", WRITES, "/tmp/every.prom", str(runs)).stdout.split()]
    finally:
        vm.run(["kill", str(pid)], check=False)
    return statistics.median(micros) / 1000


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
        every = writer_ms(vm, runs)
    print(f"python -c pass                     {python:8.1f} ms")
    print(f"lvs (the pool's status report)     {report:8.1f} ms")
    print(f"thinpool metrics --textfile        {textfile:8.1f} ms  {textfile / (python + report):.2f}x (python + lvs)")
    print(f"one scrape of metrics --listen     {scrape:8.1f} ms  {scrape / report:.2f}x lvs")
    print(
        f"one write of --textfile --every    {every:8.1f} ms  {every / (python + report):.2f}x (python + lvs), "
        f"{every / report:.2f}x lvs"
    )
    print(f"(medians of {runs}; targets: textfile write <= 1.3x (python + lvs), scrape <= 1.2x lvs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
