"""Docker's daemon.json: parsed once, with the shape of the keys thinpool reads checked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from thinpool.config.document import ConfigError, load
from thinpool.core.model import Source

PATH = "/etc/docker/daemon.json"
# Keys whose values thinpool reads or merges, and the shape each must have.
_LIST_KEYS = ("storage-opts", "hosts", "dns")
_TEXT_KEYS = ("storage-driver", "data-root", "tlscacert", "tlscert", "tlskey", "bip")


@dataclass(frozen=True)
class DaemonJson:
    data: dict[str, Any]

    @property
    def storage_driver(self) -> str | None:
        value = self.data.get("storage-driver")
        return value if isinstance(value, str) else None

    @property
    def storage_opts(self) -> list[str]:
        return list(self.data.get("storage-opts", []))

    @property
    def hosts(self) -> list[str]:
        return list(self.data.get("hosts", []))

    @property
    def dns(self) -> list[str]:
        return list(self.data.get("dns", []))

    @property
    def tls_certificates(self) -> tuple[str, ...]:
        """The certificate files dockerd's TLS reads (its own and the CA's)."""
        return tuple(str(self.data[key]) for key in ("tlscert", "tlscacert") if self.data.get(key))

    @property
    def thinpooldev(self) -> str:
        """The pool devicemapper is pointed at ("" when none)."""
        return next((opt.split("=", 1)[1] for opt in self.storage_opts if opt.startswith("dm.thinpooldev=")), "")


def _shape_problem(data: Any) -> str:
    if not isinstance(data, dict):
        return f"it holds a {type(data).__name__}, not a JSON object"
    for key in _LIST_KEYS:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return f"{key!r} is not a list of strings"
    for key in _TEXT_KEYS:
        if not isinstance(data.get(key, ""), str):
            return f"{key!r} is not a string"
    return ""


def parse(source: Source) -> DaemonJson | ConfigError:
    """An empty file is an empty object, as dockerd reads it."""
    data = load(source, lambda text: json.loads(text) if text.strip() else {}, "JSON", _shape_problem)
    return data if isinstance(data, ConfigError) else DaemonJson(data)


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"
