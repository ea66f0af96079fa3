"""One change at a time: the host's change lock (thinpool.core.changes) around every command that changes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from thinpool.app.context import Context
from thinpool.cli import EXIT_ERROR, EXIT_OK, main
from thinpool.core import changes
from thinpool.core.lvm import commands
from thinpool.testing import ScriptedRunner

from .builders import kernel_pool_status, status_report

CHANGING = [
    ["apply", "--yes", "/dev/vdb"],
    ["grow", "--yes", "/dev/vdb"],
    ["destroy", "--yes"],
    ["engine", "configure", "--yes", "--engine", "docker-overlay2-thin"],
    ["backup"],
    ["repair", "--yes"],
    ["activate"],
    ["migrate", "--to", "docker-overlay2-thin", "--step", "export", "--yes"],
]


def _context(root: Path, runner: ScriptedRunner | None = None) -> Context:
    return Context(runner=runner or ScriptedRunner(), root=root, euid=0)


@pytest.mark.parametrize("argv", CHANGING, ids=lambda argv: " ".join(argv[:2]))
def test_a_command_that_changes_the_host_waits_then_is_refused_naming_the_holder(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = ScriptedRunner()  # nothing may run: the lock comes before the state is read
    with _context(tmp_path).changing("grow", 0):
        code = main([*argv, "--lock-wait", "0.3", "--json"], context=_context(tmp_path, runner))
    assert code == EXIT_ERROR and runner.exhausted and not runner.history
    refused = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert refused["error"] == "HostBusy", refused
    assert refused["problem"].startswith(f"thinpool grow (PID {os.getpid()}) is changing this host (waited 0.3 s)")
    assert "--lock-wait" in refused["fix"]


def test_the_holder_writes_who_it_is_and_a_waiter_says_whom_it_waits_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _context(tmp_path).changing("repair", 0):
        text = (tmp_path / changes.LOCK.lstrip("/")).read_text()
        assert changes.holder_from(text) == changes.Holder(os.getpid(), "repair")
        with pytest.raises(changes.HostBusy), _context(tmp_path).changing("apply", 0.2):
            pass
    assert f"thinpool repair (PID {os.getpid()}) is changing this host; waiting up to 0.2 s" in caplog.text
    with _context(tmp_path).changing("apply", 0):  # released: taken at once
        pass


def test_read_only_commands_never_wait(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = ScriptedRunner()
    runner.expect(commands.status_report("docker"), stdout=status_report())
    runner.expect(commands.status_report("docker"), stdout=status_report())
    runner.expect(commands.dmsetup_status("docker-thinpool-tpool"), stdout=kernel_pool_status(0))
    with _context(tmp_path).changing("grow", 0):
        assert main(["status", "--json"], context=_context(tmp_path, runner)) == EXIT_OK
        assert main(["doctor", "--json"], context=_context(tmp_path, runner)) in (EXIT_OK, 3)
        assert main(["plan", "--disk-size", "10GiB", "--json"], context=_context(tmp_path)) == EXIT_OK
    assert runner.exhausted


def test_maintain_skips_a_busy_host_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = ScriptedRunner()
    with _context(tmp_path).changing("grow", 0):
        assert main(["maintain", "--json"], context=_context(tmp_path, runner)) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "thinpool-maintenance" and report["ok"] and report["pools"] == []
    assert report["skipped"].startswith(f"thinpool grow (PID {os.getpid()}) is changing this host")
    assert not runner.history  # not even the pools were listed


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from thinpool.app.context import Context
    from thinpool.testing import ScriptedRunner
    with Context(runner=ScriptedRunner(), root=Path(sys.argv[1])).changing("grow", 0):
        print("held", flush=True)
        time.sleep(600)
    """
)


def test_the_kernel_drops_the_lock_when_its_holder_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        busy = pytest.raises(changes.HostBusy, match=f"thinpool grow \\(PID {holder.pid}\\)")
        with busy, _context(tmp_path).changing("apply", 0):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with _context(tmp_path).changing("apply", 0):  # its file still names the dead holder; the lock is free
            assert changes.holder_from((tmp_path / changes.LOCK.lstrip("/")).read_text()).pid == os.getpid()  # type: ignore[union-attr]
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_install_units_waits_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _context(tmp_path).changing("grow", 0):
        assert main(["install-units", "--lock-wait", "0"], context=_context(tmp_path)) == EXIT_ERROR
    assert "is changing this host" in capsys.readouterr().err
    assert not (tmp_path / "etc/systemd/system").exists()


def test_a_lock_wait_must_be_a_finite_number_of_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit):
            main(["grow", "/dev/vdb", "--lock-wait", bad])
        assert "--lock-wait" in capsys.readouterr().err


def test_a_link_planted_as_the_lock_is_refused_and_its_target_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = tmp_path / changes.LOCK.lstrip("/")
    lock.parent.mkdir(parents=True)
    target = tmp_path / "etc-passwd"
    target.write_text("root:x:0:0\n")
    lock.symlink_to(target)
    assert main(["grow", "--yes", "/dev/vdb"], context=_context(tmp_path)) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"cannot open the lock {lock}" in err and f"fix: remove {lock}" in err
    assert target.read_text() == "root:x:0:0\n"


def test_a_waiter_names_a_holder_that_writes_who_it_is_just_after_taking_the_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The race a VM test found: the waiter read the file between the holder's flock and its record."""
    import fcntl
    import threading

    lock = tmp_path / changes.LOCK.lstrip("/")
    lock.parent.mkdir(parents=True)
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # held, nothing written yet
    late = threading.Timer(0.3, os.pwrite, (descriptor, changes.Holder(4321, "grow").line().encode(), 0))
    late.start()
    try:
        with (
            pytest.raises(changes.HostBusy, match=r"thinpool grow \(PID 4321\)"),
            _context(tmp_path).changing("apply", 0.6),
        ):
            pass
    finally:
        late.join()
        os.close(descriptor)
    assert "thinpool grow (PID 4321) is changing this host; waiting up to 0.6 s" in caplog.text
    assert "another thinpool command" not in caplog.text
