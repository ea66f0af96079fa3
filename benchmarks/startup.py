"""Start-up of thinpool's commands on this host: wall time against a bare ``python -c pass``, and what
``-X importtime`` says the imports cost.

    python3 -m benchmarks.startup [--runs 15]

Run it on real hardware, never under emulation (which inflates import costs many times over). The
commands are run interleaved so that a busy moment of the host weighs on all of them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "plan --disk-size 744GiB": ["plan", "--disk-size", "744GiB"],
    "status --help": ["status", "--help"],
    "--help": ["--help"],
}


def wall_seconds(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def import_profile(words: list[str]) -> tuple[int, int, int]:
    """(microseconds of every import, of thinpool's own modules, number of modules imported) for one run."""
    found = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "thinpool", *words],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    total = ours = count = 0
    for line in found.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        own, name = int(parts[0]), parts[2].strip()
        total, count = total + own, count + 1
        ours += own if name.startswith("thinpool") else 0
    return total, ours, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    walls: dict[str, list[float]] = {name: [] for name in ("python -c pass", *COMMANDS)}
    imports: dict[str, list[tuple[int, int, int]]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        walls["python -c pass"].append(wall_seconds([sys.executable, "-c", "pass"]))
        for name, words in COMMANDS.items():
            walls[name].append(wall_seconds([sys.executable, "-m", "thinpool", *words]))
            imports[name].append(import_profile(words))
    bare = statistics.median(walls["python -c pass"])
    print(f"medians of {runs} interleaved runs ({sys.executable}, Python {sys.version.split()[0]})")
    print(f"{'command':<28} {'wall ms':>8} {'ratio':>6} {'imports ms':>11} {'thinpool ms':>12} {'modules':>8}")
    print(f"{'python -c pass':<28} {bare * 1000:8.1f} {1:6.2f}")
    for name in COMMANDS:
        wall = statistics.median(walls[name])
        total, ours, count = (statistics.median(values) for values in zip(*imports[name], strict=True))
        print(f"{name:<28} {wall * 1000:8.1f} {wall / bare:6.2f} {total / 1000:11.1f} {ours / 1000:12.1f} {count:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
