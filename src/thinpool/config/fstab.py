"""/etc/fstab as lines: every line thinpool does not own comes back byte for byte (endings included)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from thinpool.config.document import ConfigError, Problem
from thinpool.core.model import Source

PATH = "/etc/fstab"
_BLANKS = "[ \t]+"  # getmntent's field separators: spaces and tabs only


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
            fields = tuple(field for field in re.split(_BLANKS, line.rstrip("\r\n")) if field)
            if len(fields) > 1 and not fields[0].startswith("#"):
                found.append(Entry(index, fields[0], normal(fields[1]), fields))
        return found

    def on(self, mount_point: str) -> list[Entry]:
        return [entry for entry in self.entries() if entry.mount_point == normal(mount_point)]

    def without(self, entries: list[Entry]) -> Fstab:
        dropped = {entry.index for entry in entries}
        return Fstab(tuple(line for index, line in enumerate(self.lines) if index not in dropped))

    def replaced(self, entry: Entry, line: str) -> str:
        """The file's text with ``entry``'s line replaced by ``line``, in that line's own ending."""
        old = self.lines[entry.index]
        ending = old[len(old.rstrip("\r\n")) :]
        return "".join(self.lines[: entry.index]) + line + ending + "".join(self.lines[entry.index + 1 :])

    def appended(self, *new: str) -> str:
        """The file's text with ``new`` lines added at the end, in the file's own line ending."""
        head = "".join(self.lines)
        if head and not head.endswith("\n"):
            head += self.newline
        return head + "".join(line + self.newline for line in new)


def normal(path: str) -> str:
    """A mount point as the kernel names it: fstab's octal escapes read (``\\040`` is a space), one slash
    between names, no ``.`` part and no trailing slash: ``//var/lib/./docker/`` is ``/var/lib/docker``."""
    unescaped = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), path)
    if not unescaped.startswith("/"):
        return unescaped
    return "/" + posixpath.normpath(unescaped).lstrip("/")


def lines_of(text: str) -> tuple[str, ...]:
    """The lines as libc's getmntent reads them: only a new line ends one (not form feed or U+2028, which
    ``str.splitlines`` would also take); each keeps its ending."""
    parts = text.split("\n")
    return tuple(part + "\n" for part in parts[:-1]) + ((parts[-1],) if parts[-1] else ())


def parse(source: Source) -> Fstab | ConfigError:
    """A missing fstab is an empty one; an unreadable one is an error."""
    if source.unreadable:
        return ConfigError(source.path, Problem.UNREADABLE, source.unreadable)
    return Fstab(lines_of(source.text or ""))
