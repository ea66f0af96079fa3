"""The envelope of every JSON document thinpool prints or writes: its kind and schema version, then its body.

Scripts dispatch on ``kind`` and refuse a ``schema_version`` they do not know; each kind's version
changes only when a field is removed or changes meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def envelope(kind: str, body: Mapping[str, Any], *, version: int = 1) -> dict[str, Any]:
    """``body`` under ``kind`` and its schema ``version``."""
    return {"schema_version": version, "kind": kind, **body}
