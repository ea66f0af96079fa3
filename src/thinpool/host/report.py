"""Pure parsers of lsblk's, wipefs's and findmnt's JSON output."""

from __future__ import annotations

import json
from typing import Any


def parse_lsblk(text: str) -> list[dict[str, Any]]:
    data = json.loads(text)
    return list(data.get("blockdevices", []))


def parse_wipefs(text: str) -> tuple[str, ...]:
    if not text.strip():
        return ()
    return tuple(str(sig.get("type", "unknown")) for sig in json.loads(text).get("signatures", []))


def parse_findmnt(text: str) -> list[dict[str, Any]]:
    """findmnt's rows ("maj:min", "target", "fstype", "size", "used"); findmnt prints nothing when none match."""
    if not text.strip():
        return []
    return list(json.loads(text).get("filesystems", []))


def parse_fuser_pids(text: str) -> tuple[int, ...]:
    """fuser's stdout: PIDs, each followed by its access letters (``1234c 5678e``)."""
    found = (token.rstrip("abcdefmrtx") for token in text.split())
    return tuple(int(token) for token in found if token.isdigit())


def parse_ip_addresses(text: str) -> tuple[str, ...]:
    """The global addresses of ``ip -j address show`` (no loopback, no link-local), each once."""
    found = []
    for link in json.loads(text or "[]"):
        for info in link.get("addr_info", []):
            if info.get("scope") == "global" and info.get("local"):
                found.append(str(info["local"]))
    return tuple(dict.fromkeys(found))
