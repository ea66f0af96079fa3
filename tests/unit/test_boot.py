"""install-units writes units systemd accepts; activate picks thinpool's volumes and waits for their nodes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from thinpool.app import boot
from thinpool.core.lvm import commands
from thinpool.core.model import LogicalVolume, Observed, VolumeGroup
from thinpool.core.units import GiB
from thinpool.testing import ScriptedRunner


def test_installed_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (python -m thinpool.rehearse.deps --install)")
    thinpool = tmp_path / "bin/thinpool"
    thinpool.parent.mkdir()
    thinpool.write_text("#!/bin/sh\n")
    thinpool.chmod(0o755)
    written = boot.install_units(tmp_path, str(thinpool), metrics=True, maintain_every="90s")
    assert [path.name for path in written] == [boot.ACTIVATE_UNIT, *boot.MAINTAIN_UNITS, *boot.METRICS_UNITS]
    timer = (tmp_path / "etc/systemd/system/thinpool-maintain.timer").read_text()
    assert "OnUnitActiveSec=90s" in timer and "5min" not in timer
    assert f"ExecStart={thinpool} maintain\n" in (tmp_path / "etc/systemd/system/thinpool-maintain.service").read_text()
    activate = written[0].read_text()
    assert (
        f"ExecStart={thinpool} activate --wait 90" in activate
        and "Before=docker.service containerd.service" in activate
    )
    done = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, written)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(activate.replace("Type=oneshot", "Type=oneshot\nExecStartt=/bin/true"))
    done = subprocess.run([analyze, "verify", "--man=no", str(broken)], capture_output=True, text=True, check=False)
    assert "Unknown key" in done.stderr  # the check does catch a bad unit


def _lv(name: str, **fields: object) -> LogicalVolume:
    return LogicalVolume(name, "docker", "-wi-------", GiB, **fields)  # type: ignore[arg-type]


def test_activate_runs_what_is_missing_and_waits_for_nodes(tmp_path: Path) -> None:
    pool = _lv("thinpool", segtype="thin-pool", tags=("thinpool.managed",), seg_monitor="not monitored")
    volume = _lv("docker-data", segtype="thin", pool_lv="thinpool", tags=("thinpool.managed",))
    foreign = _lv("other", segtype="thin", pool_lv="thinpool")
    observed = Observed(vgs={"docker": VolumeGroup("docker", 4 * 1024**2, 1000, 10, 1, lvs=(volume, foreign, pool))})
    runner = ScriptedRunner()
    for argv in (
        ("lvchange", "--activate", "y", "docker/thinpool"),
        ("lvchange", "--monitor", "y", "docker/thinpool"),
        ("lvchange", "--activate", "y", "docker/docker-data"),
    ):
        runner.expect(argv)
    (tmp_path / "mapper").mkdir()
    (tmp_path / "mapper/docker-thinpool").touch()
    done = boot.activate_volumes(runner, observed, [], wait=0.3, dev=tmp_path)
    assert runner.exhausted and done.volumes == ["docker/thinpool", "docker/docker-data"]
    assert done.missing == [str(tmp_path / "mapper/docker-docker--data")]  # never appeared: reported
    with pytest.raises(Exception, match="no thin pool or thin volume docker/nope"):
        boot.activate_volumes(ScriptedRunner(), observed, ["docker/nope"], wait=0)


@pytest.mark.parametrize("span", ["", "0", "0s", "5 min", "5minutes;rm", "-1h", "1h\nExecStart=/bin/sh", "5min\n"])
def test_a_maintain_interval_systemd_cannot_read_is_refused_before_anything_is_written(
    tmp_path: Path, span: str
) -> None:
    from thinpool.app.context import Context

    with pytest.raises(Exception, match="not a time span") as refused:
        boot.install(Context(ScriptedRunner(), root=tmp_path), "/bin/thinpool", False, tmp_path, span)
    assert "5min" in str(refused.value) or "1h" in str(refused.value)
    assert not (tmp_path / "etc").exists()
    assert boot.check_interval("1h30min") == "1h30min" and boot.check_interval("90") == "90"


def test_install_on_a_running_system_enables_the_writer_and_retires_the_old_metrics_timer(tmp_path: Path) -> None:
    from thinpool.app.context import Context

    (tmp_path / "run/systemd/system").mkdir(parents=True)
    units = tmp_path / "etc/systemd/system"
    (units / "timers.target.wants").mkdir(parents=True)
    (units / "thinpool-metrics.timer").write_text("[Timer]\nOnUnitActiveSec=1min\n")
    (units / "timers.target.wants/thinpool-metrics.timer").symlink_to(units / "thinpool-metrics.timer")
    runner = ScriptedRunner()
    runner.expect(("systemctl", "disable", "--now", "thinpool-metrics.timer"))
    runner.expect(("systemctl", "daemon-reload"))
    enabled = (boot.ACTIVATE_UNIT, "thinpool-maintain.timer", "thinpool-metrics.service")
    runner.expect(("systemctl", "enable", *enabled))
    runner.expect(("systemctl", "restart", "thinpool-metrics.service"))  # a changed unit takes effect now
    done = boot.install(Context(runner, root=tmp_path), "/usr/bin/thinpool", True, Path("/"))
    assert runner.exhausted and done.enabled == list(enabled)
    assert done.removed == [units / "thinpool-metrics.timer"]
    assert not (units / "timers.target.wants/thinpool-metrics.timer").is_symlink()
    writer = (units / "thinpool-metrics.service").read_text()
    assert "Type=simple" in writer and "--every 1min docker/thinpool" in writer and "Restart=on-failure" in writer
    again = ScriptedRunner()  # a second install: nothing to retire, the same units enabled
    for argv in (
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", *enabled),
        ("systemctl", "restart", "thinpool-metrics.service"),
    ):
        again.expect(argv)
    assert boot.install(Context(again, root=tmp_path), "/usr/bin/thinpool", True, Path("/")).removed == []
    assert again.exhausted


REFUSED = "  Check of pool docker/thinpool failed (status:64). Manual repair required!\n"


@pytest.mark.parametrize("retried", [0, 64])
def test_a_pool_thin_check_refuses_is_tried_past_non_fatal_errors_once(tmp_path: Path, retried: int) -> None:
    """Leaked blocks (a power cut in the middle of an fstrim) make lvm's default thin_check refuse the pool at
    every boot; activate tries once more past non-fatal errors. A fatal error still refuses it, in lvm's words."""
    pool = _lv("thinpool", segtype="thin-pool", tags=("thinpool.managed",), seg_monitor="monitored")
    observed = Observed(vgs={"docker": VolumeGroup("docker", 4 * 1024**2, 1000, 10, 1, lvs=(pool,))})
    runner = ScriptedRunner()
    runner.expect(("lvchange", "--activate", "y", "docker/thinpool"), returncode=5, stderr=REFUSED)
    past = ("lvchange", "--activate", "y", "--config", commands.PAST_NON_FATAL_CHECK, "docker/thinpool")
    runner.expect(past, returncode=retried, stderr=REFUSED if retried else "")
    (tmp_path / "mapper").mkdir()
    (tmp_path / "mapper/docker-thinpool").touch()
    if retried:
        with pytest.raises(Exception, match="Manual repair required") as refused:
            boot.activate_volumes(runner, observed, [], wait=0, dev=tmp_path)
        assert "read lvm's message above" in str(refused.value.fix)  # type: ignore[attr-defined]
    else:
        done = boot.activate_volumes(runner, observed, [], wait=0, dev=tmp_path)
        assert done.commands[-1] == list(past) and not done.missing
        (warning,) = done.warnings
        assert "non-fatal errors" in warning and "thinpool repair docker/thinpool --yes" in warning
    assert runner.exhausted
