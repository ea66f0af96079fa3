"""Moving off devicemapper without the VM: the rules, and the export through a scripted runner."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from thinpool.app import migrate as use_case
from thinpool.app.context import Context
from thinpool.cli import EXIT_ERROR, EXIT_OK, main
from thinpool.core import migrate
from thinpool.core.lvm import commands
from thinpool.core.migrate import DockerDevice, Image, Inventory, MigrateRefused, Operation, OpKind, Step, Volume
from thinpool.core.programs import argv as programs
from thinpool.core.spec import PoolSpec
from thinpool.testing import ScriptedRunner

from .builders import DOCKER_VG_ROW, VG_TEXT, expect_pool_lvm, lv_row, lvm_report

GiB = 1024**3
RECORDS = {
    "base": '{"device_id":1,"size":10737418240,"transaction_id":1,"initialized":true,"deleted":false}',
    "abc": '{"device_id":2,"size":10737418240,"transaction_id":2,"initialized":false,"deleted":false}',
    "abc-init": '{"device_id":3,"size":10737418241,"transaction_id":3,"initialized":false,"deleted":true}',
    "deviceset-metadata": '{"next_device_id":4,"BaseDeviceUUID":"x","BaseDeviceFilesystem":"xfs"}',
    "transaction-metadata": '{"open_transaction_id":3,"device_hash":"abc-init","device_id":3}',
}


def test_dockers_records_are_read_by_device_id_and_a_broken_one_is_refused() -> None:
    devices = migrate.parse_docker_devices(RECORDS)
    assert sorted(devices) == [1, 2, 3]
    assert devices[3] == DockerDevice("abc-init", 3, 10 * GiB + 1, 3, deleted=True)
    with pytest.raises(MigrateRefused, match="record 'abc' is unreadable"):
        migrate.parse_docker_devices({**RECORDS, "abc": '{"device_id": 2'})


def test_the_kernels_devices_are_kept_and_one_docker_does_not_know_is_refused() -> None:
    docker = migrate.parse_docker_devices(RECORDS)
    assert sorted(migrate.kept_devices([3, 1], docker)) == [1, 3]  # 2 is no longer in the kernel: nothing to keep
    with pytest.raises(MigrateRefused, match=r"thin devices \[9\]"):
        migrate.kept_devices([1, 9], docker)


def test_lvm_learns_each_of_dockers_devices_as_a_tagged_thin_lv_and_the_kernels_transaction_id() -> None:
    devices = migrate.kept_devices([1, 3], migrate.parse_docker_devices(RECORDS))
    text = migrate.with_docker_devices(
        VG_TEXT,
        "thinpool",
        lvm_transaction_id=1,
        kernel_transaction_id=7,
        devices=devices,
        extent_size=4 * 1024**2,
        vg_uuid="abc",
        created=5,
    )
    assert "transaction_id = 7" in text and text.count("transaction_id = 1") == 2  # the other pool, device 1
    for device_id, extents in ((1, 2560), (3, 2561)):  # one byte over 10 GiB takes one more extent
        block = text[text.index(f"devicemapper-{device_id} {{") :]
        block = block[: block.index("\t\t}\n")]
        assert f"device_id = {device_id}" in block and f"extent_count = {extents}" in block
        assert 'thin_pool = "thinpool"' in block and f'tags = ["{migrate.DEVICE_TAG}"]' in block
        assert 'flags = ["ACTIVATION_SKIP"]' in block
    assert text.index("devicemapper-1 {") > text.index("logical_volumes {")
    assert text.replace("transaction_id = 7", "transaction_id = 1").startswith(VG_TEXT[: VG_TEXT.index("\t\tthinpool")])
    uuid = migrate.lv_uuid("abc", 1)
    assert [len(part) for part in uuid.split("-")] == [6, 4, 4, 4, 4, 4, 6] and uuid == migrate.lv_uuid("abc", 1)
    assert uuid != migrate.lv_uuid("abc", 3)


def test_daemon_json_loses_devicemapper_and_keeps_everything_else() -> None:
    settings = {
        "storage-driver": "devicemapper",
        "storage-opts": ["dm.thinpooldev=/dev/mapper/x", "dm.fs=xfs"],
        "log-driver": "journald",
        "hosts": ["unix:///run/docker.sock"],
    }
    assert migrate.uses_devicemapper(settings)
    assert migrate.without_devicemapper(settings) == {"log-driver": "journald", "hosts": ["unix:///run/docker.sock"]}
    migrate.check_dockers_pool("/dev/mapper/x", "/dev/mapper/x")
    migrate.check_dockers_pool("", "/dev/mapper/x")  # no pool named: Docker's default loop files, nothing to check
    with pytest.raises(MigrateRefused, match="uses /dev/mapper/x, not /dev/mapper/docker-thinpool"):
        migrate.check_dockers_pool("/dev/mapper/x", "/dev/mapper/docker-thinpool")
    mixed = {"storage-opts": ["dm.basesize=20G", "overlay2.size=10G"]}
    assert migrate.without_devicemapper(mixed) == {"storage-opts": ["overlay2.size=10G"]}
    assert not migrate.uses_devicemapper(migrate.without_devicemapper(mixed))


@pytest.mark.parametrize(
    ("step", "driver", "message"),
    [
        ("export", "overlay2", "needs Docker running on devicemapper; Docker runs on overlay2"),
        ("export", None, "Docker is not running"),
        ("switch", "devicemapper", "needs Docker stopped"),
        ("import", "devicemapper", "needs Docker running on overlay2"),
        ("finish", "devicemapper", "would delete the devices Docker runs on"),
        ("rollback", "overlay2", "needs Docker stopped"),
    ],
)
def test_each_step_refuses_docker_in_the_wrong_state(step: str, driver: str | None, message: str) -> None:
    with pytest.raises(MigrateRefused, match=message):
        migrate.require_driver(step, driver)


def test_the_staging_must_hold_the_images_and_volumes_with_a_margin() -> None:
    inventory = Inventory((Image("sha256:a", ("a:1",), 900),), (Volume("v", "/x", "d", 100),), ())
    assert migrate.staging_needed(inventory) == 1100
    migrate.check_staging_room("/srv", 1100, 1100)
    with pytest.raises(MigrateRefused, match=r"\(1099 bytes\) free; the images and volumes need 1.07 KiB \(1100 bytes"):
        migrate.check_staging_room("/srv", 1100, 1099)


def test_the_import_report_names_what_did_not_come_over() -> None:
    inventory = Inventory(
        (Image("sha256:a", ("a:1", "a:latest"), 1), Image("sha256:b", ("b:1",), 1), Image("sha256:c", (), 1)),
        (Volume("same", "/x", "d1"), Volume("changed", "/y", "d2")),
        (
            migrate.Container("1", "web", "a:1", "running", "thinpool-migrate/web:committed"),
            migrate.Container("2", "job", "b:1", "exited"),
        ),
    )
    now = [Image("sha256:a", ("a:1",), 1), Image("sha256:c", (), 1)]
    report = migrate.compare(inventory, now, {"same": "d1", "changed": "other"})
    assert not report.ok
    assert report.images_matched == ("sha256:c",)
    assert report.images_missing == ("sha256:a a:latest", "sha256:b")
    assert (report.volumes_matched, report.volumes_differ) == (("same",), ("changed",))
    assert report.containers_not_carried[1] == "job (exited; its writable layer was not kept)"
    assert Inventory.from_dict(json.loads(json.dumps(inventory.to_dict()))) == inventory


def test_export_saves_each_image_under_its_tags_and_each_volume_then_the_inventory(tmp_path: Path) -> None:
    volume = tmp_path / "var/lib/docker/volumes/v1/_data"
    volume.mkdir(parents=True)
    (volume / "file").write_text("data")
    staging = tmp_path / "staging"
    inspected = [
        {"Id": "sha256:" + "a" * 64, "RepoTags": ["tiny:latest", "tiny:1"], "Size": 1000},
        {"Id": "sha256:" + "b" * 64, "RepoTags": [], "Size": 10},
    ]
    volumes = [
        {"Name": "v1", "Driver": "local", "Mountpoint": "/var/lib/docker/volumes/v1/_data", "Options": None},
        {"Name": "nfs", "Driver": "local", "Mountpoint": "/x", "Options": {"device": ":/export"}},
    ]
    runner = ScriptedRunner()
    runner.expect(programs.docker_driver(), stdout="devicemapper\n")
    runner.expect(programs.docker_volume_names(), stdout="v1\nnfs\n")
    runner.expect(programs.docker_volume_inspect(("v1", "nfs")), stdout=json.dumps(volumes))
    runner.expect(programs.docker_containers(), stdout='{"ID":"c1","Names":"web","Image":"tiny:1","State":"exited"}\n')
    runner.expect(programs.docker_image_ids(), stdout=f"sha256:{'a' * 64}\nsha256:{'b' * 64}\n")
    runner.expect(
        programs.docker_image_inspect(("sha256:" + "a" * 64, "sha256:" + "b" * 64)), stdout=json.dumps(inspected)
    )

    def written(name: str) -> None:
        (staging / name).write_text("archive")

    first, second = (f"images/{c * 24}.tar" for c in "ab")
    runner.expect(
        programs.docker_save(f"{staging / first}.partial", ("tiny:1", "tiny:latest")),
        then=lambda: written(first + ".partial"),
    )
    runner.expect(
        programs.docker_save(f"{staging / second}.partial", ("sha256:" + "b" * 64,)),
        then=lambda: written(second + ".partial"),
    )
    runner.expect(
        programs.tar_create(f"{staging}/volumes/v1.tar.partial", str(volume)),
        then=lambda: written("volumes/v1.tar.partial"),
    )
    ctx = Context(runner=runner, root=tmp_path)
    planned = use_case.plan(ctx, Step.EXPORT, use_case.Where(migrate_spec(), staging))
    done = use_case.execute(ctx, planned)
    assert runner.exhausted and done.ok and done.ran == list(planned.operations)
    assert [op.kind for op in planned.operations] == [
        OpKind.SAVE_IMAGE,
        OpKind.SAVE_IMAGE,
        OpKind.COPY_VOLUME,
        OpKind.WRITE_INVENTORY,
    ]
    saved = Inventory.from_dict(json.loads((staging / migrate.INVENTORY).read_text()))
    assert saved.skipped_volumes == ("nfs",) and saved.volumes[0].size == 4 and saved.volumes[0].digest
    assert sorted(p.name for p in (staging / "images").iterdir()) == [f"{'a' * 24}.tar", f"{'b' * 24}.tar"]


def test_every_step_in_one_run_is_refused_without_systemd_and_names_the_step_commands(tmp_path: Path) -> None:
    ctx = Context(runner=ScriptedRunner(), root=tmp_path, euid=0)
    with pytest.raises(MigrateRefused, match="systemd does not run here") as refused:
        use_case.run(ctx, Step.ALL, use_case.Where(migrate_spec(), tmp_path / "staging"))
    assert "--step export" in refused.value.fix and "--step import" in refused.value.fix


def migrate_spec() -> PoolSpec:
    return PoolSpec(engine=migrate.TARGET)


def test_the_command_shows_what_a_step_would_do_and_does_nothing_without_yes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    runner = ScriptedRunner()
    runner.expect(programs.docker_driver(), stdout="devicemapper\n")
    runner.expect(programs.docker_volume_names())
    runner.expect(programs.docker_containers(), stdout='{"ID":"c1","Names":"web","Image":"tiny:1","State":"running"}\n')
    runner.expect(programs.docker_image_ids())
    ctx = Context(runner=runner, root=tmp_path, euid=0)
    export = ["migrate", "--to", "docker-overlay2-thin", "--step", "export", "--staging", str(tmp_path / "s")]
    assert main(export, ctx) == EXIT_ERROR and runner.exhausted
    out = capsys.readouterr().out
    assert "save 0 images" in out and "container web (running): its writable layer is LOST" in out
    assert "Nothing was done" in out
    runner.expect(programs.docker_driver(), returncode=1, stderr="Cannot connect to the Docker daemon")
    assert main([*export, "--json"], ctx) == EXIT_ERROR
    assert json.loads(capsys.readouterr().out)["problem"].endswith(
        "needs Docker running on devicemapper; Docker is not running"
    )
    assert main([*export, "--staging", "/var/lib/docker/staging", "--yes"], ctx) == EXIT_ERROR
    assert "under Docker's data root" in capsys.readouterr().err
    assert main(["migrate", "--to", "docker-overlay2-thin", "--finish", "--rollback", "--yes"], ctx) == EXIT_ERROR
    assert "cannot run together" in capsys.readouterr().err
    (tmp_path / "etc/docker").mkdir(parents=True)
    (tmp_path / "etc/docker/daemon.json").write_text('{"data-root": "/srv/docker"}')
    for yes in ([], ["--yes"]):  # shown or run: refused before Docker is asked anything
        assert main([*export, *yes], ctx) == EXIT_ERROR and runner.exhausted
        assert "at /srv/docker, not at /var/lib/docker\n  fix: pass --data-root /srv/docker" in capsys.readouterr().err


def test_finish_is_refused_until_the_import_was_verified(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    runner.expect(programs.docker_driver(), stdout="overlay2\n")
    ctx = Context(runner=runner, root=tmp_path)
    use_case.state_folder(ctx, migrate_spec()).mkdir(parents=True)  # a switch ran
    with pytest.raises(MigrateRefused, match="has not been verified") as refused:
        use_case.plan_finish(ctx, use_case.Where(migrate_spec(), tmp_path / "staging"))
    assert "--step import" in refused.value.fix and runner.exhausted  # nothing was removed: no lvm command ran


def test_the_import_is_reported_in_words_with_what_did_not_come_over() -> None:
    from thinpool.cli.migrate import _render

    inventory = Inventory(
        (Image("sha256:a", ("a:1",), 1),), (Volume("v", "/x", "d"),), (migrate.Container("1", "web", "a:1", "exited"),)
    )
    loaded = [Operation(OpKind.LOAD_IMAGE, "load image sha256:a", "sha256:a")]
    done = use_case.StepResult("import", loaded, migrate.compare(inventory, [], {"v": "d"}))
    text = _render(done)
    assert "  missing: sha256:a" in text and "volumes with the same checksum: 1" in text
    assert "not carried: container web (exited; its writable layer was not kept)" in text
    assert _render(use_case.StepResult("finish")) == "finish:\n  nothing to do: this step had already run"


def test_a_rollback_is_refused_when_the_volume_group_changed_since_the_switch(tmp_path: Path) -> None:
    """Putting back lvm's metadata from before the switch would undo a grow, a vgextend or an LV made since."""
    from thinpool.core.model import LogicalVolume, VolumeGroup

    runner = ScriptedRunner()
    ctx = Context(runner=runner, root=tmp_path)
    folder = use_case.state_folder(ctx, migrate_spec())
    folder.mkdir(parents=True)
    (folder / use_case.LVM_BEFORE).write_text(VG_TEXT)
    (tmp_path / "var/lib/docker.devicemapper").mkdir(parents=True)
    (folder / use_case.SHAPE).write_text(json.dumps(["1023 extents", "LV thinpool 2097152 B"]))  # grown since
    runner.expect(programs.docker_driver(), returncode=1, stderr="Cannot connect to the Docker daemon")
    expect_pool_lvm(runner)
    with pytest.raises(MigrateRefused, match=r"was LV thinpool 2097152 B; now LV thinpool 0 B") as refused:
        use_case.plan_rollback(ctx, use_case.Where(migrate_spec(), tmp_path / "staging"))
    assert "--finish" in refused.value.fix and runner.exhausted  # refused before any lvm change

    pool = LogicalVolume("thinpool", "docker", "twi-aotz--", 8 * GiB, "thin-pool", metadata_size=GiB)
    volume = LogicalVolume("docker-data", "docker", "Vwi-aotz--", GiB, "thin", pool_lv="thinpool")
    device = LogicalVolume("devicemapper-1", "docker", "Vwi---tz-k", GiB, "thin", tags=(migrate.DEVICE_TAG,))
    at_switch = migrate.vg_shape(
        VolumeGroup("docker", 4 << 20, 4096, 100, 9, ("/dev/vda",), (pool, volume)), "docker-data"
    )
    assert at_switch == ("4096 extents", "PV /dev/vda", f"LV thinpool {8 * GiB} B, metadata {GiB} B")
    rolled_back = migrate.vg_shape(VolumeGroup("docker", 4 << 20, 4096, 100, 12, ("/dev/vda",), (pool, device)), "x")
    migrate.check_vg_unchanged(at_switch, rolled_back)  # its own removals and restore do not count: a rerun goes on
    migrate.check_vg_unchanged(None, ("8192 extents",))  # no switch finished: nothing to compare with
    extended = migrate.vg_shape(VolumeGroup("docker", 4 << 20, 8192, 4196, 9, ("/dev/vda", "/dev/vdb"), (pool,)), "")
    with pytest.raises(MigrateRefused, match="was 4096 extents; now 8192 extents; now PV /dev/vdb"):
        migrate.check_vg_unchanged(at_switch, extended)


