"""``@record``: thinpool's value classes, a dataclass without generated code or the dataclasses module.

The standard ``@dataclass`` writes each class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` and ``__delattr__`` as source text and compiles it when the module is imported (177
compilations for what ``thinpool status`` imports), and importing ``dataclasses`` brings ``inspect``,
``ast``, ``dis`` and ``tokenize``. Together they were half of status's imports on a fast host and most
of its start-up in an emulated VM (docs/benchmarks, "Converging and watching").

A record is declared as a dataclass is: annotated fields, defaults, ``field(default_factory=...)``; type
checkers read it as one (``dataclass_transform``). Its methods are shared functions that read the
class's fields when they run. ``replace``, ``fields`` and ``asdict`` here do what the dataclasses
functions of those names do. Frozen unless ``frozen=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["Field", "FrozenInstanceError", "asdict", "field", "fields", "record", "replace"]

T = TypeVar("T")
FIELDS = "__record_fields__"  # on each record class: its fields, in order


class FrozenInstanceError(AttributeError):
    """A field of a frozen record was assigned or deleted."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    """One field: its name and default, and whether ``__init__``, ``repr`` and ``==`` take it."""

    __slots__ = ("compare", "default", "default_factory", "init", "name", "repr")

    def __init__(self, default: Any, default_factory: Any, init: bool, repr: bool, compare: bool) -> None:
        self.name = ""
        self.default, self.default_factory = default, default_factory
        self.init, self.repr, self.compare = init, repr, compare

    def initial(self) -> Any:
        """The value a field not given to ``__init__`` gets, MISSING when it has none."""
        if self.default_factory is not MISSING:
            return self.default_factory()
        return self.default


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | Any = MISSING,
    init: bool = True,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """A field's options, as ``dataclasses.field`` takes them."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("a field cannot have both a default and a default_factory")
    return Field(default, default_factory, init, repr, compare)


@overload
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, frozen: bool = True) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def record(cls: type[T] | None = None, /, *, frozen: bool = True) -> type[T] | Callable[[type[T]], type[T]]:
    def make(target: type[T]) -> type[T]:
        _attach(target, _collect(target), frozen)
        return target

    return make if cls is None else make(cls)


def _collect(cls: type) -> tuple[Field, ...]:
    """The fields of ``cls``: its bases' first, then its own annotations in order (a ClassVar is not one)."""
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        found |= {spec.name: spec for spec in getattr(base, FIELDS, ())}
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063 (not inspect)
        if "ClassVar" in str(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, Field) else Field(value, MISSING, True, True, True)
        spec.name = name
        if isinstance(value, Field):  # the class keeps a plain default as dataclass does, never a Field
            if value.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, value.default)
        found[name] = spec
    return tuple(found.values())


def _attach(cls: type, every: tuple[Field, ...], frozen: bool) -> None:
    compared = tuple(spec.name for spec in every if spec.compare)
    methods: dict[str, object] = {
        FIELDS: every,
        "__match_args__": tuple(spec.name for spec in every if spec.init),
        "__init__": _init(cls, every),
        "__repr__": _repr(tuple(spec.name for spec in every if spec.repr)),
        "__eq__": _eq(compared),
        "__hash__": None,  # as dataclass: mutable and compared, so unhashable
    }
    if frozen:
        methods |= {"__hash__": _hash(compared), "__setattr__": _refuse_change, "__delattr__": _refuse_change}
    if not cls.__doc__:
        methods["__doc__"] = f"{cls.__name__}({', '.join(spec.name for spec in every)})"
    for name, method in methods.items():
        setattr(cls, name, method)


def _init(cls: type, every: tuple[Field, ...]) -> Callable[..., None]:
    taken = tuple(spec for spec in every if spec.init)
    names = tuple(spec.name for spec in taken)
    unset = tuple(spec for spec in every if not spec.init)
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
            value = kwargs.pop(spec.name) if spec.name in kwargs else spec.initial()
            if value is MISSING:
                raise TypeError(f"{cls.__name__}() missing required argument: {spec.name!r}")
            setter(self, spec.name, value)
        if kwargs:  # what is left named no field
            raise TypeError(f"{cls.__name__}() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        for spec in unset:
            if (value := spec.initial()) is not MISSING:
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


def fields(instance_or_class: object) -> tuple[Field, ...]:
    """A record's fields, in order."""
    found: tuple[Field, ...] | None = getattr(instance_or_class, FIELDS, None)
    if found is None:
        raise TypeError(f"{instance_or_class!r} is not a record")
    return found


def replace(instance: T, /, **changes: Any) -> T:
    """A copy of ``instance`` with ``changes``; the other fields ``__init__`` takes are carried over."""
    for spec in fields(instance):
        if spec.init and spec.name not in changes:
            changes[spec.name] = getattr(instance, spec.name)
        elif not spec.init and spec.name in changes:
            raise ValueError(f"field {spec.name!r} is not set by __init__ and cannot be replaced")
    return type(instance)(**changes)


def asdict(instance: object) -> dict[str, Any]:
    """A record as plain dicts, lists and tuples, records inside it too (its values are not copied)."""
    return {spec.name: _plain(getattr(instance, spec.name)) for spec in fields(instance)}


def _plain(value: Any) -> Any:
    if hasattr(type(value), FIELDS):
        return asdict(value)
    if isinstance(value, list | tuple):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    return value
