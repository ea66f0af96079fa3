import json
from pathlib import Path

import pytest

from thinpool.app import executor
from thinpool.core import planner
from thinpool.core.lvm import commands
from thinpool.core.model import Observed, text_digest, virtual_disks
from thinpool.core.plan import ABSENT, Action, ActionKind, Plan, Target
from thinpool.core.spec import PoolSpec
from thinpool.core.units import GiB, MiB
from thinpool.testing import ScriptedRunner

from .builders import laid_out, lvm_report


def _report(kind: str, rows: list[dict[str, str]]) -> str:
    return json.dumps({"report": [{kind: rows}]})


def _plan() -> Plan:
    return planner.plan(PoolSpec(devices=("/dev/vda",)), virtual_disks([4 * GiB], ["/dev/vda"]))


def _lvm_state(runner: ScriptedRunner, *, pv: bool, vg: bool, pool: dict[str, str] | None) -> None:
    pvs = [{"pv_name": "/dev/vda", "vg_name": "docker" if vg else ""}] if pv else []
    vg_row = {
        "vg_name": "docker",
        "vg_extent_size": str(4 * MiB),
        "vg_extent_count": "1023",
        "vg_free_count": "167",
        "vg_seqno": "5",
    }
    runner.expect(
        commands.lvm_report(), stdout=lvm_report(pvs=pvs, lvs=[pool] if pool else [], vgs=[vg_row] if vg else [])
    )


def _pool_row(plan: Plan, monitor: str) -> dict[str, str]:
    layout = laid_out(plan)
    return {
        "lv_name": "thinpool",
        "vg_name": "docker",
        "segtype": "thin-pool",
        "lv_size": str(layout.data_size),
        "lv_metadata_size": str(layout.metadata_size),
        "chunk_size": str(layout.chunk_size),
        "seg_monitor": monitor,
        "lv_profile": "thinpool-docker-thinpool",
    }


def _script_until_pool(runner: ScriptedRunner, plan: Plan, pool: dict[str, str]) -> None:
    runner.expect(("pvcreate", "/dev/vda"))
    _lvm_state(runner, pv=True, vg=False, pool=None)
    runner.expect(plan.actions[1].argv)
    _lvm_state(runner, pv=True, vg=True, pool=None)
    runner.expect(plan.actions[3].argv)
    _lvm_state(runner, pv=True, vg=True, pool=pool)


def test_apply_runs_every_action_and_verifies_it(tmp_path: Path) -> None:
    plan = _plan()
    runner = ScriptedRunner()
    _script_until_pool(runner, plan, _pool_row(plan, "not monitored"))
    runner.expect(("lvchange", "--monitor", "y", "docker/thinpool"))
    _lvm_state(runner, pv=True, vg=True, pool=_pool_row(plan, "monitored"))
    steps: list[str] = []
    result = executor.apply(plan, runner, root=tmp_path, progress=lambda i, n, a, s: steps.append(f"{i}/{n} {s}"))
    assert result.ok, [step.error for step in result.steps]
    assert runner.exhausted
    profile = tmp_path / "etc/lvm/profile/thinpool-docker-thinpool.profile"
    assert "thin_pool_autoextend_threshold = 80" in profile.read_text()
    assert steps[-1] == "5/5 done"
    assert result.to_dict()["changed"] is True


def test_apply_stops_at_the_first_failure_and_reports_the_rest_not_run(tmp_path: Path) -> None:
    plan = _plan()
    runner = ScriptedRunner()
    runner.expect(("pvcreate", "/dev/vda"), returncode=5, stderr="  No device found for /dev/vda.\n")
    result = executor.apply(plan, runner, root=tmp_path)
    assert not result.ok
    assert [step.status for step in result.steps] == ["failed", "not-run", "not-run", "not-run", "not-run"]
    assert "No device found" in result.steps[0].error
    assert not (tmp_path / "etc").exists()


def test_apply_fails_when_lvm_made_something_else(tmp_path: Path) -> None:
    plan = _plan()
    runner = ScriptedRunner()
    _script_until_pool(runner, plan, {**_pool_row(plan, "monitored"), "chunk_size": "65536"})
    result = executor.apply(plan, runner, root=tmp_path)
    assert result.steps[3].status == "failed" and "planned" in result.steps[3].error
    assert result.steps[4].status == "not-run"


def test_apply_fails_when_monitoring_did_not_take(tmp_path: Path) -> None:
    plan = _plan()
    runner = ScriptedRunner()
    _script_until_pool(runner, plan, _pool_row(plan, "not monitored"))
    runner.expect(("lvchange", "--monitor", "y", "docker/thinpool"))
    _lvm_state(runner, pv=True, vg=True, pool=_pool_row(plan, "not monitored"))
    result = executor.apply(plan, runner, root=tmp_path)
    assert result.steps[4].status == "failed" and "seg_monitor" in result.steps[4].error


def test_saved_plan_refused_when_the_system_changed() -> None:
    plan = _plan()
    executor.check_fresh(plan, virtual_disks([4 * GiB], ["/dev/vda"]))  # unchanged: accepted
    with pytest.raises(executor.StalePlan, match="devices"):
        executor.check_fresh(plan, virtual_disks([8 * GiB], ["/dev/vda"]))
    with pytest.raises(executor.StalePlan):
        executor.check_fresh(plan, Observed())


