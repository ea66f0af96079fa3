"""The CLI's disk commands end to end without the VM: a Context with a scripted runner and a temporary root.

Each test lists the exact commands thinpool runs and lvm's answers (recorded lvm 2.03.16 shapes),
then checks what the command printed, wrote and returned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thinpool.app.context import Context
from thinpool.cli import EXIT_ERROR, EXIT_OK, main
from thinpool.core import boot_check
from thinpool.core.lvm import commands
from thinpool.core.plan import Plan
from thinpool.core.programs import argv as programs
from thinpool.core.units import GiB, MiB
from thinpool.errors import CommandTimedOut
from thinpool.testing import ScriptedRunner

from .builders import kernel_pool_status, lvm_report, status_report

EXTENT = 4 * MiB
DEVICE = "/dev/vdc"  # the recorded blank disk (1 GiB)


def _report(kind: str, rows: list[dict[str, str]]) -> str:
    return json.dumps({"report": [{kind: rows}]})


class Machine:
    """What lvm reports, kept as rows so each step's verification sees the state the step made."""

    def __init__(self, runner: ScriptedRunner) -> None:
        self.runner = runner
        self.pvs: list[dict[str, str]] = []
        self.vgs: list[dict[str, str]] = []
        self.lvs: list[dict[str, str]] = []

    def reports(self) -> None:
        self.runner.expect(commands.lvm_report(), stdout=lvm_report(pvs=self.pvs, lvs=self.lvs, vgs=self.vgs))

    def observe(self, recorded: Path, devices: tuple[str, ...] = (DEVICE,), *, lvm_local: bool = True) -> None:
        """What plan and apply read (``lvm_local``: and the thin_check options; grow does not read them)."""
        self.reports()
        for device in devices:
            self.runner.expect(programs.lsblk(device), stdout=(recorded / "lsblk-blank-disk.json").read_text())
            self.runner.expect(programs.wipefs_probe(device), stdout="")
        self.runner.expect(commands.dmsetup_info(), stdout="No devices found\n")
        if lvm_local:
            self.runner.expect(commands.lvmconfig_thin_check_options(), stdout='thin_check_options=["-q"]\n')

    def vg(self, extents: int, free: int) -> dict[str, str]:
        return {
            "vg_name": "docker",
            "vg_uuid": "u",
            "vg_extent_size": str(EXTENT),
            "vg_extent_count": str(extents),
            "vg_free_count": str(free),
            "vg_seqno": "3",
        }

    def pool(self, data: int, metadata: int, chunk: int, monitor: str) -> dict[str, str]:
        return {
            "lv_name": "thinpool",
            "vg_name": "docker",
            "segtype": "thin-pool",
            "lv_attr": "twi-a-tz--",
            "lv_size": str(data),
            "lv_metadata_size": str(metadata),
            "chunk_size": str(chunk),
            "seg_monitor": monitor,
            "lv_profile": "thinpool-docker-thinpool",
            "lv_active": "active",
            "lv_tags": commands.MANAGED_TAG,
        }


def _write_profile(root: Path) -> Path:
    """The pool's autoextend profile, as apply writes it."""
    profile = root / "etc/lvm/profile/thinpool-docker-thinpool.profile"
    profile.parent.mkdir(parents=True, exist_ok=True)
    profile.write_text(commands.profile_content("docker", "thinpool", 80, 20))
    return profile


def _context(runner: ScriptedRunner, root: Path) -> Context:
    return Context(runner=runner, root=root, euid=0, sleep=lambda _: None)


