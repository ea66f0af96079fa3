"""/etc/fstab as lines: every line thinpool does not own comes back byte for byte (endings included)."""

from __future__ import annotations

from dataclasses import dataclass

from thinpool.config.document import ConfigError, Problem
from thinpool.core.model import Source

PATH = "/etc/fstab"


@dataclass(frozen=True)
class Entry:
    index: int  # its line's position in the file
    source: str
    mount_point: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Fstab:
    lines: tuple[str, ...]  # each with its own ending ("\n", "\r\n" or none on the last)

    @property
    def newline(self) -> str:
        return "\r\n" if any(line.endswith("\r\n") for line in self.lines) else "\n"

    def entries(self) -> list[Entry]:
        found = []
        for index, line in enumerate(self.lines):
            fields = tuple(line.split())
            if len(fields) > 1 and not fields[0].startswith("#"):
                found.append(Entry(index, fields[0], normal(fields[1]), fields))
        return found

    def on(self, mount_point: str) -> list[Entry]:
        return [entry for entry in self.entries() if entry.mount_point == normal(mount_point)]

    def without(self, entries: list[Entry]) -> Fstab:
        dropped = {entry.index for entry in entries}
        return Fstab(tuple(line for index, line in enumerate(self.lines) if index not in dropped))

    def appended(self, *new: str) -> str:
        """The file's text with ``new`` lines added at the end, in the file's own line ending."""
        head = "".join(self.lines)
        if head and not head.endswith("\n"):
            head += self.newline
        return head + "".join(line + self.newline for line in new)


def normal(path: str) -> str:
    """A mount point as the kernel names it: no trailing slash."""
    return path.rstrip("/") or "/"


def parse(source: Source) -> Fstab | ConfigError:
    """A missing fstab is an empty one; an unreadable one is an error."""
    if source.unreadable:
        return ConfigError(source.path, Problem.UNREADABLE, source.unreadable)
    return Fstab(tuple((source.text or "").splitlines(keepends=True)))
