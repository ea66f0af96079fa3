"""containers-storage's storage.conf (Podman, Buildah, CRI-O): read (tomllib) to check it, edited (tomlkit) to
keep its comments.

/etc/containers/storage.conf replaces the distribution's /usr/share/containers/storage.conf as a whole
when it exists; a key it leaves out takes containers-storage's built-in default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thinpool.config.document import ConfigError, load, sub_table, toml_loads, with_line_endings_of
from thinpool.core.model import Source

PATH = "/etc/containers/storage.conf"
DEFAULT_GRAPHROOT = "/var/lib/containers/storage"  # containers-storage's, for root
DEFAULT_RUNROOT = "/run/containers/storage"


@dataclass(frozen=True)
class StorageConf:
    data: dict[str, Any]

    @property
    def storage(self) -> dict[str, Any]:
        return dict(self.data.get("storage", {}))

    @property
    def driver(self) -> str:
        return str(self.storage.get("driver", ""))

    @property
    def graphroot(self) -> str:
        """Where root's images and containers live."""
        root = self.storage.get("graphroot")
        return root if isinstance(root, str) and root.startswith("/") else DEFAULT_GRAPHROOT


def _shape_problem(data: dict[str, Any]) -> str:
    storage = data.get("storage", {})
    if not isinstance(storage, dict):
        return "'storage' is not a table"
    for key in ("driver", "graphroot", "runroot"):
        if key in storage and not isinstance(storage[key], str):
            return f"storage.{key} is not a string"
    return ""


def parse(source: Source) -> StorageConf | ConfigError:
    data = load(source, toml_loads, "TOML", _shape_problem)
    return data if isinstance(data, ConfigError) else StorageConf(data)


def edit(text: str, settings: dict[str, Any]) -> str | None:
    """``text`` with ``[storage]`` holding ``settings`` (every other byte kept); None when it already does.

    ``text`` must have passed :func:`parse`. A new file also names runroot and graphroot, which
    containers-storage requires of a storage.conf that replaces the distribution's.
    """
    import tomlkit

    document = tomlkit.parse(text)
    section = sub_table(document, "storage")
    wanted = dict(settings)
    if not text.strip():
        wanted = {"runroot": DEFAULT_RUNROOT, "graphroot": DEFAULT_GRAPHROOT, **wanted}
    if all(section.get(key) == value for key, value in wanted.items()):
        return None
    for key, value in wanted.items():
        section[key] = value
    return with_line_endings_of(text, tomlkit.dumps(document))
