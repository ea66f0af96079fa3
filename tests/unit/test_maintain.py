"""thinpool maintain without the VM: its rules from a status, and the command through a scripted runner."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from thinpool.app.context import Context
from thinpool.cli import EXIT_OK, main
from thinpool.cli.watch import EXIT_WARNING
from thinpool.core import doctor, health, maintain
from thinpool.core.lvm import commands
from thinpool.core.model import Filesystem
from thinpool.core.programs import argv as programs
from thinpool.core.units import GiB, MiB
from thinpool.testing import ScriptedRunner

from . import builders
from .builders import CHUNK, DOCKER_VG_ROW, PROFILE, VOLUME, codes, lvm_report, mount_table, pool_report


def status_of(report: str, used: int | None = 100 * MiB) -> health.PoolStatus:
    found = builders.pool_status(report, "docker", "thinpool", {"thinpool-docker-thinpool": PROFILE})
    if used is None:
        return found
    fs = Filesystem("253:4", "/var/lib/docker", "xfs", VOLUME, used)
    return health.with_filesystems(found, {"253:4": fs})


def test_a_filesystem_that_freed_space_is_trimmed_by_whole_chunks() -> None:
    status = status_of(pool_report(mapped="3.00"))  # 3% of 100 GiB mapped, 100 MiB used
    assert status.volumes[0].mapped == 3 * GiB and status.reclaimable == 3 * GiB - 100 * MiB
    planned = maintain.plan(status)
    assert [action.argv for action in planned.actions] == [("fstrim", "--minimum", str(CHUNK), "/var/lib/docker")]
    assert planned.actions[0].kind == "reclaim" and "uses 100 MiB" in planned.actions[0].reason
    assert "reclaimable-space" in codes(doctor.diagnose(status))


@pytest.mark.parametrize(
    ("report", "used", "why"),
    [
        (pool_report(mapped="0.30"), 100 * MiB, "307 MiB mapped, 100 MiB used: under the 256 MiB threshold"),
        (pool_report(mapped="3.00"), None, "not mounted"),
        (pool_report(mapped="3.00", tags=""), 100 * MiB, "not thinpool's volume"),
        (pool_report(mapped="3.00"), 4 * GiB, "the filesystem uses more than the pool maps (XFS's log)"),
    ],
)
def test_nothing_is_trimmed_below_the_threshold_or_outside_thinpools_filesystems(
    report: str, used: int | None, why: str
) -> None:
    status = status_of(report, used)
    assert not [action for action in maintain.plan(status).actions if action.kind == "reclaim"], why
    assert "reclaimable-space" not in codes(doctor.diagnose(status)), why


def test_the_threshold_is_the_operators_to_choose() -> None:
    status = status_of(pool_report(mapped="0.30"))
    assert maintain.plan(status, maintain.Policy(reclaim_above=100 * MiB)).actions[0].kind == "reclaim"


@pytest.mark.parametrize(
    ("when_full", "free", "wanted", "argv"),
    [
        ("queue", 200, "queue", None),  # it can grow: writes wait for dmeventd
        ("error", 200, "queue", ("lvchange", "--errorwhenfull", "n", "docker/thinpool")),  # room came back
        ("queue", 100, "error", ("lvchange", "--errorwhenfull", "y", "docker/thinpool")),  # no room for a step
        ("error", 100, "error", None),
    ],
)
def test_the_when_full_mode_follows_whether_the_pool_can_grow(
    when_full: str, free: int, wanted: str, argv: tuple[str, ...] | None
) -> None:
    status = status_of(pool_report(when_full=when_full, free=free, mapped="0.00"))
    assert health.when_full_wanted(status)[0] == wanted
    planned = [action.argv for action in maintain.plan(status).actions]
    assert planned == ([argv] if argv else [])


def test_the_when_full_finding_stands_alone_only_when_no_autoextend_finding_explains_it() -> None:
    errors_though_it_can_grow = status_of(pool_report(when_full="error", mapped="0.00"))
    found = doctor.diagnose(errors_though_it_can_grow)
    assert [(f.code, f.severity, f.fix) for f in found] == [
        ("when-full-policy", "info", "thinpool maintain docker/thinpool")
    ]
    queues_without_room = status_of(pool_report(when_full="queue", free=100, mapped="0.00"))
    assert codes(doctor.diagnose(queues_without_room)) == {"no-room-to-autoextend"}  # its fix is the real one


def test_a_full_pool_is_one_finding_whose_fix_can_work() -> None:
    """lvm reports out-of-data twice (attr D, health out_of_data); the VG has 1 free extent."""
    full = status_of(
        pool_report(attr="twi-aotzD-", health_status="out_of_data", data_percent="100.00", free=1, mapped="0.00")
    )
    found = doctor.diagnose(full)
    unhealthy = [finding for finding in found if finding.code == "pool-unhealthy"]
    assert len(unhealthy) == 1 and "data-over-threshold" not in codes(found)
    assert unhealthy[0].fix == "thinpool grow /dev/sdX --vg docker --pool thinpool"
    assert all("lvextend" not in finding.fix for finding in found)
    with_room = status_of(
        pool_report(attr="twi-aotzD-", health_status="out_of_data", data_percent="100.00", free=400, mapped="0.00")
    )
    assert [f.fix for f in doctor.diagnose(with_room) if f.code == "pool-unhealthy"] == [
        "lvextend -l +154 docker/thinpool"
    ]


def _context(runner: ScriptedRunner, root: Path) -> Context:
    profile = root / "etc/lvm/profile/thinpool-docker-thinpool.profile"
    profile.parent.mkdir(parents=True, exist_ok=True)
    profile.write_text(PROFILE)
    return Context(runner=runner, root=root, euid=0, sleep=lambda _: None, statvfs=mount_table(root, 100 * MiB))


def test_maintain_trims_sets_the_mode_and_reports_what_came_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = ScriptedRunner()
    runner.expect(commands.status_report("docker"), stdout=pool_report(mapped="3.00", free=100))
    runner.expect(programs.fstrim("/var/lib/docker", CHUNK))
    runner.expect(commands.lvchange_error_when_full("docker", "thinpool", True))
    after = pool_report(mapped="0.09", free=100, when_full="error", data_percent="4.00")
    runner.expect(
        commands.lvm_report(),
        stdout=lvm_report(
            lvs=json.loads(after)["report"][0]["lv"],
            vgs=[DOCKER_VG_ROW],
        ),
    )
    runner.expect(commands.status_report("docker"), stdout=after)
    assert (
        main(
            ["maintain", "docker/thinpool", "--json", "--backup-every", "0", "--check-every", "0"],
            context=_context(runner, tmp_path),
        )
        == EXIT_OK
    )
    assert runner.exhausted
    result = json.loads(capsys.readouterr().out)
    pool = result["pools"][0]
    assert result["ok"] and pool["changed"] and pool["when_full"] == "error"
    assert pool["reclaimable_before"] == 3 * GiB - 100 * MiB and pool["reclaimable_after"] == 0
    assert [step["kind"] for step in pool["steps"]] == ["reclaim", "when-full"]


def test_maintain_dry_run_plans_the_same_pass_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pass a real run makes (a trim, the when-full mode, a backup that is due) is planned; only the pool's
    report and its kernel status are read, nothing runs and no file is written."""
    runner = ScriptedRunner()
    runner.expect(commands.status_report("docker"), stdout=pool_report(mapped="3.00", free=100))
    runner.expect(commands.dmsetup_status("docker-thinpool-tpool"), stdout=builders.kernel_pool_status(7))
    context = _context(runner, tmp_path)
    before = sorted(path for path in tmp_path.rglob("*"))
    assert main(["maintain", "docker/thinpool", "--json", "--dry-run"], context=context) == EXIT_OK
    assert runner.exhausted and sorted(path for path in tmp_path.rglob("*")) == before
    pool = json.loads(capsys.readouterr().out)["pools"][0]
    assert [action["kind"] for action in pool["planned"]] == ["reclaim", "when-full"]
    assert pool["steps"] == [] and not pool["changed"] and pool["backup"]["taken"] is None
    assert "no backup" in pool["backup"]["reason"]  # due: a real run would take it
    assert "never had a full check" in pool["metadata_check"]["reason"] and pool["metadata_check"]["ran"] is None


