"""``@record``: a dataclass whose methods are shared functions, not code generated per class.

The standard ``@dataclass`` writes each class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` and ``__delattr__`` as source text and compiles it when the module is imported: 177
compilations for what ``thinpool status`` imports, 17 of its 40 ms of imports on a fast host, and most of
its start-up in an emulated VM (docs/benchmarks, "Converging and watching"). A record is still a
dataclass to everything else — ``dataclasses.fields``, ``replace`` and ``asdict`` work, and type checkers
read it as one (``dataclass_transform``) — but no source is compiled: the methods below read the class's
fields when they run. Frozen unless ``frozen=False``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError, field
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["field", "record"]

T = TypeVar("T")


@overload
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, frozen: bool = True) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def record(cls: type[T] | None = None, /, *, frozen: bool = True) -> type[T] | Callable[[type[T]], type[T]]:
    def make(target: type[T]) -> type[T]:
        undocumented = not target.__doc__
        if undocumented:  # else dataclass writes one from inspect.signature, which parses source text
            target.__doc__ = target.__name__
        made = dataclasses.dataclass(target, init=False, repr=False, eq=False)  # compiles nothing
        _attach(made, frozen, undocumented)
        return made

    return make if cls is None else make(cls)


def _attach(cls: type, frozen: bool, undocumented: bool) -> None:
    every = dataclasses.fields(cls)
    if undocumented:
        cls.__doc__ = f"{cls.__name__}({', '.join(f.name for f in every)})"
    compared = tuple(f.name for f in every if f.compare)
    methods: dict[str, object] = {
        "__init__": _init(cls, every),
        "__repr__": _repr(tuple(f.name for f in every if f.repr)),
        "__eq__": _eq(compared),
        "__hash__": None,  # as dataclass: mutable and compared, so unhashable
    }
    if frozen:
        hashed = tuple(f.name for f in every if (f.compare if f.hash is None else f.hash))
        methods |= {"__hash__": _hash(hashed), "__setattr__": _refuse_change, "__delattr__": _refuse_change}
    for name, method in methods.items():
        setattr(cls, name, method)


def _default(spec: Field[Any]) -> Any:
    if spec.default is not MISSING:
        return spec.default
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return MISSING


def _init(cls: type, every: tuple[Field[Any], ...]) -> Callable[..., None]:
    taken = tuple(f for f in every if f.init)
    names = tuple(f.name for f in taken)
    unset = tuple(f for f in every if not f.init)
    post_init = getattr(cls, "__post_init__", None)
    setter = object.__setattr__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments but {len(args)} were given")
        for name, value in zip(names, args, strict=False):
            if name in kwargs:
                raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
            setter(self, name, value)
        for spec in taken[len(args) :]:
            value = kwargs.pop(spec.name) if spec.name in kwargs else _default(spec)
            if value is MISSING:
                raise TypeError(f"{cls.__name__}() missing required argument: {spec.name!r}")
            setter(self, spec.name, value)
        if kwargs:  # what is left named no field
            raise TypeError(f"{cls.__name__}() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        for spec in unset:
            if (value := _default(spec)) is not MISSING:
                setter(self, spec.name, value)
        if post_init is not None:
            post_init(self)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


def _repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__qualname__}({shown})"

    return __repr__


def _eq(names: tuple[str, ...]) -> Callable[[Any, object], bool]:
    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _values(self, names) == _values(other, names)  # tuples, as dataclass compares

    return __eq__


def _hash(names: tuple[str, ...]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(_values(self, names))

    return __hash__


def _values(instance: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple([getattr(instance, name) for name in names])


def _refuse_change(_self: Any, name: str, *_value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")
