"""@record behaves as @dataclass(frozen=True) (or @dataclass with frozen=False) does, without compiling code."""

from __future__ import annotations

import dataclasses
from dataclasses import FrozenInstanceError, asdict, field, replace

import pytest

from thinpool.core.record import record


@record
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)
    note: str = field(default="", compare=False, repr=False)


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
    assert dataclasses.is_dataclass(point) and [f.name for f in dataclasses.fields(point)] == ["x", "y", "tags", "note"]
    assert replace(point, y=5) == Point(1, 5) and asdict(point) == {"x": 1, "y": 2, "tags": (), "note": ""}
    assert Point.__match_args__ == ("x", "y", "tags", "note")
    assert Point.__doc__ == "Point(x, y, tags, note)" and Counter.__doc__ == "Counter(name, seen, total)"


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
