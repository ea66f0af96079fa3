from fractions import Fraction

import pytest

from thinpool.core.units import (
    GiB,
    KiB,
    MiB,
    Percent,
    TiB,
    format_size,
    lvm_size_arg,
    parse_percent,
    parse_size,
    parse_size_or_percent,
)
from thinpool.errors import SpecError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("744GiB", 744 * GiB),
        ("512KiB", 512 * KiB),
        ("100G", 100 * GiB),
        ("4m", 4 * MiB),
        ("4M", 4 * MiB),
        ("1t", TiB),
        ("1.5g", 3 * GiB // 2),
        ("8s", 4096),
        ("4096b", 4096),
        (" 2 MiB ", 2 * MiB),
    ],
)
def test_parse_size_reads_binary_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected
    assert isinstance(parse_size(text), int)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("100", "no unit"),
        ("100GB", "decimal unit"),
        ("10 parsecs", "unknown unit"),
        ("1,5G", "cannot read"),
        ("10x", "unknown unit"),
        ("-5G", "cannot read"),
        ("", "cannot read"),
    ],
)
def test_parse_size_refuses_ambiguous_or_malformed_input(text: str, hint: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_size(text, what="--data-size")
    assert hint in caught.value.problem
    assert "--data-size" in caught.value.problem
    assert caught.value.fix


def test_fractional_bytes_round_down() -> None:
    assert parse_size("1.0000001k") == 1024


def test_percent_of_extents_rounds_down() -> None:
    share = parse_percent("20%VG", what="x", allowed=("VG",))
    assert share == Percent(Fraction(20), "VG")
    assert share is not None
    assert share.of_extents(190511) == 38102


def test_percent_refuses_the_wrong_base_and_out_of_range() -> None:
    with pytest.raises(SpecError, match="FREE"):
        parse_percent("50%FREE", what="--headroom", allowed=("VG",))
    with pytest.raises(SpecError, match="outside"):
        parse_percent("150%VG", what="--data-size", allowed=("VG",))
    with pytest.raises(SpecError, match="percentage"):
        parse_percent("%VG", what="--data-size", allowed=("VG",))


def test_size_or_percent() -> None:
    assert parse_size_or_percent("10g", what="x", allowed=("VG",)) == 10 * GiB
    assert str(parse_size_or_percent("95%vg", what="x", allowed=("VG",))) == "95%VG"


@pytest.mark.parametrize(
    ("size", "text"),
    [(744 * GiB, "744 GiB"), (762048 * MiB, "744.18 GiB"), (512 * KiB, "512 KiB"), (100, "100 B"), (0, "0 B")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("size", "arg"), [(4 * MiB, "4m"), (716 * MiB, "716m"), (512 * KiB, "512k"), (2 * TiB, "2t"), (1536, "3s")]
)
def test_lvm_size_arg_is_exact(size: int, arg: str) -> None:
    assert lvm_size_arg(size) == arg
    assert parse_size(arg) == size


def test_lvm_size_arg_refuses_partial_sectors() -> None:
    with pytest.raises(ValueError, match="sectors"):
        lvm_size_arg(1000)
