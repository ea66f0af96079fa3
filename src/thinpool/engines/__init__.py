"""The engine registry: adding an engine is its adapter module plus one line in ``REGISTRY``.

Each adapter implements ``EngineAdapter`` (``engines.adapter``) and is imported only when a command
needs it. Composing the host's plan from the pool's and an engine's is the app layer's work
(``thinpool.app.planning``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from thinpool.core.spec import NO_ENGINE
from thinpool.engines.adapter import EngineAdapter
from thinpool.errors import SpecError

if TYPE_CHECKING:
    from thinpool.core.findings import Finding
    from thinpool.core.model import EngineState

# Engine name (the --engine choice): its adapter module in this package.
REGISTRY = {
    "docker-devicemapper": "docker_devicemapper",
    "containerd-devmapper": "containerd_devmapper",
    "docker-overlay2-thin": "docker_overlay2",
    "containerd-overlayfs-thin": "containerd_overlayfs",
    "podman-overlay-thin": "podman_overlay",
    "docker-containerd-thin": "docker_containerd",
}
NAMES: tuple[str, ...] = tuple(REGISTRY)
CHOICES: tuple[str, ...] = (NO_ENGINE, *NAMES)

__all__ = [
    "CHOICES",
    "NAMES",
    "REGISTRY",
    "EngineAdapter",
    "adapter",
    "adapters",
    "data_folders",
    "doctor",
    "pool_users",
]


def adapter(name: str) -> EngineAdapter:
    """The adapter registered as ``name``."""
    if name not in REGISTRY:
        raise SpecError(f"unknown engine {name!r}", fix="choose one of: " + ", ".join(CHOICES))
    module = importlib.import_module(f".{REGISTRY[name]}", __package__)  # relative: also where Ansible bundles it
    if not isinstance(module, EngineAdapter):
        raise TypeError(f"thinpool.engines.{REGISTRY[name]} does not implement EngineAdapter")
    return module


def adapters() -> tuple[EngineAdapter, ...]:
    return tuple(adapter(name) for name in NAMES)


def config_files() -> tuple[str, ...]:
    """Every file some adapter reads, each once, in registry order."""
    return tuple(dict.fromkeys(path for module in adapters() for path in module.FILES))


def data_folders(state: EngineState) -> tuple[str, ...]:
    """Every folder some adapter keeps its data in, each once (doctor reads their entries)."""
    return tuple(dict.fromkeys(folder for module in adapters() for folder in module.data_folders(state)))


def doctor(state: EngineState, vg: str, pool: str) -> list[Finding]:
    """Each configuration's findings about itself and this pool (engines sharing a file check it once)."""
    from thinpool.engines.target import PoolTarget

    target = PoolTarget(vg, pool, 0)
    checks = dict.fromkeys(module.doctor for module in adapters())
    return [finding for check in checks for finding in check(state, target)]


def pool_users(state: EngineState, vg: str, pool: str) -> tuple[str, ...]:
    """The configuration files that still point at ``vg/pool`` (destroy refuses while there is one)."""
    from thinpool.engines.target import PoolTarget

    target = PoolTarget(vg, pool, 0)
    checks = dict.fromkeys(module.pool_users for module in adapters())
    return tuple(dict.fromkeys(path for check in checks for path in check(state, target)))