def test_a_container_an_earlier_export_committed_is_not_committed_again() -> None:
    """An export run again after a kill: committing again would make a new image and leave the first dangling."""
    earlier = Image("sha256:" + "c" * 64, ("thinpool-migrate/web:committed",), 10)
    web, db = migrate.Container("1", "web", "a:1", "running"), migrate.Container("2", "db", "a:1", "exited")
    inventory, operations = use_case._commits(Inventory((earlier,), (), (web, db)))
    assert [(op.kind, op.subject, op.names) for op in operations] == [
        (OpKind.COMMIT_CONTAINER, "thinpool-migrate/db:committed", ("2",)),  # web was not committed again
        (OpKind.SAVE_COMMITTED_IMAGE, "thinpool-migrate/db:committed", ()),
    ]
    assert [c.committed_as for c in inventory.containers] == [
        "thinpool-migrate/web:committed",
        "thinpool-migrate/db:committed",
    ]
    made = Image("sha256:" + "d" * 64, ("thinpool-migrate/db:committed",), 10)
    again, operations = use_case._commits(replace(inventory, images=(earlier, made)))
    assert operations == [] and again.containers == inventory.containers


def test_a_steps_preview_is_what_its_run_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--finish shown, then run: the operations the preview lists are the ones the run reports, and did."""
    runner = ScriptedRunner()
    ctx = Context(runner=runner, root=tmp_path, euid=0)
    staging = tmp_path / "staging"
    (staging / "images").mkdir(parents=True)
    (staging / migrate.IMPORTED).write_text("{}")
    folder = use_case.state_folder(ctx, migrate_spec())
    folder.mkdir(parents=True)
    aside = tmp_path / "var/lib/docker.devicemapper"
    aside.mkdir(parents=True)
    pool = lv_row("thinpool", segtype="thin-pool", lv_attr="twi-aotz--", transaction_id="7")
    device = lv_row(
        "devicemapper-1", segtype="thin", pool_lv="thinpool", lv_attr="Vwi---tz-k", lv_tags=migrate.DEVICE_TAG
    )
    vg = DOCKER_VG_ROW

    def reads() -> None:
        runner.expect(programs.docker_driver(), stdout="overlay2\n")
        runner.expect(commands.lvm_report(), stdout=lvm_report(lvs=[pool, device], vgs=[vg]))

    finish = ["migrate", "--to", migrate.TARGET, "--finish", "--staging", str(staging), "--json"]
    reads()
    assert main(finish, ctx) == EXIT_ERROR and runner.exhausted
    would = json.loads(capsys.readouterr().out)["would"]
    reads()
    runner.expect(commands.lvremove("docker", "devicemapper-1"))
    assert main([*finish, "--yes"], ctx) == EXIT_OK and runner.exhausted
    done = json.loads(capsys.readouterr().out)["steps"][0]["done"]
    assert done == would and len(done) == 3, would
    assert not aside.exists() and not folder.exists() and not (staging / "images").exists()


def _where(tmp_path: Path) -> use_case.Where:
    return use_case.Where(migrate_spec(), tmp_path / "staging")


def test_a_switch_holds_docker_back_until_it_ends_and_a_rerun_after_a_cut_finds_it_held(tmp_path: Path) -> None:
    """The hold is the switch's first change and its release the last; under systemd each is read at once."""
    (tmp_path / "run/systemd/system").mkdir(parents=True)  # systemd is this root's init
    runner = ScriptedRunner()
    runner.expect(programs.systemctl_daemon_reload())
    ctx = Context(runner=runner, root=tmp_path)
    plan = use_case.StepPlan(Step.SWITCH, _where(tmp_path), (*use_case._hold_docker_operations(ctx),))
    assert [operation.kind for operation in plan.operations] == [OpKind.HOLD_DOCKER]
    use_case.execute(ctx, plan)
    held = tmp_path / migrate.HOLD_DROP_IN.lstrip("/")
    assert held.read_text() == migrate.hold_drop_in() and held.stat().st_mode & 0o777 == 0o644
    assert "ExecStartPre=/bin/sh -c 'echo \"thinpool: a migrate switch has not finished" in held.read_text()
    assert "exit 1'" in held.read_text() and "%" not in held.read_text() and "$" not in held.read_text()
    assert use_case._hold_docker_operations(ctx) == []  # a re-run after a power cut: already held
    runner.expect(programs.systemctl_daemon_reload())
    use_case.execute(ctx, use_case.StepPlan(Step.SWITCH, _where(tmp_path), (use_case._release_docker_operation(),)))
    assert not held.exists() and held.parent.is_dir() and runner.exhausted


def test_a_hold_without_systemd_is_written_and_released_with_no_daemon_reload(tmp_path: Path) -> None:
    runner = ScriptedRunner()  # expects nothing: no systemctl where systemd is not init
    ctx = Context(runner=runner, root=tmp_path)
    operations = (*use_case._hold_docker_operations(ctx), use_case._release_docker_operation())
    use_case.execute(ctx, use_case.StepPlan(Step.SWITCH, _where(tmp_path), operations))
    assert not (tmp_path / migrate.HOLD_DROP_IN.lstrip("/")).exists() and runner.exhausted