def _planned(recorded: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    """The plan apply will make, as `thinpool plan --json` prints it."""
    runner = ScriptedRunner()
    Machine(runner).observe(recorded)
    assert main(["plan", DEVICE, "--json"], context=_context(runner, root)) == EXIT_OK
    assert runner.exhausted
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_apply_creates_the_pool_step_by_step_and_verifies_each(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _planned(recorded, tmp_path, capsys)
    actions, layout = plan["actions"], plan["layout"]
    assert isinstance(actions, list) and isinstance(layout, dict)
    runner = ScriptedRunner()
    machine = Machine(runner)
    machine.observe(recorded)
    runner.expect(("pvcreate", DEVICE))
    machine.pvs = [{"pv_name": DEVICE, "vg_name": "", "pv_attr": "---"}]
    machine.reports()
    runner.expect(tuple(actions[1]["argv"]))
    machine.pvs = [{"pv_name": DEVICE, "vg_name": "docker", "pv_attr": "a--"}]
    machine.vgs = [machine.vg(layout["free_extents"], layout["free_extents"])]
    machine.reports()
    runner.expect(tuple(actions[3]["argv"]))
    machine.lvs = [machine.pool(layout["data_size"], layout["metadata_size"], layout["chunk_size"], "not monitored")]
    machine.reports()
    runner.expect(("lvchange", "--monitor", "y", "docker/thinpool"))
    machine.lvs = [machine.pool(layout["data_size"], layout["metadata_size"], layout["chunk_size"], "monitored")]
    machine.reports()

    assert main(["apply", DEVICE, "--yes", "--json"], context=_context(runner, tmp_path)) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert runner.exhausted
    assert result["ok"] and result["changed"]
    assert [step["status"] for step in result["steps"]] == ["done"] * 6
    assert result["layout"] == layout
    profile = tmp_path / "etc/lvm/profile/thinpool-docker-thinpool.profile"
    assert "thin_pool_autoextend_threshold = 80" in profile.read_text()
    lvm_local = (tmp_path / "etc/lvm/lvmlocal.conf").read_text()
    assert 'thin_check_options = [ "-q", "--skip-mappings" ]' in lvm_local  # the boot's fast check


def test_a_command_that_hangs_is_a_failed_step_and_the_rest_is_reported_not_run(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class HangingPvcreate(ScriptedRunner):
        def run(self, argv, **kwargs):  # type: ignore[no-untyped-def]
            if argv[0] == "pvcreate":
                raise CommandTimedOut("pvcreate /dev/vdc did not finish within 300s and was killed", fix="check")
            return super().run(argv, **kwargs)

    runner = HangingPvcreate()
    Machine(runner).observe(recorded)
    assert main(["apply", DEVICE, "--yes"], context=_context(runner, tmp_path)) == EXIT_ERROR
    out = capsys.readouterr().out
    assert "failed   create physical-volume /dev/vdc" in out
    assert "did not finish within 300s" in out
    assert out.count("not-run") == 5
    assert "Apply FAILED: 0 of 6 changes made." in out
    assert not (tmp_path / "etc").exists()


def _existing_pool(machine: Machine, data: int, metadata: int, free: int) -> None:
    machine.pvs = [{"pv_name": "/dev/vda", "vg_name": "docker", "pv_attr": "a--"}]
    machine.vgs = [machine.vg(1023, free)]
    machine.lvs = [machine.pool(data, metadata, 512 * 1024, "monitored")]


def test_a_device_already_in_the_vg_is_not_probed_again(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Converging runs often: lvm's report already says /dev/vda is docker's, so lsblk and wipefs are not run
    for it; grow probes only the device it adds."""
    from thinpool.app import pool
    from thinpool.core.spec import PoolSpec

    _write_profile(tmp_path)
    lvm_local = tmp_path / "etc/lvm/lvmlocal.conf"
    lvm_local.write_text("local {\n}\n" + boot_check.block(("-q",)))  # as apply left it
    runner = ScriptedRunner()
    machine = Machine(runner)
    _existing_pool(machine, 2 * GiB, 8 * MiB, free=100)
    machine.reports()
    runner.expect(commands.dmsetup_info(), stdout="No devices found\n")
    runner.expect(commands.lvmconfig_thin_check_options(), stdout='thin_check_options=["-q","--skip-mappings"]\n')
    assert main(["apply", "/dev/vda", "--json"], context=_context(runner, tmp_path)) == EXIT_OK
    assert runner.exhausted  # the strict runner would have refused an lsblk or wipefs of /dev/vda
    converged = json.loads(capsys.readouterr().out)
    assert converged["ok"] is True and converged["changed"] is False

    growing = ScriptedRunner()
    machine = Machine(growing)
    _existing_pool(machine, 2 * GiB, 8 * MiB, free=100)
    machine.reports()
    growing.expect(programs.lsblk(DEVICE), stdout=(recorded / "lsblk-blank-disk.json").read_text())  # the new one only
    growing.expect(programs.wipefs_probe(DEVICE), stdout="")
    growing.expect(commands.dmsetup_info(), stdout="No devices found\n")
    plan = pool.plan_grow(_context(growing, tmp_path), PoolSpec(devices=("/dev/vda", DEVICE)))
    assert growing.exhausted and [action.argv[0] for action in plan.actions[:2]] == ["pvcreate", "vgextend"]


def _grown_to_the_new_disk(recorded: Path, tmp_path: Path) -> tuple[Plan, ScriptedRunner, Machine]:
    """grow's plan for DEVICE beside a 2 GiB pool, and a runner scripted through its pvcreate and vgextend
    (each checked with a report) and the report the metadata step reads first."""
    from thinpool.app import pool
    from thinpool.core.spec import PoolSpec

    planning = ScriptedRunner()
    _existing_pool(machine := Machine(planning), 2 * GiB, 8 * MiB, free=100)
    machine.observe(recorded, lvm_local=False)
    plan = pool.plan_grow(_context(planning, tmp_path), PoolSpec(devices=(DEVICE,)))
    assert plan.layout is not None
    runner = ScriptedRunner()
    _existing_pool(machine := Machine(runner), 2 * GiB, 8 * MiB, free=100)
    machine.observe(recorded, lvm_local=False)
    runner.expect(plan.actions[0].argv)
    machine.pvs.append({"pv_name": DEVICE, "vg_name": "", "pv_attr": "---"})
    machine.reports()
    runner.expect(plan.actions[1].argv)
    machine.pvs[-1] = {"pv_name": DEVICE, "vg_name": "docker", "pv_attr": "a--"}
    machine.vgs = [machine.vg(plan.layout.free_extents, plan.layout.free_extents)]
    machine.reports()
    machine.reports()  # each grow step first reads whether dmeventd got the pool there already
    return plan, runner, machine


def test_grow_adds_the_device_then_grows_metadata_and_data(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, runner, machine = _grown_to_the_new_disk(recorded, tmp_path)
    assert plan.layout is not None
    assert [str(action.kind) for action in plan.actions] == [
        "physical-volume",
        "volume-group",
        "pool-metadata",
        "pool-data",
    ]
    runner.expect(plan.actions[2].argv)
    machine.lvs = [machine.pool(2 * GiB, plan.layout.metadata_size, 512 * 1024, "monitored")]
    machine.reports()
    machine.reports()
    runner.expect(plan.actions[3].argv)
    machine.lvs = [machine.pool(plan.layout.data_size, plan.layout.metadata_size, 512 * 1024, "monitored")]
    machine.reports()

    assert main(["grow", DEVICE, "--json", "--yes"], context=_context(runner, tmp_path)) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert runner.exhausted
    assert result["ok"] and [step["status"] for step in result["steps"]] == ["done"] * 4
    assert result["layout"]["data_size"] > 2 * GiB


def test_grow_takes_a_pool_dmeventd_grew_first_as_grown(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """vgextend gives a full, monitored pool room: dmeventd may grow it before the data step (then lvextend is
    not run) or while it runs (lvextend to a size below the pool's fails; the pool is as planned: done)."""
    plan, runner, machine = _grown_to_the_new_disk(recorded, tmp_path)
    assert plan.layout is not None
    big = plan.layout.data_size + 32 * 4 * MiB
    runner.expect(plan.actions[2].argv, returncode=5, stderr="New size matches existing size")  # grown meanwhile
    machine.lvs = [machine.pool(2 * GiB, plan.layout.metadata_size, 512 * 1024, "monitored")]
    machine.reports()
    machine.lvs = [machine.pool(big, plan.layout.metadata_size, 512 * 1024, "monitored")]
    machine.reports()  # dmeventd got there before the data step: no lvextend
    assert main(["grow", DEVICE, "--json", "--yes"], context=_context(runner, tmp_path)) == EXIT_OK
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert runner.exhausted and [step["status"] for step in steps] == ["done"] * 4
    assert all("dmeventd's autoextend had already grown it" in step["note"] for step in steps[2:])


def test_destroy_is_refused_while_daemon_json_names_the_pool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon_json = tmp_path / "etc/docker/daemon.json"
    daemon_json.parent.mkdir(parents=True)
    daemon_json.write_text('{"storage-opts": ["dm.thinpooldev=/dev/mapper/docker-thinpool"]}\n')
    runner = ScriptedRunner()
    machine = Machine(runner)
    _existing_pool(machine, 2 * GiB, 8 * MiB, free=100)
    machine.reports()
    runner.expect(commands.dmsetup_info(), stdout="No devices found\n")
    assert main(["destroy", "--yes"], context=_context(runner, tmp_path)) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "/etc/docker/daemon.json still points at docker/thinpool (docker-thinpool)" in err
    assert "fix: reconfigure or stop the engine" in err
    assert runner.exhausted  # nothing but the reports ran


def test_destroy_removes_the_pool_the_vg_its_label_and_the_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = _write_profile(tmp_path)
    runner = ScriptedRunner()
    machine = Machine(runner)
    _existing_pool(machine, 2 * GiB, 8 * MiB, free=100)
    machine.reports()
    runner.expect(commands.dmsetup_info(), stdout="No devices found\n")
    runner.expect(commands.lvremove("docker", "thinpool"))
    machine.lvs = []
    machine.reports()
    runner.expect(commands.vgremove("docker"))
    machine.vgs, machine.pvs = [], [{"pv_name": "/dev/vda", "vg_name": "", "pv_attr": "---"}]
    machine.reports()
    runner.expect(commands.pvremove("/dev/vda"))
    machine.pvs = []
    machine.reports()
    assert main(["destroy", "--yes"], context=_context(runner, tmp_path)) == EXIT_OK
    out = capsys.readouterr().out
    assert runner.exhausted
    assert "Apply complete: 4 of 4 changes made." in out
    assert not profile.exists()


def test_status_reads_one_report_and_the_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_profile(tmp_path)
    runner = ScriptedRunner()
    runner.expect(commands.status_report("docker"), stdout=status_report())
    assert main(["status", "--json"], context=_context(runner, tmp_path)) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    assert runner.exhausted
    assert status["data_used"] == 3 * GiB // 2 and status["autoextend"] == {"threshold": 80, "percent": 20}
    assert status["autoextend_steps"] >= 1


def test_doctor_exits_critical_on_an_unmonitored_pool_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_profile(tmp_path)
    runner = ScriptedRunner()
    runner.expect(commands.status_report("docker"), stdout=status_report({"seg_monitor": "not monitored"}))
    runner.expect(commands.dmsetup_status("docker-thinpool-tpool"), stdout=kernel_pool_status(0))
    assert main(["doctor"], context=_context(runner, tmp_path)) == 4
    out = capsys.readouterr().out
    assert runner.exhausted  # no dockerd or containerd under this root: no version was asked for
    assert "CRITICAL not-monitored" in out and "fix: lvchange --monitor y docker/thinpool" in out
    assert "docker/thinpool: worst: critical" in out


def test_doctor_reports_an_invalid_daemon_json_as_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    daemon_json = tmp_path / "etc/docker/daemon.json"
    daemon_json.parent.mkdir(parents=True)
    daemon_json.write_text('{"storage-driver": "devicemapper",')
    _write_profile(tmp_path)
    runner = ScriptedRunner()
    runner.expect(commands.status_report("docker"), stdout=status_report())
    runner.expect(commands.dmsetup_status("docker-thinpool-tpool"), stdout=kernel_pool_status(0))
    assert main(["doctor", "--json"], context=_context(runner, tmp_path)) == 3
    found = json.loads(capsys.readouterr().out)["findings"]
    assert [finding["code"] for finding in found] == ["metadata-backup-missing", "daemon-json-invalid"]
    assert "is not valid JSON" in found[1]["problem"]


def test_doctor_names_metadata_the_kernel_has_behind_lvms_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zeroed superblock then an activation: dm-thin formats the metadata afresh (transaction 0) while lvm
    still records the thin volumes it made (transaction 5)."""
    _write_profile(tmp_path)
    runner = ScriptedRunner()
    runner.expect(commands.status_report("docker"), stdout=status_report({"transaction_id": "5"}))
    runner.expect(commands.dmsetup_status("docker-thinpool-tpool"), stdout=kernel_pool_status(0))
    assert main(["doctor", "--json"], context=_context(runner, tmp_path)) == 4
    (lost,) = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["code"] == "metadata-needs-repair"]
    assert "transaction 0 while lvm recorded 5" in lost["problem"] and "formatted afresh" in lost["problem"]
    assert lost["severity"] == "critical" and lost["fix"].startswith("thinpool repair docker/thinpool --yes")
    runner.expect(commands.status_report("docker"), stdout=status_report({"transaction_id": "5"}))
    runner.expect(commands.dmsetup_status("docker-thinpool-tpool"), stdout=kernel_pool_status(5))
    main(["doctor", "--json"], context=_context(runner, tmp_path))
    codes = [f["code"] for f in json.loads(capsys.readouterr().out)["findings"]]
    assert "metadata-needs-repair" not in codes and runner.exhausted


def test_a_plan_saved_by_an_older_thinpool_is_refused_with_the_way_forward(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _planned(recorded, tmp_path, capsys)
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps({**plan, "schema_version": 1}))
    runner = ScriptedRunner()
    assert main(["apply", str(saved), "--yes"], context=_context(runner, Path("/"))) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "schema_version 1" in err and "fix: make the plan again with this thinpool" in err
    assert runner.history == []  # refused before anything was read or run


def test_a_saved_plan_runs_as_re_derived_not_as_edited(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _planned(recorded, tmp_path, capsys)
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps({**plan, "warnings": ["all is fine, skip the review"], "next_steps": ["rm -rf /"]}))
    runner = ScriptedRunner()
    Machine(runner).observe(recorded)
    context = _context(runner, tmp_path)
    context.euid = 0
    assert main(["apply", str(saved)], context=context) == EXIT_ERROR  # no terminal: asks for --yes
    captured = capsys.readouterr()
    assert "skip the review" not in captured.out and "rm -rf" not in captured.out
    assert "+ create thin-pool docker/thinpool" in captured.out and "no terminal to confirm on" in captured.err


def test_a_replica_plan_takes_the_devices_sizes_and_merges_into_this_hosts_config(
    recorded: Path, tmp_path: Path
) -> None:
    from thinpool.app import pool
    from thinpool.core.spec import PoolSpec

    config = tmp_path / "etc/containerd/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        'version = 2\n# the operator\'s own\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "p:3"\n'
    )
    (tmp_path / "run/systemd/system").mkdir(parents=True)  # systemd runs here, but not in the VM
    runner = ScriptedRunner()
    runner.expect(programs.lsblk(DEVICE), stdout=(recorded / "lsblk-blank-disk.json").read_text())
    runner.expect(programs.wipefs_probe(DEVICE), stdout="")
    spec = PoolSpec(engine="containerd-devmapper")
    sizes, plan = pool.plan_replica(_context(runner, tmp_path), spec, (DEVICE,), ["/dev/vda"])
    assert runner.exhausted  # only the device was read: nothing ran, no program was asked its version
    assert sizes == [json.loads((recorded / "lsblk-blank-disk.json").read_text())["blockdevices"][0]["size"]]
    assert plan.spec.devices == ("/dev/vda",)
    merged = next(action for action in plan.actions if action.kind == "engine-config").content
    assert merged.startswith("version = 2\n# the operator's own\n") and 'sandbox_image = "p:3"' in merged
    assert "pool_name" in merged
    assert not any(action.kind == "systemd" for action in plan.actions)  # no daemon-reload in the VM