def test_maintain_with_nothing_to_do_runs_no_command_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = ScriptedRunner()
    runner.expect(commands.status_report("docker"), stdout=pool_report(mapped="0.10"))
    assert (
        main(
            ["maintain", "docker/thinpool", "--backup-every", "0", "--check-every", "0"],
            context=_context(runner, tmp_path),
        )
        == EXIT_OK
    )
    out = capsys.readouterr().out
    assert runner.exhausted and "nothing to do" in out and "when full: queue" in out


def test_maintain_without_a_pool_of_thinpools_says_how_to_name_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = ScriptedRunner()
    runner.expect(commands.lvm_report(), stdout=lvm_report())
    assert main(["maintain"], context=_context(runner, tmp_path)) == 1
    said = capsys.readouterr().err
    assert "none is tagged thinpool.managed or thinpool.adopted" in said
    assert "fix: name the pool (thinpool maintain VG/POOL), or adopt a pool another tool made" in said


def test_metrics_carry_reclaimable_bytes_and_the_when_full_mode() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from thinpool.app import metrics

    status = status_of(pool_report(mapped="3.00", when_full="error"))
    text = generate_latest(metrics.registry_for(lambda: [metrics.Reading("docker", "thinpool", status)])).decode()
    samples = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples["thinpool_reclaimable_bytes"] == 3 * GiB - 100 * MiB
    assert samples["thinpool_error_when_full"] == 1


