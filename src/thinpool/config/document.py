"""What every config format shares: the typed ways a file can be wrong (the file as it was read is
core.model's Source)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from thinpool.core.model import Source


class Problem(StrEnum):
    MISSING = "missing"
    UNREADABLE = "unreadable"
    INVALID = "invalid"
    WRONG_SHAPE = "wrong shape"


@dataclass(frozen=True)
class ConfigError:
    path: str
    problem: Problem
    detail: str = ""
    language: str = ""  # "JSON", "TOML": what the file should be written in

    def __str__(self) -> str:
        what = {
            Problem.MISSING: "does not exist",
            Problem.UNREADABLE: "cannot be read",
            Problem.INVALID: f"is not valid {self.language or 'syntax'}",
            Problem.WRONG_SHAPE: "has the wrong shape",
        }[self.problem]
        return f"{self.path} {what}" + (f" ({self.detail})" if self.detail else "")


def toml_loads(text: str) -> Any:
    """A TOML file's data (tomllib is imported only when a TOML file exists: the watch commands read configs on
    every scrape)."""
    import tomllib

    return tomllib.loads(text)


def sub_table(container: Any, key: str, *, super_table: bool = False) -> Any:
    """tomlkit's table at ``key`` in ``container``, made when missing: inline inside an inline table (TOML allows
    no ``[section]`` there), a ``[section]`` otherwise."""
    import tomlkit
    from tomlkit.items import InlineTable

    if key not in container:
        container[key] = tomlkit.inline_table() if isinstance(container, InlineTable) else tomlkit.table(super_table)
    return container[key]


def with_line_endings_of(original: str, edited: str) -> str:
    """``edited`` (tomlkit writes new lines as LF) in the line ending ``original`` uses throughout: CRLF stays CRLF."""
    if "\n" not in original or original.count("\r\n") != original.count("\n"):
        return edited
    return edited.replace("\r\n", "\n").replace("\n", "\r\n")


def load(
    source: Source, loads: Callable[[str], Any], language: str, shape_problem: Callable[[Any], str]
) -> Any | ConfigError:
    """The file's data by ``loads``, or the typed error: missing, unreadable, invalid, or the wrong shape."""
    absent = missing_or_unreadable(source)
    if absent is not None:
        return absent
    assert source.text is not None
    try:
        data = loads(source.text)
    except RecursionError:
        return ConfigError(source.path, Problem.INVALID, "nested too deeply", language)
    except ValueError as error:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        return ConfigError(source.path, Problem.INVALID, str(error), language)
    shape = shape_problem(data)
    return ConfigError(source.path, Problem.WRONG_SHAPE, shape, language) if shape else data


def missing_or_unreadable(source: Source) -> ConfigError | None:
    if source.unreadable:
        return ConfigError(source.path, Problem.UNREADABLE, source.unreadable)
    if source.text is None:
        return ConfigError(source.path, Problem.MISSING)
    return None
