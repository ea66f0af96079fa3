"""Pure parsers of lsblk's and wipefs's JSON output."""

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
