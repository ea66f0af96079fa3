"""The one object a use case needs from its caller: the runner, the root folder, output mode, time to wait."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from thinpool.errors import ThinpoolError
from thinpool.system.runner import Runner, SystemRunner

if TYPE_CHECKING:
    from thinpool.system.observe import StatVfs


@dataclass
class Context:
    runner: Runner
    root: Path = Path("/")  # where files are read and written (a test's temporary folder)
    json: bool = False  # machine-readable output was asked for
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time  # seconds since the epoch (backups' ages)
    euid: int = field(default_factory=os.geteuid)
    statvfs: StatVfs = os.statvfs  # mounted filesystems' sizes

    def require_root(self, what: str) -> None:
        if self.euid != 0:
            raise ThinpoolError(f"{what} changes disks and needs root", fix="run it with sudo")


def system_context(*, json: bool = False) -> Context:
    """The real machine: the only place outside tests where a SystemRunner is made."""
    return Context(runner=SystemRunner(), json=json)
