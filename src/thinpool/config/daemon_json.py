"""Docker's daemon.json: parsed once, with the shape of the keys thinpool reads checked."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from thinpool.config.document import ConfigError, load
from thinpool.core.model import Source

PATH = "/etc/docker/daemon.json"
# Keys whose values thinpool reads or merges, and the shape each must have.
_LIST_KEYS = ("storage-opts", "hosts", "dns")
_TEXT_KEYS = ("storage-driver", "data-root", "tlscacert", "tlscert", "tlskey", "bip")
CHECKED_KEYS = _LIST_KEYS + _TEXT_KEYS  # a wrong shape in one of these is refused, not merged


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


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number (dockerd refuses it)")


def _finite(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise ValueError(f"{number[:40]} is beyond what a JSON number can hold (dockerd refuses it)")
    return value


def _loads(text: str) -> Any:
    """Strict JSON: NaN, Infinity and numbers past a double's range are refused, as Go's decoder refuses them,
    and so are bytes that are not UTF-8 (read as lone surrogates)."""
    bad = next((index for index, char in enumerate(text) if "\udc80" <= char <= "\udcff"), None)
    if bad is not None:
        raise ValueError(f"byte 0x{ord(text[bad]) - 0xDC00:02x} at character {bad} is not UTF-8")
    if not text.strip():
        return {}
    return json.loads(text, parse_constant=_not_json, parse_float=_finite)


def parse(source: Source) -> DaemonJson | ConfigError:
    """An empty file is an empty object, as dockerd reads it."""
    data = load(source, _loads, "JSON", _shape_problem)
    return data if isinstance(data, ConfigError) else DaemonJson(data)


def newline_of(text: str | None) -> str:
    """The line ending a file uses: a CRLF file stays CRLF when thinpool writes it back."""
    return "\r\n" if text and "\r\n" in text else "\n"


def dumps(data: dict[str, Any], newline: str = "\n") -> str:
    """The object as thinpool writes it: two-space indent, keys in their order, characters as they are."""
    return (json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n").replace("\n", newline)
