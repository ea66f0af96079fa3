"""The one door to subprocesses: argv lists only, LC_ALL=C, a timeout, every command logged.

Tests inject a ``thinpool.testing.ScriptedRunner`` that replays recorded outputs and fails on any
command it was not told about; nothing in thinpool calls ``subprocess`` elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from thinpool.errors import CommandFailed, CommandNotRun, CommandTimedOut, MissingTool

DEFAULT_TIMEOUT = 300
# Debian's package for a program whose package is not named after it.
PACKAGE_OF = {
    "cryptsetup": "cryptsetup-bin",
    "systemd-cryptenroll": "systemd-cryptsetup",
    "thin_check": "thin-provisioning-tools",
    "mkfs.xfs": "xfsprogs",
}


def _log(message: str, *args: object) -> None:
    """Each command at INFO, to the logging that ``thinpool -v`` (or a program using thinpool) set up. Until
    something imports logging nothing can have set it up, and the record would be dropped: logging is not
    imported only to drop it (with what it imports, a tenth of status's start-up under emulation)."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(__name__).info(message, *args)


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def raise_for_status(self) -> Completed:
        if not self.ok:
            detail = (self.stderr or self.stdout).strip()
            raise CommandFailed(
                f"{' '.join(self.argv)} exited {self.returncode}" + (f": {detail}" if detail else ""),
                fix=fix_for(self.argv),
            )
        return self


_LVM = {"lvm", "pvcreate", "pvremove", "pvs", "vgcreate", "vgextend", "vgremove", "vgs", "lvcreate", "lvchange",
        "lvextend", "lvremove", "lvconvert", "lvs", "dmsetup"}  # fmt: skip
_APT = {"apt-get", "apt-cache", "dpkg", "dpkg-deb"}


def fix_for(argv: Sequence[str]) -> str:
    """What to do after ``argv`` failed, in the words of the program that failed."""
    program = os.path.basename(argv[0]) if argv else ""
    if program in _LVM:
        return "read lvm's message above; nothing after this step was run"
    if program in _APT:
        return "read apt's message above: run 'apt-get update', check the archive is reachable, then retry"
    if program == "systemctl":
        return "read systemd's message above ('systemctl status' and 'journalctl -xe' tell more), then retry"
    return f"read {program}'s message above, then retry"


def _timeout_fix(argv: Sequence[str]) -> str:
    program = os.path.basename(argv[0]) if argv else ""
    if program in _LVM:
        return (
            "another lvm command may hold the VG's lock, or a device stopped answering: check 'ps -ef | grep lvm' "
            "and 'dmesg', then run thinpool again (it picks up where it stopped)"
        )
    return f"check why {program} hangs (a lock, the network, a device), then run thinpool again"


class Runner(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: int | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Completed: ...


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    # lvm warns about every inherited descriptor unless told not to.
    env["LVM_SUPPRESS_FD_WARNINGS"] = "1"
    return env


@dataclass
class SystemRunner:
    """Runs real commands. ``timeout`` bounds each one; the log names every argv and its result."""

    timeout: int = DEFAULT_TIMEOUT
    history: list[Completed] = field(default_factory=list)

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: int | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Completed:
        argv = tuple(argv)
        if shutil.which(argv[0]) is None:
            package = PACKAGE_OF.get(argv[0])
            fix = f"apt install {package}" if package else f"install the package that provides {argv[0]}"
            raise MissingTool(f"{argv[0]} is not installed", fix=fix)
        started = time.monotonic()
        _log("run: %s", " ".join(argv))
        limit = timeout or self.timeout
        try:
            proc = subprocess.run(
                argv,
                input=input,
                # No input: stdin is /dev/null, so a program that prompts gets EOF and fails
                # instead of waiting for an answer until the timeout.
                stdin=subprocess.DEVNULL if input is None else None,
                capture_output=True,
                text=True,
                env={**_environment(), **(env or {})},
                timeout=limit,
                check=False,
                cwd=cwd,
            )
        except subprocess.TimeoutExpired as error:
            _log("timed out after %ss: %s", limit, argv[0])
            raise CommandTimedOut(
                f"{' '.join(argv)} did not finish within {limit}s and was killed", fix=_timeout_fix(argv)
            ) from error
        except OSError as error:
            raise CommandNotRun(
                f"{' '.join(argv)} could not be started: {error.strerror or error}",
                fix=f"check that {argv[0]} is an executable program for this machine",
            ) from error
        result = Completed(argv, proc.returncode, proc.stdout, proc.stderr)
        _log("exit %d after %.2fs: %s", proc.returncode, time.monotonic() - started, argv[0])
        self.history.append(result)
        return result.raise_for_status() if check else result
