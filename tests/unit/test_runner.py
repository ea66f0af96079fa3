"""The subprocess door: every way a command can fail is a ThinpoolError naming the command and a fitting fix."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import thinpool
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


def test_every_command_is_logged_once_logging_is_set_up(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="thinpool.system.runner"):
        SystemRunner().run(["true"])
    assert caplog.records[0].getMessage() == "run: true"
    assert caplog.records[1].getMessage().startswith("exit 0 after ")


def test_status_does_not_import_logging_to_drop_its_records() -> None:
    """Unset up, logging drops INFO records: importing it (and traceback, textwrap...) only for that is not paid."""
    code = (
        "import sys; from thinpool.system.runner import SystemRunner; SystemRunner().run(['true']); "
        "from thinpool.cli import build_parser; build_parser('status').parse_args(['status']); "
        "print(sorted({'logging', 'traceback'} & set(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(thinpool.__file__).parents[1])}
    baseline = "import sys; print(sorted({'logging', 'traceback'} & set(sys.modules)))"
    if subprocess.run([sys.executable, "-c", baseline], capture_output=True, text=True, check=True).stdout != "[]\n":
        pytest.skip("this interpreter's site already imports logging")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]", done.stderr
