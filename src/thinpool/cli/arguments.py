"""Value types argparse checks before any command runs (a bad value ends in usage and the reason)."""

from __future__ import annotations

import argparse
import math


def seconds(text: str) -> float:
    """A wait or refresh interval: finite seconds, at least 0.1 (``nan``, ``inf`` and ``-1`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0.1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds of at least 0.1")
    return value
