"""One change at a time: the host lock every command that changes the system holds for its whole run.

One lock for the host, not one per VG: the engines' files (daemon.json, config.toml, storage.conf, /etc/fstab,
the units) are shared by every pool's engine, so two pools' applies would still write the same files. The lock
is an flock on a file under /run/lock, which the kernel drops when its holder dies (a SIGKILL, a power cut).
Its holder writes its PID and command into it, so that whoever waits can say who holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from thinpool.errors import ThinpoolError

LOCK = "/run/lock/thinpool/changes.lock"
DEFAULT_WAIT = 30.0  # seconds a command waits for the holder before it is refused (--lock-wait)


class HostBusy(ThinpoolError):
    """Another thinpool command is changing this host, and did not finish within the wait."""


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str

    def line(self) -> str:
        return f"{self.pid} {self.command}\n"

    def __str__(self) -> str:
        return f"thinpool {self.command} (PID {self.pid})"


def holder_from(text: str) -> Holder | None:
    """The holder a lock file names; None when it names none (its holder is still writing it, or it is old)."""
    pid, _, command = text.strip().partition(" ")
    return Holder(int(pid), command) if pid.isascii() and pid.isdigit() and command else None


def _named(holder: Holder | None) -> str:
    return str(holder) if holder else "another thinpool command"


def waiting_message(holder: Holder | None, wait: float) -> str:
    return f"thinpool: {_named(holder)} is changing this host; waiting up to {wait:g} s for it to finish"


def busy(holder: Holder | None, wait: float) -> HostBusy:
    waited = f" (waited {wait:g} s)" if wait else ""
    return HostBusy(
        f"{_named(holder)} is changing this host{waited}: one thinpool command changes it at a time",
        fix="wait for it to finish and run this again, or pass --lock-wait SECONDS to wait longer "
        "(ps -p PID shows whether it still runs)",
    )
