"""What every engine adapter provides: the one protocol the registry (``thinpool.engines``) hands out.

An adapter is a pure module: it reads the ``EngineState`` observed for it and returns actions and
findings; it never runs a command. Modules implement the protocol by their module-level names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from thinpool.core.findings import Finding
    from thinpool.core.model import EngineState
    from thinpool.core.spec import PoolSpec
    from thinpool.engines.target import EngineChanges, PoolTarget
    from thinpool.engines.thin_volume import Store


@runtime_checkable
class EngineAdapter(Protocol):
    """One container engine's wiring to a pool."""

    @property
    def FILES(self) -> tuple[str, ...]:
        """The configuration files it reads (the observation layer reads them for it)."""

    def stores(self, spec: PoolSpec, state: EngineState) -> tuple[Store, ...]:
        """Its stores on thin volumes of the pool (whose mounts and filesystems are then observed); none when
        it keeps its data in the pool's own thin devices. ``state`` needs only the config files read."""

    def plan(self, spec: PoolSpec, target: PoolTarget, state: EngineState) -> EngineChanges:
        """The actions that wire the engine to the pool as the plan leaves it."""

    def largest_device(self, spec: PoolSpec, target: PoolTarget) -> tuple[str, int]:
        """What the engine's largest thin device is, and its virtual size in bytes."""

    def doctor(self, state: EngineState, target: PoolTarget) -> list[Finding]:
        """What its configuration says that can hurt this pool."""

    def data_folders(self, state: EngineState) -> tuple[str, ...]:
        """Folders whose entries are the engine's data (image layers, snapshots): doctor counts them and
        warns when they are on the root filesystem. ``state`` needs only the config files read."""

    def pool_users(self, state: EngineState, target: PoolTarget) -> tuple[str, ...]:
        """Its files that still point at the pool (destroy refuses while there is one)."""
