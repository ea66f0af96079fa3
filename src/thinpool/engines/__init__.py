"""Engine adapters: each owns its configuration format, its refusals and its checks.

``plan_engine`` is pure: from the spec, the pool and the observed engine state it returns
the actions that wire the engine to the pool (nothing when all is already in place).
"""

from __future__ import annotations

from dataclasses import dataclass

from thinpool.core.health import Finding
from thinpool.core.model import EngineState, LogicalVolume
from thinpool.core.plan import Action
from thinpool.core.spec import PoolSpec
from thinpool.lvm import commands


@dataclass(frozen=True)
class PoolTarget:
    """The pool an engine is wired to, as it is or as the plan will make it."""

    vg: str
    pool: str
    data_size: int
    lvs: tuple[LogicalVolume, ...] = ()  # the VG's LVs today (empty for a new VG)

    @property
    def dm_name(self) -> str:
        return commands.dm_name(self.vg, self.pool)

    @property
    def dm_path(self) -> str:
        return f"/dev/mapper/{self.dm_name}"

    def thin_volumes(self) -> tuple[LogicalVolume, ...]:
        return tuple(lv for lv in self.lvs if lv.pool_lv == self.pool)


@dataclass(frozen=True)
class EngineChanges:
    actions: tuple[Action, ...] = ()
    warnings: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()


def plan_engine(spec: PoolSpec, target: PoolTarget, state: EngineState) -> EngineChanges:
    if spec.engine == "docker-devicemapper":
        from thinpool.engines import docker_devicemapper

        return docker_devicemapper.plan(spec, target, state)
    if spec.engine == "containerd-devmapper":
        from thinpool.engines import containerd_devmapper

        return containerd_devmapper.plan(spec, target, state)
    if spec.engine == "docker-overlay2-thin":
        from thinpool.engines import docker_overlay2

        return docker_overlay2.plan(spec, target, state)
    return EngineChanges()


def doctor(state: EngineState, vg: str, pool: str) -> list[Finding]:
    """Each engine adapter's findings about its config and this pool."""
    from thinpool.engines import containerd_devmapper, docker

    target = PoolTarget(vg, pool, 0)
    configure = f"thinpool engine configure --engine docker-devicemapper --vg {vg} --pool {pool}"
    return docker.doctor(state, target.dm_path, configure) + containerd_devmapper.doctor(
        state, target.dm_name, configure
    )
