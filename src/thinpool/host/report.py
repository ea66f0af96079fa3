"""Pure parsers of lsblk's, wipefs's and findmnt's JSON output."""

from __future__ import annotations

import json
from typing import Any

from thinpool.core.model import Filesystem


def parse_lsblk(text: str) -> list[dict[str, Any]]:
    data = json.loads(text)
    return list(data.get("blockdevices", []))


def parse_wipefs(text: str) -> tuple[str, ...]:
    if not text.strip():
        return ()
    return tuple(str(sig.get("type", "unknown")) for sig in json.loads(text).get("signatures", []))


def parse_findmnt(text: str) -> dict[str, Filesystem]:
    """Filesystems by "MAJOR:MINOR"; a filesystem mounted in several places keeps its first mount point."""
    found: dict[str, Filesystem] = {}
    if not text.strip():
        return found  # findmnt prints nothing when no filesystem matches
    for row in json.loads(text).get("filesystems", []):
        device = str(row.get("maj:min", ""))
        found.setdefault(
            device,
            Filesystem(
                device,
                str(row["target"]),
                str(row.get("fstype", "")),
                int(row.get("size") or 0),
                int(row.get("used") or 0),
            ),
        )
    return found
