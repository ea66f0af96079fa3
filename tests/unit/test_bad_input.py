"""Bad input, class by class: a clear refusal with its fix (or a correct plan), never a traceback or a clobbered file."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from thinpool.app import planning
from thinpool.app.context import Context
from thinpool.cli import EXIT_ERROR, EXIT_OK, main
from thinpool.core import names, planner
from thinpool.core.model import EngineState, Observed, virtual_disks
from thinpool.core.spec import EngineOptions, PoolSpec
from thinpool.core.units import GiB
from thinpool.engines import containerd_devmapper
from thinpool.engines.target import PoolTarget
from thinpool.errors import SpecError
from thinpool.system import files
from thinpool.testing import ScriptedRunner


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], words: str, context: Context | None = None) -> str:
    assert main(argv, context=context) == EXIT_ERROR
    err = capsys.readouterr().err
    assert words in err and "fix:" in err and "Traceback" not in err, err
    return err


# 1. Saved files


def test_plan_out_refuses_a_symlink_and_leaves_its_target_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:x:0:0\n")
    link = tmp_path / "plan.json"
    link.symlink_to(victim)
    _refused(["plan", "--disk-size", "4GiB", "--out", str(link)], capsys, "is a symbolic link")
    assert victim.read_text() == "root:x:0:0\n" and link.is_symlink()


def test_plan_out_never_blocks_on_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(main(["plan", "--disk-size", "4GiB", "--out", str(fifo)])))
    worker.start()
    worker.join(timeout=10)
    assert done == [EXIT_ERROR]
    assert "is not a regular file" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_planted_plan_file_is_replaced_by_roots_own(tmp_path: Path) -> None:
    planted = tmp_path / "plan.json"
    planted.write_text("{}")
    os.chown(planted, 1234, 1234)
    planted.chmod(0o666)
    assert main(["plan", "--disk-size", "4GiB", "--out", str(planted)]) == EXIT_OK
    found = planted.stat()
    assert (found.st_uid, stat.S_IMODE(found.st_mode)) == (0, 0o644)
    assert json.loads(planted.read_text())["kind"] == "thinpool-plan"
    assert not [path for path in tmp_path.iterdir() if path.name != "plan.json"]  # no temporary left


def test_backups_never_overwrite_an_earlier_one(tmp_path: Path) -> None:
    config = tmp_path / "daemon.json"
    config.write_text("one")
    first = files.keep_backup(config, 0.0)
    config.write_text("two")
    second = files.keep_backup(config, 0.0)  # the same second
    assert first != second and first.read_text() == "one" and second.read_text() == "two"


# 2. Saved plans


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ("[1, 2]", "not a JSON object"),
        ("null", "not a JSON object"),
        ('{"kind": "thinpool-plan", "schema_version": 2, "actions": {}}', "actions is not a list"),
        ("SPEC:extent_size=4m", "extent_size is str, not int"),
        ("SPEC:devices=/dev/sdb", "devices is str, not list"),
        ("SPEC:zero=1", "zero is int, not bool"),
        ("ACTION:kind=format-everything", "action kind 'format-everything' is unknown"),
        ("ACTION:argv=rm -rf /", "argv is not a list of strings"),
        ("[" * 100_000, "not a readable thinpool plan"),
    ],
)
def test_a_broken_saved_plan_is_refused_without_a_traceback(
    document: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if document.startswith(("SPEC:", "ACTION:")):
        where, _, change = document.partition(":")
        key, _, value = change.partition("=")
        base = planner.plan(PoolSpec(devices=("disk1",)), virtual_disks([4 * GiB])).to_dict()
        (base["spec"] if where == "SPEC" else base["actions"][0])[key] = int(value) if value.isdigit() else value
        document = json.dumps(base)
    saved = tmp_path / "plan.json"
    saved.write_text(document)
    context = Context(runner=ScriptedRunner(), root=tmp_path, euid=0)
    _refused(["apply", str(saved), "--yes"], capsys, words, context)
    assert context.runner.history == []  # type: ignore[attr-defined]


# 3. Geometry


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--extent-size", "16g", "--disk-size", "100GiB"], "larger than the most metadata lvm allows"),
        (["--extent-size", "8g", "--metadata-size", "15g", "--disk-size", "200GiB"], "rounds up to 2 extents"),
        (["--disk-size", "100MiB", "--data-size", "1%VG"], "less than the smallest pool here"),
    ],
)
def test_geometry_that_lvm_cannot_honour_is_refused(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(["plan", *argv], capsys, words)
    assert "add a larger device" not in err


def test_large_extents_still_give_whole_metadata_extents(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--extent-size", "8g", "--disk-size", "200GiB", "--json"]) == EXIT_OK
    layout = json.loads(capsys.readouterr().out)["layout"]
    assert layout["metadata_extents"] == 1 and layout["metadata_size"] == 8 * GiB


# 4. Names


@pytest.mark.parametrize("part", names.RESERVED_PARTS)
def test_every_reserved_part_is_refused_for_the_pool_and_the_volume(part: str) -> None:
    with pytest.raises(SpecError, match="reserves"):
        names.check_pool("docker", f"pool{part}")
    with pytest.raises(SpecError, match="reserves"):
        EngineOptions(volume_name=f"vol{part}").validate()


@pytest.mark.parametrize(
    ("vg", "pool", "words"),
    [
        ("docker", "p" * 128, "more than lvm's 127"),
        ("docker", "p" * 122, "_tmeta would be longer than 127"),
        ("a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t-u-v-w-x-y-z-0-1-2-3", "p-" * 30 + "p", "device-mapper's 127"),
        ("docker", "snapshots", "starts with 'snapshot'"),
        ("docker", "pvmove0", "starts with 'pvmove'"),
        ("vg", "..", "not a valid lvm name"),
        ("vg", "pool name", "other characters"),
        ("vg", "pööl", "other characters"),
    ],
)
def test_names_lvm_would_refuse_are_refused_before_anything_runs(vg: str, pool: str, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        PoolSpec(vg=vg, pool=pool).validate()


def test_the_longest_names_lvm_takes_are_taken() -> None:
    names.check_pool("v", "p" * 119)  # its mappings v-p..._tmeta and v-p...-tpool are 127 characters
    with pytest.raises(SpecError, match="device-mapper's 127"):
        names.check_pool("v", "p" * 120)
    names.check_name("v" * 127, what="volume group")


def test_a_vg_name_taken_under_dev_is_refused() -> None:
    observed = Observed(devices=virtual_disks([4 * GiB], ["/dev/sdb"]).devices, taken_dev_names=frozenset({"disk"}))
    with pytest.raises(SpecError, match="/dev/disk already exists"):
        planner.plan(PoolSpec(devices=("/dev/sdb",), vg="disk"), observed)


def test_the_overlay2_volume_cannot_be_named_like_the_pool(capsys: pytest.CaptureFixture[str]) -> None:
    _refused(
        ["plan", "--disk-size", "4GiB", "--engine", "docker-overlay2-thin", "--volume-name", "thinpool"],
        capsys,
        "the pool's own name",
    )


# 5. Paths and targets


def test_the_data_root_is_normalised(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "plan",
                "--disk-size",
                "4GiB",
                "--engine",
                "docker-overlay2-thin",
                "--data-root",
                "/var/lib/docker/",
                "--json",
            ]
        )
        == EXIT_OK
    )
    assert json.loads(capsys.readouterr().out)["spec"]["engine_options"]["data_root"] == "/var/lib/docker"
    _refused(
        ["plan", "--disk-size", "4GiB", "--engine", "docker-overlay2-thin", "--data-root", "/var/lib/../lib"],
        capsys,
        "not a dedicated absolute path",
    )


@pytest.mark.parametrize("device", ["sdb", "./sdb", "-h", "--yes", "/dev/../dev/sdb", "/dev/sd b"])
def test_devices_must_be_absolute_paths_before_anything_reads_them(
    device: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = ScriptedRunner()
    _refused(["plan", "--", device], capsys, "not an absolute device path", Context(runner, tmp_path, euid=0))
    assert runner.history == []


@pytest.mark.parametrize("target", ["docker", "/thinpool", "docker/", "-o/x", "docker/thin pool"])
def test_watch_targets_are_checked_before_they_reach_lvm(
    target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = ScriptedRunner()
    assert main(["status", "--", target], context=Context(runner, tmp_path, euid=0)) == EXIT_ERROR
    assert "fix:" in capsys.readouterr().err and runner.history == []


# 6. Engine options


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--storage-opt", "dm.thinpooldev=/dev/mapper/other"], "set by thinpool"),
        (["--storage-opt", "dm.basesize=20G"], "use --base-size"),
        (["--storage-opt", "dm.fs=ext4", "--storage-opt", "dm.fs=xfs"], "same key twice"),
        (["--host", "tcp://[::1"], "not a valid address"),
        (["--host", "ssh://me@host"], "cannot listen on ssh://"),
        (["--host", "tcp://127.0.0.1:65536"], "Port out of range"),
        (["--host", "unix://"], "names no socket path"),
        (["--dns", "dns.example"], "not an IP address"),
        (["--dns", "10.0.0.2", "--dns-cache"], "either --dns-cache or --dns"),
        (["--tls-generate", "--tls-san", "bad name"], "neither a host name nor an IP address"),
        (["--tls-san", "build.example.com"], "add --tls-generate"),
        (["--tls-generate", "--tlscert", "/c", "--tlskey", "/k", "--tlscacert", "/a"], "either --tls-generate"),
        (["--autoextend-threshold", "100", "--autoextend-percent", "-5"], "outside 1-100"),
    ],
)
def test_engine_options_are_checked(options: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(["plan", "--disk-size", "4GiB", "--engine", "docker-devicemapper", *options], capsys, words)


def test_a_storage_opt_replaces_thinpools_default_for_its_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["plan", "--disk-size", "4GiB", "--engine", "docker-devicemapper", "--storage-opt", "dm.fs=ext4", "--json"]
        )
        == EXIT_OK
    )
    config = next(a for a in json.loads(capsys.readouterr().out)["actions"] if a["kind"] == "engine-config")
    options = json.loads(config["content"])["storage-opts"]
    assert [option for option in options if option.startswith("dm.fs=")] == ["dm.fs=ext4"]


# 7. Config merges


def test_containerd_settings_of_the_same_pool_are_kept_unless_forced() -> None:
    text = (
        'version = 2\n[plugins."io.containerd.snapshotter.v1.devmapper"]\n  pool_name = "docker-thinpool"\n'
        '  root_path = "/srv/snapshots"\n  base_image_size = "20480MB"\n'
    )
    state = EngineState(observed=True, files={containerd_devmapper.CONFIG_TOML: text}, versions={"containerd": "1.6"})
    target = PoolTarget("docker", "thinpool", 6 * GiB)
    spec = PoolSpec(devices=("/dev/vda",), engine="containerd-devmapper")
    with pytest.raises(SpecError, match="root_path = '/srv/snapshots', base_image_size = '20480MB'"):
        containerd_devmapper.plan(spec, target, state)
    forced = PoolSpec(devices=("/dev/vda",), engine="containerd-devmapper", engine_options=EngineOptions(force=True))
    assert containerd_devmapper.plan(forced, target, state).actions


@pytest.mark.parametrize(
    ("path", "text", "words"),
    [
        ("/etc/docker/daemon.json", '{"storage-opts": "dm.fs=xfs"}', "'storage-opts' is not a list"),
        ("/etc/docker/daemon.json", "[" * 50_000 + "]" * 50_000, "nested too deeply"),
        ("/etc/containerd/config.toml", "version = 2\nplugins = 1\n", "'plugins' is not a table"),
    ],
)
def test_config_files_of_the_wrong_shape_are_refused_untouched(
    path: str, text: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    engine = "containerd-devmapper" if path.endswith(".toml") else "docker-devicemapper"
    state = EngineState(observed=True, files={path: text})
    observed = Observed(devices=virtual_disks([8 * GiB], ["/dev/vda"]).devices, engine=state)
    with pytest.raises(SpecError, match=words) as refused:
        planning.plan_host(PoolSpec(devices=("/dev/vda",), engine=engine), observed)
    assert "left untouched" in refused.value.problem and refused.value.fix


# 8. Watch commands


@pytest.mark.parametrize("seconds", ["-1", "0", "nan", "inf", "soon"])
def test_status_watch_takes_a_finite_positive_interval(seconds: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["status", "--watch", seconds])
    assert usage.value.code == 2 and "--watch" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["metrics", "--listen", "127.0.0.1:70000"], "port in 1-65535"),
        (["metrics", "--listen", "9720"], "not ADDRESS:PORT"),
        (["metrics", "--textfile", "/nonexistent-folder/thinpool.prom"], "mkdir -p /nonexistent-folder"),
    ],
)
def test_metrics_destinations_are_checked(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(argv, capsys, words, Context(ScriptedRunner(), Path("/"), euid=0))
