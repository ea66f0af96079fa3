"""The subprocess door: every way a command can fail is a ThinpoolError naming the command and a fitting fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinpool.errors import CommandFailed, CommandNotRun, CommandTimedOut, MissingTool
from thinpool.system.runner import SystemRunner, fix_for


def test_a_command_past_its_timeout_is_killed_and_named() -> None:
    with pytest.raises(CommandTimedOut, match=r"sleep 5 did not finish within 1s") as failure:
        SystemRunner().run(("sleep", "5"), timeout=1)
    assert "run thinpool again" in failure.value.fix


def test_an_lvm_command_that_hangs_points_at_the_lock(tmp_path: Path) -> None:
    hanging = tmp_path / "lvs"
    hanging.write_text("#!/bin/sh\nsleep 5\n")
    hanging.chmod(0o755)
    with pytest.raises(CommandTimedOut) as failure:
        SystemRunner().run((str(hanging),), timeout=1)
    assert "hold the VG's lock" in failure.value.fix


def test_a_program_that_cannot_start_is_a_typed_failure(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_bytes(b"\x7fELF not really")
    broken.chmod(0o755)
    with pytest.raises(CommandNotRun, match="could not be started"):
        SystemRunner().run((str(broken),))


def test_missing_program() -> None:
    with pytest.raises(MissingTool, match="is not installed"):
        SystemRunner().run(("thinpool-no-such-program",))


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("lvcreate", "x"), "lvm's message"),
        (("apt-get", "install", "x"), "apt-get update"),
        (("systemctl", "enable", "x"), "journalctl"),
        (("mkfs.xfs", "/dev/x"), "mkfs.xfs's message"),
    ],
)
def test_a_failed_command_gets_the_fix_of_its_program(argv: tuple[str, ...], words: str) -> None:
    with pytest.raises(CommandFailed) as failure:
        SystemRunner().run(("bash", "-c", "echo nope >&2; exit 3"))
    assert "exited 3: nope" in failure.value.problem
    assert words in fix_for(argv)
