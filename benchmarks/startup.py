"""Start-up and planning time of ``python -m thinpool plan --disk-size 744GiB`` against a bare ``python -c pass``.

    python3 -m benchmarks.startup [--runs 15]

Prints the medians and their ratio (imports are lazy so that it stays close to 1).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def median_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    bare = median_seconds([sys.executable, "-c", "pass"], runs)
    plan = median_seconds([sys.executable, "-m", "thinpool", "plan", "--disk-size", "744GiB"], runs)
    print(f"python -c pass:                           {bare * 1000:7.1f} ms (median of {runs})")
    print(f"python -m thinpool plan --disk-size 744GiB: {plan * 1000:7.1f} ms (median of {runs})")
    print(f"ratio: {plan / bare:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
