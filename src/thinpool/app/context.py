"""The one object a use case needs from its caller: the runner, the root folder, output mode, time to wait."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
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

    def changing(self, command: str, wait: float) -> AbstractContextManager[None]:
        """Hold the host's change lock (core.changes) for ``command``'s whole run, waiting up to ``wait``
        seconds for another holder; then HostBusy names it."""
        from thinpool.core import changes
        from thinpool.system import files, observe

        record = changes.Holder(os.getpid(), command).line()
        lock = observe.under(self.root, changes.LOCK)
        return files.waited_lock(lock, record, wait=wait, busy=_Busy(wait), sleep=self.sleep)


@dataclass(frozen=True)
class _Busy:
    """How a command waiting for the change lock says so (on stderr, once), and the error when it gives up."""

    wait: float

    def waiting(self, holder: str) -> None:
        import logging  # only a command that waits logs; status and the others never import it

        from thinpool.core import changes

        if self.wait:
            message = changes.waiting_message(changes.holder_from(holder), self.wait)
            logging.getLogger("thinpool.changes").warning(message)

    def refused(self, holder: str) -> Exception:
        from thinpool.core import changes

        return changes.busy(changes.holder_from(holder), self.wait)


def system_context(*, json: bool = False) -> Context:
    """The real machine: the only place outside tests where a SystemRunner is made."""
    return Context(runner=SystemRunner(), json=json)
