"""@record behaves as @dataclass(frozen=True) (or @dataclass with frozen=False) does, without compiling code or
importing dataclasses."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import pytest

from thinpool.core.record import FrozenInstanceError, asdict, field, fields, record, replace


@record
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)
    note: str = field(default="", compare=False, repr=False)


@record
class Line:
    start: Point
    points: tuple[Point, ...] = ()
    named: dict[str, Point] = field(default_factory=dict)
    KIND: ClassVar[str] = "line"  # not a field


@record
class Labelled(Point):
    label: str = ""


@record(frozen=False)
class Counter:
    name: str
    seen: list[int] = field(default_factory=list)
    total: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.total = sum(self.seen)


def test_a_record_is_built_compared_and_shown_as_a_frozen_dataclass() -> None:
    point = Point(1, tags=("a",), note="n")
    assert (point.x, point.y, point.tags, point.note) == (1, 0, ("a",), "n")
    assert repr(point) == "Point(x=1, y=0, tags=('a',))"  # note has repr=False
    assert point == Point(1, 0, ("a",), "other note") and point != Point(2) and point != (1, 0, ("a",))
    assert hash(point) == hash(Point(1, 0, ("a",))) and len({point, Point(1, 0, ("a",))}) == 1
    with pytest.raises(FrozenInstanceError):
        point.x = 5  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del point.y  # type: ignore[misc]


def test_the_dataclass_functions_work_on_a_record() -> None:
    point = Point(1, 2)
    assert [spec.name for spec in fields(point)] == ["x", "y", "tags", "note"] and fields(Point) == fields(point)
    assert replace(point, y=5) == Point(1, 5) and asdict(point) == {"x": 1, "y": 2, "tags": (), "note": ""}
    assert Point.__match_args__ == ("x", "y", "tags", "note")
    line = Line(Point(1), (Point(2),), {"a": Point(3)})
    assert [spec.name for spec in fields(Line)] == ["start", "points", "named"] and Line.KIND == "line"
    assert asdict(line) == {"start": asdict(Point(1)), "points": (asdict(Point(2)),), "named": {"a": asdict(Point(3))}}
    assert Labelled(1, label="l") == Labelled(1, 0, (), "", "l") and Labelled(1) != Point(1)  # a subclass adds fields
    with pytest.raises(ValueError, match="'total' is not set by __init__"):
        replace(Counter("c"), total=3)
    with pytest.raises(TypeError, match="is not a record"):
        fields(object())
    assert Point.__doc__ == "Point(x, y, tags, note)" and Counter.__doc__ == "Counter(name, seen, total)"


def test_thinpools_core_imports_neither_dataclasses_nor_inspect() -> None:
    found = "print(sorted({'dataclasses', 'inspect'} & set(sys.modules)))"
    code, baseline = f"import sys, thinpool.core.health, thinpool.app.watch; {found}", f"import sys; {found}"
    if subprocess.run([sys.executable, "-c", baseline], capture_output=True, text=True, check=True).stdout != "[]\n":
        pytest.skip("this interpreter's site already imports them")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n", done.stderr


def test_wrong_arguments_are_refused_as_python_refuses_them() -> None:
    with pytest.raises(TypeError, match="missing required argument: 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword arguments: z"):
        Point(1, z=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes 4 positional arguments but 5 were given"):
        Point(1, 2, (), "", 5)  # type: ignore[call-arg]


def test_a_mutable_record_runs_post_init_sets_fields_not_in_init_and_is_unhashable() -> None:
    counter = Counter("c", [1, 2])
    assert counter.total == 3 and Counter("d").seen == [] and Counter("d").seen is not Counter("d").seen
    counter.total = 7
    assert counter.total == 7 and counter != Counter("c", [1, 2])  # compared on every field, total too
    assert Counter("c", [1]) == Counter("c", [1]) and Counter("c", [1]) != Counter("c", [2])
    with pytest.raises(TypeError, match="unhashable"):
        hash(counter)
    with pytest.raises(TypeError, match="unexpected keyword arguments: total"):
        Counter("c", total=1)  # type: ignore[call-arg]
