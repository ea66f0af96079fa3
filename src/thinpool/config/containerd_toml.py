"""containerd's config.toml: read (tomllib) to check and describe it, edited (tomlkit) to keep its comments."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from thinpool.config.document import ConfigError, load, sub_table, toml_loads, with_line_endings_of
from thinpool.core.model import Source

PATH = "/etc/containerd/config.toml"
DEVMAPPER = "io.containerd.snapshotter.v1.devmapper"
DEFAULT_ROOT = "/var/lib/containerd"  # containerd's root when config.toml sets none


@dataclass(frozen=True)
class ContainerdConfig:
    data: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.data.get("version", 1))

    @property
    def root(self) -> str:
        """Where containerd keeps its content and snapshots (config.toml's root)."""
        root = self.data.get("root")
        return root if isinstance(root, str) and root.startswith("/") else DEFAULT_ROOT

    @property
    def imports(self) -> tuple[str, ...]:
        """The drop-ins containerd merges over this file, as written (glob patterns, relative to its folder)."""
        imports = self.data.get("imports", [])
        return tuple(item for item in imports if isinstance(item, str)) if isinstance(imports, list) else ()

    @property
    def import_patterns(self) -> tuple[str, ...]:
        """``imports`` as absolute glob patterns (a relative one is read from config.toml's folder)."""
        folder = posixpath.dirname(PATH)
        return tuple(posixpath.normpath(posixpath.join(folder, pattern)) for pattern in self.imports)

    @property
    def disabled_plugins(self) -> tuple[str, ...]:
        disabled = self.data.get("disabled_plugins", [])
        return tuple(str(item) for item in disabled) if isinstance(disabled, list) else ()

    @property
    def devmapper(self) -> dict[str, Any]:
        """The devmapper snapshotter's section ({} when there is none)."""
        return dict(self.data.get("plugins", {}).get(DEVMAPPER, {}))


def _shape_problem(data: dict[str, Any]) -> str:
    version = data.get("version", 1)
    if type(version) is not int:
        return "'version' is not an integer"
    plugins = data.get("plugins", {})
    if not isinstance(plugins, dict):
        return "'plugins' is not a table"
    if not isinstance(plugins.get(DEVMAPPER, {}), dict):
        return f"plugins.{DEVMAPPER!r} is not a table"
    return ""


def parse(source: Source) -> ContainerdConfig | ConfigError:
    data = load(source, toml_loads, "TOML", _shape_problem)
    return data if isinstance(data, ConfigError) else ContainerdConfig(data)


def edit(text: str, settings: dict[str, Any], version: int) -> str | None:
    """``text`` with the devmapper section holding ``settings`` (other bytes kept); None when it already does.

    ``text`` must have passed :func:`parse`; a new file (empty text) gets ``version``.
    """
    import tomlkit

    document = tomlkit.parse(text)
    if not text.strip():
        document["version"] = version
    section = sub_table(sub_table(document, "plugins", super_table=True), DEVMAPPER)
    if all(section.get(key) == value for key, value in settings.items()):
        return None
    for key, value in settings.items():
        section[key] = value
    return with_line_endings_of(text, tomlkit.dumps(document))
