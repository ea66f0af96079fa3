"""What every engine adapter plans against and returns."""

from __future__ import annotations

from dataclasses import dataclass

from thinpool.core.lvm import commands
from thinpool.core.model import LogicalVolume
from thinpool.core.plan import Action


@dataclass(frozen=True)
class PoolTarget:
    """The pool an engine is wired to, as it is or as the plan will make it."""

    vg: str
    pool: str
    data_size: int
    lvs: tuple[LogicalVolume, ...] = ()  # the VG's LVs today (empty for a new VG)
    max_data_size: int = 0  # the data size once autoextend has used all of the VG's room (0: unknown)

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
