"""Value types argparse checks before any command runs (a bad value ends in usage and the reason)."""

from __future__ import annotations

import argparse
import math


def _finite_seconds(text: str, least: float, rule: str) -> float:
    """``text`` as finite seconds of at least ``least``; else argparse's error, ending with ``rule``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < least:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds{rule}")
    return value


def seconds(text: str) -> float:
    """A wait or refresh interval: finite seconds, at least 0.1 (``nan``, ``inf`` and ``-1`` are refused)."""
    return _finite_seconds(text, 0.1, " of at least 0.1")


def wait_seconds(text: str) -> float:
    """How long to wait: finite seconds, 0 or more (0: do not wait)."""
    return _finite_seconds(text, 0.0, ", 0 or more")


def changes_the_host(parser: argparse.ArgumentParser, command: str, default_wait: float) -> None:
    """Mark ``parser``'s command as one that changes the system: main holds the host's change lock around
    it (thinpool.core.changes), waiting up to --lock-wait seconds for another thinpool command to finish."""
    parser.add_argument(
        "--lock-wait",
        type=wait_seconds,
        default=default_wait,
        metavar="SECONDS",
        help=f"one thinpool command changes this host at a time: wait this long for another to finish, then give "
        f"up naming it (default: {default_wait:g}; 0: do not wait)",
    )
    parser.set_defaults(changes=command)