def test_an_inactive_pool_keeps_its_when_full_mode_until_it_is_active() -> None:
    inactive = status_of(pool_report(when_full="queue", free=100, mapped="0.00", attr="twi---tz--"), used=None)
    assert not inactive.active and maintain.plan(inactive).actions == ()
    assert "when-full-policy" not in codes(doctor.diagnose(inactive))


def test_status_and_metrics_show_where_each_thin_volume_is_mounted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = ScriptedRunner()
    runner.expect(commands.status_report("docker"), stdout=pool_report())
    assert main(["status", "docker/thinpool"], context=_context(runner, tmp_path)) == EXIT_OK
    assert "  mounted       docker-data at /var/lib/docker (xfs)\n" in capsys.readouterr().out
    runner.expect(commands.status_report("docker"), stdout=pool_report())
    runner.expect(commands.dmsetup_status("docker-thinpool-tpool"), stdout=builders.kernel_pool_status(0))
    prom = tmp_path / "thinpool.prom"
    assert main(["metrics", "--textfile", str(prom), "docker/thinpool"], context=_context(runner, tmp_path)) == EXIT_OK
    assert runner.exhausted
    mapped = 3 * VOLUME // 100  # lvm's data_percent 3.00 of the volume
    assert (
        f'thinpool_volume_mapped_bytes{{vg="docker",pool="thinpool",volume="docker-data",'
        f'mount_point="/var/lib/docker"}} {float(mapped)!r}\n' in prom.read_text()
    )


def test_doctor_finds_podmans_layers_on_the_root_filesystem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    links = tmp_path / "var/lib/containers/storage/overlay/l"
    links.mkdir(parents=True)
    for name in ("AB", "CD"):
        (links / name).symlink_to("../x/diff")
    runner = ScriptedRunner()
    runner.expect(commands.status_report("docker"), stdout=pool_report())
    runner.expect(commands.dmsetup_status("docker-thinpool-tpool"), stdout=builders.kernel_pool_status(0))
    assert main(["doctor", "--json", "docker/thinpool"], context=_context(runner, tmp_path)) == EXIT_WARNING
    (finding,) = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["code"] == "engine-data-outside-pool"]
    assert finding["problem"].startswith("containers-storage (Podman, Buildah, CRI-O) keeps 2 layers in ")
    assert "--engine podman-overlay-thin --vg docker --pool thinpool" in finding["fix"]


def test_the_timers_pass_covers_the_pools_thinpool_made_or_adopted_and_no_other(tmp_path: Path) -> None:
    from thinpool.app import maintain as use_case

    def pool(vg: str, name: str, tags: str) -> dict[str, str]:
        return builders.lv_row(name, vg_name=vg, segtype="thin-pool", lv_attr="twi-aotz--", lv_tags=tags)

    rows = [
        pool("pve", "data", "thinpool.adopted,thinpool.when-full"),
        pool("incus", "IncusThinPool", ""),  # Incus's, not adopted: left to its owner
        pool("docker", "thinpool", commands.MANAGED_TAG),
    ]
    vgs = [DOCKER_VG_ROW | {"vg_name": name} for name in ("pve", "incus", "docker")]
    runner = ScriptedRunner()
    runner.expect(commands.lvm_report(), stdout=lvm_report(lvs=rows, vgs=vgs))
    assert use_case.cared_for_pools(Context(runner=runner, root=tmp_path)) == [("docker", "thinpool"), ("pve", "data")]


