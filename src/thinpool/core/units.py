"""Integer-byte sizes: parse what operators type, print what they can read.

Every size in thinpool is an ``int`` of bytes (or of extents). Suffixes follow lvm:
``k``/``m``/``g``/``t``/``p`` and their ``KiB``/``MiB``/... spellings are binary
(powers of 1024), in either case; ``s`` is a 512-byte sector and ``b`` a byte.
Decimal units such as ``GB`` are refused rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from thinpool.errors import SpecError

if TYPE_CHECKING:
    from fractions import Fraction

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
PiB = 1024 * TiB
SECTOR = 512

_MULTIPLIERS: dict[str, int] = {
    "b": 1,
    "s": SECTOR,
    "k": KiB,
    "kib": KiB,
    "m": MiB,
    "mib": MiB,
    "g": GiB,
    "gib": GiB,
    "t": TiB,
    "tib": TiB,
    "p": PiB,
    "pib": PiB,
}
_DECIMAL_UNITS = {"kb", "mb", "gb", "tb", "pb"}
# ASCII digits only: Python's \d and int() also take other scripts' digits, which nobody means in a size.
_SIZE = r"^[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*([a-zA-Z]*)[ \t]*$"  # compiled by re on first use, not at import
_PERCENT = r"^[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*%[ \t]*([a-zA-Z]+)[ \t]*$"
MAX_DIGITS = 24  # more than any size or span anyone types (2**64 has 20 digits); int() of thousands is slow


def parse_size(text: str, *, what: str = "size") -> int:
    """Parse ``744GiB``, ``512k``, ``4m``, ``1.5t`` into whole bytes.

    A fractional result is rounded down to the byte. A bare number is refused:
    lvm reads it as MiB, other tools as bytes, and a guess here could cost a disk.
    """
    match = re.match(_SIZE, text)
    if not match:
        raise SpecError(
            f"{what}: cannot read {text!r} as a size",
            fix="write a number and a binary unit, e.g. 744GiB, 512KiB, 100G or 4m",
        )
    number, unit = match.group(1), match.group(2).lower()
    _check_digits(number, text, what)
    if unit == "":
        raise SpecError(
            f"{what}: {text!r} has no unit",
            fix=f"say which unit you mean, e.g. {number}GiB, {number}MiB or {number}b for bytes",
        )
    if unit in _DECIMAL_UNITS:
        raise SpecError(
            f"{what}: {text!r} uses a decimal unit",
            fix=f"thinpool and lvm count in powers of 1024: write {number}{unit[0].upper()}iB "
            f"(or give the exact number of bytes with a 'b' suffix)",
        )
    if unit not in _MULTIPLIERS:
        raise SpecError(
            f"{what}: unknown unit {match.group(2)!r} in {text!r}",
            fix="use b, s (512-byte sectors), k/KiB, m/MiB, g/GiB, t/TiB or p/PiB",
        )
    return scale_decimal(number, _MULTIPLIERS[unit])


def _check_digits(number: str, text: str, what: str) -> None:
    if len(number) > MAX_DIGITS:
        raise SpecError(
            f"{what}: {text[:32]!r}... has {len(number)} digits, more than any real value",
            fix="give a value with a unit, e.g. 744GiB or 5min",
        )


def scale_decimal(number: str, factor: int, divisor: int = 1) -> int:
    """``number`` (digits with an optional decimal part, as lvm and operators write them) times
    ``factor`` / ``divisor``, rounded down: exact integer arithmetic, no float and no import of
    fractions or decimal on the hot path of the watch commands."""
    whole, _, decimals = number.strip().partition(".")
    scale: int = 10 ** len(decimals)
    return int(whole + decimals or "0") * factor // (divisor * scale)


@dataclass(frozen=True)
class Percent:
    """A share of something lvm names: ``50%VG`` or ``90%FREE``."""

    value: Fraction
    of: Literal["VG", "FREE"]

    def of_extents(self, extents: int) -> int:
        """The share of ``extents``, rounded down to a whole extent."""
        return int(self.value * extents / 100)

    def __str__(self) -> str:
        shown = str(self.value.numerator) if self.value.denominator == 1 else str(float(self.value))
        return f"{shown}%{self.of}"


def parse_percent(text: str, *, what: str, allowed: tuple[str, ...]) -> Percent | None:
    """Parse ``N%VG``/``N%FREE``; None when ``text`` is not a percentage at all."""
    match = re.match(_PERCENT, text)
    if not match:
        if "%" in text:
            raise SpecError(
                f"{what}: cannot read {text!r} as a percentage",
                fix=f"write N%{allowed[0]}" + (f" or N%{allowed[1]}" if len(allowed) > 1 else ""),
            )
        return None
    from fractions import Fraction

    _check_digits(match.group(1), text, what)
    value, of = Fraction(match.group(1)), match.group(2).upper()
    if of not in allowed:
        raise SpecError(
            f"{what}: {text!r} is a percentage of {of}, which this option does not take",
            fix="use " + " or ".join(f"N%{name}" for name in allowed),
        )
    if not 0 < value <= 100:
        raise SpecError(f"{what}: {text!r} is outside 0-100%", fix="pick a share above 0 and at most 100")
    return Percent(value=value, of=of)  # type: ignore[arg-type]


def parse_size_or_percent(text: str, *, what: str, allowed: tuple[str, ...]) -> int | Percent:
    """A size in bytes, or a Percent of one of ``allowed`` (``VG``, ``FREE``)."""
    percent = parse_percent(text, what=what, allowed=allowed)
    return percent if percent is not None else parse_size(text, what=what)


def format_size(size: int) -> str:
    """``799063146496`` -> ``744.19 GiB``; exact values print without decimals."""
    if size < 0:
        return "-" + format_size(-size)
    for unit, factor in (("PiB", PiB), ("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor:
            if size % factor == 0:
                return f"{size // factor} {unit}"
            hundredths = (size * 100) // factor
            return f"{hundredths // 100}.{hundredths % 100:02d} {unit}"
    return f"{size} B"


def lvm_size_arg(size: int) -> str:
    """A size as lvm's argv wants it: the largest exact binary unit (``744g``, ``512k``)."""
    for suffix, factor in (("t", TiB), ("g", GiB), ("m", MiB), ("k", KiB)):
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    if size % SECTOR == 0:
        return f"{size // SECTOR}s"
    raise ValueError(f"{size} bytes is not a whole number of 512-byte sectors")


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def to_extents_up(size: int, extent_size: int) -> int:
    return ceil_div(size, extent_size)


def to_extents_down(size: int, extent_size: int) -> int:
    return size // extent_size


_SPAN_PART = r"([0-9]+)(sec|s|min|m|hr|h|d)"
_SPAN_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def parse_span(text: str, *, what: str) -> int:
    """Whole seconds from a time span as systemd writes them: ``90s``, ``5min``, ``1h30min``, ``2d``
    (a bare number is seconds)."""
    if re.fullmatch("[0-9]+", text):
        _check_digits(text, text, what)
        return int(text)
    parts = re.findall(_SPAN_PART, text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise SpecError(f"{what} {text!r} is not a time span", fix="give one such as 90s, 5min, 1h or 1h30min")
    for number, _unit in parts:
        _check_digits(number, text, what)
    return sum(int(number) * _SPAN_SECONDS[unit] for number, unit in parts)