def test_recorded_lvm_error_surfaces_verbatim(recorded: Path, tmp_path: Path) -> None:
    message, _, code = (recorded / "lvcreate-no-room-for-spare.txt").read_text().rpartition("rc=")
    plan = _plan()
    runner = ScriptedRunner()
    runner.expect(("pvcreate", "/dev/vda"), returncode=int(code), stderr=message)
    result = executor.apply(plan, runner, root=tmp_path)
    assert "1016 extents needed, but only 1006 available" in result.steps[0].error
    assert "exited 5" in result.steps[0].error


def test_scripted_runner_rejects_unexpected_commands() -> None:
    runner = ScriptedRunner()
    runner.expect(("lvs",))
    with pytest.raises(AssertionError, match="expected"):
        runner.run(("vgs",))


def test_config_write_keeps_a_timestamped_backup_and_the_files_mode(tmp_path: Path) -> None:
    config = tmp_path / "etc/docker/daemon.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"log-driver": "journald"}\n')
    config.chmod(0o600)
    action = Action(
        "write",
        ActionKind.ENGINE_CONFIG,
        Target(name="docker daemon.json"),
        "test",
        path="/etc/docker/daemon.json",
        content='{"storage-driver": "overlay2"}\n',
    )
    plan = Plan("docker", "thinpool", (action,), None, {})
    assert executor.apply(plan, ScriptedRunner(), root=tmp_path).ok
    assert config.read_text() == action.content and config.stat().st_mode & 0o777 == 0o600
    (backup,) = config.parent.glob("daemon.json.thinpool-*.bak")
    assert backup.read_text() == '{"log-driver": "journald"}\n'
    assert executor.apply(plan, ScriptedRunner(), root=tmp_path).ok  # same content again: no second backup
    assert len(list(config.parent.glob("*.bak"))) == 1
    assert not list(config.parent.glob(".*tmp"))


def _linked_daemon_json(tmp_path: Path) -> tuple[Path, Path]:
    real = tmp_path / "srv/daemon.json"
    real.parent.mkdir()
    real.write_text('{"log-driver": "journald"}\n')
    link = tmp_path / "etc/docker/daemon.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    return real, link


def _daemon_json_write(expect: str = "", through_link: str = "") -> Action:
    return Action(
        "write",
        ActionKind.ENGINE_CONFIG,
        Target(name="docker daemon.json"),
        "test",
        path="/etc/docker/daemon.json",
        content='{"storage-driver": "overlay2"}\n',
        expect=expect,
        through_link=through_link,
    )


def test_a_link_the_plan_allowed_keeps_its_link_and_the_step_says_so(tmp_path: Path) -> None:
    real, link = _linked_daemon_json(tmp_path)
    action = _daemon_json_write(through_link=str(real))
    result = executor.apply(Plan("docker", "thinpool", (action,), None, {}), ScriptedRunner(), root=tmp_path)
    assert result.ok and link.is_symlink() and real.read_text() == action.content
    assert "is a link: wrote its target" in result.steps[0].note
    assert [path.name for path in real.parent.glob("*.bak")] != []


@pytest.mark.parametrize("through_link", ["", "/elsewhere/daemon.json"])
def test_a_link_the_plan_did_not_allow_is_refused_and_nothing_is_written(tmp_path: Path, through_link: str) -> None:
    real, link = _linked_daemon_json(tmp_path)
    action = _daemon_json_write(through_link=through_link)
    result = executor.apply(Plan("docker", "thinpool", (action,), None, {}), ScriptedRunner(), root=tmp_path)
    assert not result.ok and "symbolic link" in result.steps[0].error and "fix:" in result.steps[0].error
    assert link.is_symlink() and real.read_text() == '{"log-driver": "journald"}\n'
    assert sorted(path.name for path in real.parent.iterdir()) == ["daemon.json"]


def test_a_file_edited_after_the_plan_was_made_is_refused_and_the_edit_is_kept(tmp_path: Path) -> None:
    config = tmp_path / "etc/docker/daemon.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"log-driver": "journald"}\n')
    action = _daemon_json_write(expect=f"sha256:{text_digest(config.read_text())}")
    config.write_text('{"log-driver": "local"}\n')  # the operator's edit while apply waited for "yes"
    result = executor.apply(Plan("docker", "thinpool", (action,), None, {}), ScriptedRunner(), root=tmp_path)
    assert not result.ok and "changed after the plan was made" in result.steps[0].error
    assert config.read_text() == '{"log-driver": "local"}\n'
    assert sorted(path.name for path in config.parent.iterdir()) == ["daemon.json"]


def test_a_file_made_after_the_plan_saw_none_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "etc/docker/daemon.json"
    config.parent.mkdir(parents=True)
    action = _daemon_json_write(expect=ABSENT)
    config.write_text("{}\n")
    result = executor.apply(Plan("docker", "thinpool", (action,), None, {}), ScriptedRunner(), root=tmp_path)
    assert not result.ok and config.read_text() == "{}\n"
    unchanged = _daemon_json_write(expect=f"sha256:{text_digest(config.read_text())}")
    assert executor.apply(Plan("docker", "thinpool", (unchanged,), None, {}), ScriptedRunner(), root=tmp_path).ok