TPOOL = "docker-thinpool-tpool"
META = "/dev/mapper/docker-thinpool_tmeta"


def _expect_check(runner: ScriptedRunner, code: int = 0, said: str = "") -> None:
    """One full check: the pool's report, its snapshot held around thin_check --metadata-snap, the version."""
    runner.expect(commands.status_report("docker"), stdout=pool_report(mapped="0.10"))
    runner.expect(commands.dmsetup_status(TPOOL), stdout=builders.kernel_pool_status(7))
    runner.expect(commands.dmsetup_message(TPOOL, "reserve_metadata_snap"))
    runner.expect(commands.thin_check(META, metadata_snap=True), returncode=code, stderr=said)
    runner.expect(commands.dmsetup_message(TPOOL, "release_metadata_snap"))
    runner.expect(commands.thin_check_version(), stdout="1.1.0\n")


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> float:
        return float(self.now)


def test_the_full_metadata_check_runs_weekly_on_a_snapshot_and_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock, runner = Clock(1_800_000_000), ScriptedRunner()
    context = dataclasses.replace(_context(runner, tmp_path), clock=clock)
    _expect_check(runner)
    assert main(["maintain", "docker/thinpool", "--json", "--backup-every", "0"], context=context) == EXIT_OK
    ran = json.loads(capsys.readouterr().out)["pools"][0]["metadata_check"]
    assert ran["ran"]["ok"] and ran["ran"]["tool"] == "1.1.0" and ran["ran"]["when"] == clock.now
    record = tmp_path / "var/lib/thinpool/checks/docker-thinpool.json"
    assert json.loads(record.read_text()) == ran["ran"] and record.stat().st_mode & 0o777 == 0o600
    clock.now += 6 * 86400  # within the week: only the pool is read
    runner.expect(commands.status_report("docker"), stdout=pool_report(mapped="0.10"))
    assert main(["maintain", "docker/thinpool", "--json", "--backup-every", "0"], context=context) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["pools"][0]["metadata_check"] == {"reason": "", "ran": None, "error": ""}
    clock.now += 86400
    _expect_check(runner, code=1, said="bad checksum in metadata index block\n")
    assert main(["maintain", "docker/thinpool", "--backup-every", "0"], context=context) == 1  # the timer's unit fails
    assert "full metadata check: ERRORS: bad checksum in metadata index block (" in capsys.readouterr().out
    assert runner.exhausted


def test_doctor_projects_the_last_checks_time_onto_the_metadata_in_use_now() -> None:
    from thinpool.core import metadata_check

    last = metadata_check.CheckRecord(0, millis=20_000, metadata_used=100 * MiB, ok=True, said="", thin_devices=100)
    full = ("-q", "--clear-needs-check-flag")
    (found,) = metadata_check.findings("docker", "thinpool", last, 400 * MiB, full)
    assert found.code == "boot-check-over-budget" and "would take about 80 s, over the 60 s budget" in found.problem
    (by_devices,) = metadata_check.findings("docker", "thinpool", last, 100 * MiB, full, thin_devices=500)
    assert "100 MiB and 500 thin devices now" in by_devices.problem and "about 100 s" in by_devices.problem
    assert found.fix.startswith("re-run thinpool apply with --boot-check fast")
    assert 'global { thin_check_options = [ "-q", "--clear-needs-check-flag", "--skip-mappings" ] }' in found.fix
    assert metadata_check.findings("docker", "thinpool", last, 250 * MiB, full) == []  # 50 s: within
    assert metadata_check.findings("docker", "thinpool", last, 400 * MiB, (*full, "--skip-mappings")) == []
    failed = metadata_check.CheckRecord(0, 1000, MiB, ok=False, said="1 data block leaked")
    (critical,) = metadata_check.findings("docker", "thinpool", failed, MiB, full)
    assert critical.severity == "critical" and "(1 data block leaked)" in critical.problem
    assert metadata_check.parse_options('thin_check_options=["-q","--clear-needs-check-flag"]\n') == full
    assert metadata_check.parse_options("garbage") is None and not metadata_check.fast_at_boot(None)
