"""Pure parsers of lsblk's, wipefs's, fuser's and ip's output, and of the kernel's mount table."""

from __future__ import annotations

import json
import re
from typing import Any


def parse_lsblk(text: str) -> list[dict[str, Any]]:
    data = json.loads(text)
    return list(data.get("blockdevices", []))


def parse_wipefs(text: str) -> tuple[str, ...]:
    if not text.strip():
        return ()
    return tuple(str(sig.get("type", "unknown")) for sig in json.loads(text).get("signatures", []))


def parse_mountinfo(text: str) -> list[tuple[str, str, str, str]]:
    """(MAJOR:MINOR, mount point, filesystem type, source) of each line of ``/proc/self/mountinfo`` (proc(5)), in
    mount order: ``ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS``."""
    found = []
    for line in text.splitlines():
        before, dash, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if dash and len(fields) >= 6 and len(tail) >= 2:
            found.append((fields[2], _unescape(fields[4]), tail[0], _unescape(tail[1])))
    return found


def _unescape(path: str) -> str:
    """The kernel writes space, tab, newline and backslash in a path as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda octal: chr(int(octal.group(1), 8)), path)


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


def parse_lsblk_parent(text: str, device: str) -> str:
    """The disk or partition ``device`` (a mapping) sits on, from ``lsblk --json --list --inverse`` ("" when it
    lists none)."""
    for node in parse_lsblk(text):
        if node.get("path") != device and node.get("type") in ("disk", "part"):
            return str(node["path"])
    return ""
