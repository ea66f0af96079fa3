"""What the table-printing benchmarks share: measure in the VM or read saved figures, save them, name the machine."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="save the raw measurements as JSON")
    parser.add_argument("--from-json", help="print the table from saved measurements (no VM)")


def measurements(args: argparse.Namespace, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The saved figures (--from-json) or new ones (saved with --out); the machine and versions printed first."""
    data: dict[str, Any] = json.loads(Path(args.from_json).read_text()) if args.from_json else measure()
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    print(f"machine: {data['machine']}\n\n```\n{data['versions']}\n```\n")
    return data


def main(
    description: str | None,
    add_own_options: Callable[[argparse.ArgumentParser], object],
    measure: Callable[[argparse.Namespace], dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
) -> int:
    """A table benchmark's command line: its own options, --out and --from-json, then the table."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_own_options(parser)
    add_options(parser)
    args = parser.parse_args()
    print(table(measurements(args, lambda: measure(args))))
    return 0
