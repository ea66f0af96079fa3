"""Metadata backup and repair without the VM: the rules, and the commands through a scripted runner."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from thinpool.app.context import Context
from thinpool.app.metrics import Reading, exposition
from thinpool.cli import EXIT_OK, main
from thinpool.core import backup, doctor, repair
from thinpool.core.health import PoolStatus
from thinpool.core.lvm import commands, report
from thinpool.core.programs import argv as programs
from thinpool.system import files, observe
from thinpool.testing import ScriptedRunner

from . import builders
from .builders import (
    DOCKER_VG_ROW,
    VG_TEXT,
    expect_pool_lvm,
    lv_row,
    lvm_report,
    mount_table,
    pool_report,
    status_report,
)

DATA = Path(__file__).resolve().parents[1] / "fixtures/lvm-2.03.16"
NOW = 1_800_000_000
TPOOL = "docker-thinpool-tpool"
TMETA = "/dev/mapper/docker-thinpool_tmeta"


def dump_xml(transaction: int = 7, devices: dict[int, int] | None = None) -> str:
    devices = {1: 1600, 2: 12} if devices is None else devices
    body = "".join(
        f'<device dev_id="{dev_id}" mapped_blocks="{mapped}" transaction="0" creation_time="0" snap_time="0">'
        f'<range_mapping origin_begin="0" data_begin="0" length="{mapped}" time="0"/></device>'
        for dev_id, mapped in devices.items()
    )
    return (
        f'<superblock uuid="" time="3" transaction="{transaction}" flags="0" version="2" data_block_size="1024" '
        f'nr_data_blocks="6144">{body}</superblock>'
    )


def test_a_dump_is_summarized_as_it_streams() -> None:
    summary = backup.summarize_dump(io.BytesIO(dump_xml().encode()))
    assert summary == backup.DumpSummary(7, 1024, 6144, {1: 1600, 2: 12})
    with pytest.raises(backup.BackupError, match="not a complete metadata dump"):
        backup.summarize_dump(io.BytesIO(dump_xml().encode()[:-20]))  # cut short: thin_dump was killed


def test_the_kernels_view_of_a_pool_is_read_from_dmsetup_status() -> None:
    lines = dict(line.split(": ", 1) for line in (DATA / "dmsetup-status.txt").read_text().splitlines())
    found = report.parse_thin_pool_status(lines[TPOOL])
    assert found == report.ThinPoolTarget(2, held_metadata_root=False, mode="rw", needs_check=False, data_blocks=7200)
    assert report.parse_thin_pool_status(lines["docker-thinpool"]) is None  # the linear layer over it
    held = report.parse_thin_pool_status(
        "0 8 thin-pool 5 9/16 2/72 1234 ro discard_passdown queue_if_no_space needs_check 4"
    )
    assert held is not None and held.held_metadata_root and held.mode == "ro" and held.needs_check
    failed = report.parse_thin_pool_status("0 8 thin-pool Fail")
    assert failed is not None and failed.failed


def _made(created: int, transaction: int) -> backup.Backup:
    return backup.Backup("docker", "thinpool", created, transaction, transaction, backup.LIVE, 1024, 6144, {1: 2})


def test_a_backup_is_due_when_missing_when_the_metadata_moved_and_daily() -> None:
    last = _made(NOW - 600, 7)
    assert backup.due(None, 7, NOW) == "the pool has no backup yet"
    assert backup.due(last, 7, NOW) == ""  # nothing changed
    assert backup.due(last, 9, NOW) == ""  # changed, but the last one is younger than the interval
    assert "7 -> 9" in backup.due(last, 9, NOW, every=600)
    assert "24 hours old" in backup.due(_made(NOW - 86400, 7), 7, NOW)  # unchanged, but a day old
    assert backup.due(_made(NOW - 7200, 7), None, NOW) == ""  # inactive: its metadata cannot move


def test_rotation_keeps_the_newest_and_manifests_read_back() -> None:
    made = [_made(NOW + n, n) for n in range(5)]
    assert backup.to_remove(reversed(made), 2) == made[:3]
    assert backup.parse_manifest(json.loads(json.dumps(made[0].to_dict()))) == made[0]
    assert backup.parse_manifest({**made[0].to_dict(), "schema_version": 99}) is None
    assert backup.parse_manifest({**made[0].to_dict(), "created": "soon"}) is None


def _writes(path: Path, text: str) -> Callable[[], None]:
    """What the real command does to the disk: writes ``text`` at ``path``."""

    def write() -> None:
        path.write_text(text)

    return write


def _expect_backup(runner: ScriptedRunner, folder: Path, *, held: str = "-", transaction: int = 7) -> None:
    """The commands of one live backup, thin_dump and vgcfgbackup writing their files as the real ones do."""
    expect_pool_lvm(runner)
    status = (
        f"0 7372800 thin-pool {transaction} 1649/16384 200/7200 {held} rw discard_passdown queue_if_no_space - 1024"
    )
    runner.expect(commands.dmsetup_status(TPOOL), stdout=status)
    if held != "-":
        runner.expect(commands.dmsetup_message(TPOOL, "release_metadata_snap"))
    runner.expect(commands.dmsetup_message(TPOOL, "reserve_metadata_snap"))
    raw = folder / ".dump.partial"
    runner.expect(commands.thin_dump(TMETA, str(raw), metadata_snap=True), then=_writes(raw, dump_xml(transaction)))
    runner.expect(commands.dmsetup_message(TPOOL, "release_metadata_snap"))
    runner.expect(commands.thin_dump_version(), stdout="0.9.0\n")


def _expect_vgcfgbackup(runner: ScriptedRunner, folder: Path, created: int, transaction: int = 7) -> None:
    vg_file = folder / (backup.stem(created, transaction) + backup.VG_SUFFIX)
    runner.expect(commands.vgcfgbackup("docker", str(vg_file)), then=_writes(vg_file, "docker { seqno = 9 }\n"))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return float(self.now)


def _context(runner: ScriptedRunner, root: Path, clock: Clock | None = None) -> Context:
    statvfs = mount_table(root, 300 * 1024 * 1024)
    return Context(runner=runner, root=root, euid=0, sleep=lambda _: None, clock=clock or Clock(), statvfs=statvfs)


def test_backup_dumps_from_a_held_snapshot_records_the_pool_and_rotates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, clock = tmp_path / "var/lib/thinpool/backups/docker-thinpool", Clock()
    runner = ScriptedRunner()
    for n in range(3):
        clock.now = NOW + 3600 * n
        _expect_backup(runner, folder, held="1234" if n == 1 else "-", transaction=7 + n)
        _expect_vgcfgbackup(runner, folder, clock.now, 7 + n)
        assert main(["backup", "--keep", "2", "--json"], context=_context(runner, tmp_path, clock)) == EXIT_OK
    assert runner.exhausted  # the snapshot left held (a killed run) was released before a new one was reserved
    made = json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")
    assert made["transaction_id"] == 9 and made["lvm_transaction_id"] == 7 and made["devices"] == {"1": 1600, "2": 12}
    assert made["method"] == backup.LIVE and made["thin_dump_version"] == "0.9.0"
    names = sorted(path.name for path in folder.iterdir())
    stems = [backup.stem(NOW + 3600 * n, 7 + n) for n in (1, 2)]  # the oldest was rotated out
    assert names == sorted(stem + suffix for stem in stems for suffix in (".json", ".thin.xml.gz", ".vg"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert gzip.decompress((folder / f"{stems[1]}.thin.xml.gz").read_bytes()).decode() == dump_xml(9)


def test_an_inactive_pool_is_read_through_its_component_and_a_failed_dump_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "var/lib/thinpool/backups/docker-thinpool"
    folder.mkdir(parents=True)
    (folder / "20260101T000000Z-tx3.thin.xml.gz").write_bytes(b"left by a killed run, no manifest")
    runner = ScriptedRunner()
    expect_pool_lvm(runner, active=False)
    runner.expect(commands.lvchange_component("docker", "thinpool_tmeta", True))
    runner.expect(
        commands.thin_dump(TMETA, str(folder / ".dump.partial"), metadata_snap=False),
        returncode=1,
        stderr="bad checksum in superblock",
    )
    runner.expect(commands.lvchange_component("docker", "thinpool_tmeta", False))
    assert main(["backup"], context=_context(runner, tmp_path)) == 1
    assert runner.exhausted  # the component was deactivated although the dump failed
    assert "bad checksum in superblock" in capsys.readouterr().err
    assert list(folder.iterdir()) == []  # the killed run's leftover and this run's partial dump are gone


def test_maintain_backs_up_a_pool_whose_metadata_moved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, clock = tmp_path / "var/lib/thinpool/backups/docker-thinpool", Clock()
    runner = ScriptedRunner()
    _expect_backup(runner, folder)
    _expect_vgcfgbackup(runner, folder, NOW)
    assert main(["backup"], context=_context(runner, tmp_path, clock)) == EXIT_OK
    clock.now = NOW + 3600
    for transaction, taken in ((7, False), (8, True)):
        # No autoextend profile under this root: the pool already fails writes when full, as it should.
        runner.expect(commands.status_report("docker"), stdout=pool_report(mapped="0.10", when_full="error"))
        status = f"0 7372800 thin-pool {transaction} 1649/16384 200/7200 - rw discard_passdown queue_if_no_space - 1024"
        runner.expect(commands.dmsetup_status(TPOOL), stdout=status)
        if taken:
            _expect_backup(runner, folder, transaction=8)
            _expect_vgcfgbackup(runner, folder, clock.now, 8)
        capsys.readouterr()
        assert (
            main(
                ["maintain", "docker/thinpool", "--json", "--check-every", "0"],
                context=_context(runner, tmp_path, clock),
            )
            == EXIT_OK
        )
        pool = json.loads(capsys.readouterr().out)["pools"][0]
        assert bool(pool["backup"]["taken"]) is taken, pool["backup"]
    assert runner.exhausted and "7 -> 8" in pool["backup"]["reason"]


def test_doctor_warns_of_a_missing_or_stale_backup_and_metrics_carry_its_age() -> None:
    status = builders.pool_status(status_report(), "docker", "thinpool", {})

    def codes(found: PoolStatus) -> set[str]:
        return {finding.code for finding in doctor.diagnose(found)}

    assert not {"metadata-backup-missing", "metadata-backup-stale"} & codes(status)  # not looked at
    missing = replace(status, backup_checked=True)
    assert "metadata-backup-missing" in codes(missing)
    assert "metadata-backup-stale" in codes(replace(missing, backup_age=backup.STALE_AFTER))
    assert not {"metadata-backup-missing", "metadata-backup-stale"} & codes(replace(missing, backup_age=3600))
    text = exposition([Reading("docker", "thinpool", missing)])
    assert 'thinpool_metadata_backup_age_seconds{vg="docker",pool="thinpool"} +Inf' in text
    text = exposition([Reading("docker", "thinpool", replace(missing, backup_age=3600))])
    assert 'thinpool_metadata_backup_age_seconds{vg="docker",pool="thinpool"} 3600.0' in text


def test_the_metadata_is_diagnosed_damaged_lost_or_healthy() -> None:
    summary = backup.DumpSummary(7, 1024, 6144, {1: 10, 2: 0})
    volumes = {"vol1": 1, "vol2": 2}
    damaged = repair.diagnose(repair.MetadataCheck(False, "bad checksum in superblock\n"), 7, volumes)
    assert damaged.state == repair.DAMAGED and "bad checksum in superblock" in damaged.reason
    formatted = backup.DumpSummary(0, 1024, 6144, {})  # a zeroed superblock the kernel formatted anew
    lost = repair.diagnose(repair.MetadataCheck(True, summary=formatted), 7, volumes)
    assert lost.state == repair.LOST and lost.missing == ("vol1", "vol2")
    assert repair.diagnose(repair.MetadataCheck(True, summary=summary), 7, volumes).state == repair.HEALTHY
    ahead = replace(summary, transaction_id=9, devices={1: 10, 2: 0, 5: 3})  # Docker's devicemapper was here
    found = repair.diagnose(repair.MetadataCheck(True, summary=ahead), 7, volumes)
    assert found.state == repair.AHEAD and found.unknown_devices == (5,) and found.kernel_transaction_id == 9


def test_lvms_transaction_id_is_changed_in_the_pools_segment_only() -> None:
    edited = repair.set_transaction_id(VG_TEXT, "thinpool", 1, 4)
    changed = [(a, b) for a, b in zip(VG_TEXT.splitlines(), edited.splitlines(), strict=True) if a != b]
    assert changed == [("\t\t\t\ttransaction_id = 1", "\t\t\t\ttransaction_id = 4")]
    assert edited.index("transaction_id = 4") < edited.index("other {")  # the other pool keeps its id
    with pytest.raises(repair.RepairRefused, match="0 transaction_id = 2 lines"):
        repair.set_transaction_id(VG_TEXT, "thinpool", 2, 4)


def test_the_superblock_line_gets_the_pools_data_blocks_and_keeps_every_other_byte() -> None:
    live = b'<superblock uuid="" time="0" transaction="1" version="2" data_block_size="1024" nr_data_blocks="0">\n'
    assert repair.superblock_with_data_blocks(live, 6680) == live.replace(b'"0">', b'"6680">')
    without = b'<superblock uuid="" transaction="1" data_block_size="128">\r\n'
    assert (
        repair.superblock_with_data_blocks(without, 9) == b'<superblock uuid="" transaction="1" '
        b'data_block_size="128" nr_data_blocks="9">\r\n'
    )
    empty = b'<superblock transaction="0" data_block_size="128"/>\n'
    assert (
        repair.superblock_with_data_blocks(empty, 3) == b'<superblock transaction="0" data_block_size="128" '
        b'nr_data_blocks="3"/>\n'
    )
    with pytest.raises(repair.RepairRefused, match="superblock"):
        repair.superblock_with_data_blocks(b"<?xml garbage\n", 3)


def test_the_backup_restored_is_the_newest_that_maps_every_thin_volume() -> None:
    old, new = _made(NOW, 5), replace(_made(NOW + 60, 6), devices={1: 2})
    volumes = {"vol1": 1}
    assert repair.choose_backup([old, new], volumes, 1024) == new
    with pytest.raises(repair.RepairRefused, match=r"has no map for vol9, made or changed after it"):
        repair.choose_backup([replace(old, devices={1: 2}), new], {"vol1": 1, "vol9": 9}, 1024)
    with pytest.raises(repair.RepairRefused, match="no backup to restore them from"):
        repair.choose_backup([], volumes, 1024)
    assert repair.next_meta_name("thinpool", ["thinpool", "thinpool_meta0"]) == "thinpool_meta1"


def test_repair_refuses_while_a_thin_volume_is_mounted_and_stops_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = ScriptedRunner()
    pool = lv_row("thinpool", segtype="thin-pool", lv_attr="twi-aotz--", transaction_id="7")
    volume = lv_row("vol", segtype="thin", pool_lv="thinpool", thin_id="1", lv_kernel_major="253", lv_kernel_minor="4")
    vg = DOCKER_VG_ROW
    runner.expect(commands.lvm_report(), stdout=lvm_report(lvs=[pool, volume], vgs=[vg]))
    runner.expect(commands.dmsetup_info(), stdout="docker-vol;LVM-x;1;L--w\ndocker-thinpool-tpool;LVM-y;1;L--w\n")
    runner.expect(programs.fuser_mount("/dev/docker/vol"), stdout="  4242c 77")
    (tmp_path / "proc/4242").mkdir(parents=True)
    (tmp_path / "proc/4242/comm").write_text("dockerd\n")
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(
        "40 1 253:4 / /mnt/my\\040vol rw - ext4 /dev/mapper/docker-vol rw\n"  # the kernel's escape of a space
        "41 1 0:50 / /mnt/share rw - nfs4 server:/export rw\n"  # never asked: its statvfs may hang
    )
    sizes = os.statvfs_result((4096, 4096, 256, 128, 128, 0, 0, 0, 0, 255))
    asked: list[str] = []

    def statvfs(path: str) -> os.statvfs_result:
        asked.append(path)
        return sizes

    ctx = Context(runner=runner, root=tmp_path, euid=0, statvfs=statvfs)
    assert main(["repair", "--yes"], context=ctx) == 1
    assert runner.exhausted  # nothing was stopped
    err = capsys.readouterr().err
    assert "docker/vol (mounted on /mnt/my vol; used by 4242 (dockerd), 77 (?))" in err and "fuser -vm" in err
    assert asked == [str(tmp_path / "mnt/my vol")]


def test_repair_without_yes_says_what_it_would_do_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = ScriptedRunner()
    assert main(["repair", "docker/thinpool"], context=_context(runner, tmp_path)) == 1
    out = capsys.readouterr().out
    assert not runner.history and "lvconvert --repair" in out and "run it again with --yes" in out


def test_a_backup_or_repair_while_another_holds_the_pool_is_refused_and_maintain_waits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = tmp_path / backup.lock("docker", "thinpool").lstrip("/")
    runner = ScriptedRunner()
    runner.expect(commands.status_report("docker"), stdout=pool_report(mapped="0.10", when_full="error"))
    runner.expect(
        commands.dmsetup_status(TPOOL), stdout="0 8 thin-pool 7 1/16 2/72 - rw discard_passdown queue_if_no_space - 4"
    )
    idle = ScriptedRunner()
    with files.exclusive_lock(lock, held_by_another=backup.busy("docker", "thinpool")):  # a repair at work
        assert main(["backup"], context=_context(idle, tmp_path)) == 1
        assert "another thinpool backup or repair of docker/thinpool is running" in capsys.readouterr().err
        assert main(["repair", "--yes"], context=_context(idle, tmp_path)) == 1
        assert "is running" in capsys.readouterr().err and not idle.history  # nothing was run
        assert main(["maintain", "docker/thinpool", "--json"], context=_context(runner, tmp_path)) == EXIT_OK
    pool = json.loads(capsys.readouterr().out)["pools"][0]
    assert pool["backup"]["taken"] is None and "not now: another thinpool backup" in pool["backup"]["reason"]
    assert runner.exhausted


def test_repair_says_when_the_kept_original_leaves_autoextend_no_room() -> None:
    starved = builders.status(free=0)
    warning = repair.kept_room_warning(starved, {"thinpool_meta0": 12})
    assert "docker/thinpool_meta0 takes 12 extents of docker, which has 0 free" in warning
    assert "lvremove docker/thinpool_meta0" in warning and "thinpool grow" in warning
    assert repair.kept_room_warning(builders.status(free=2000), {"thinpool_meta0": 12}) == ""  # room for the next step
    assert repair.kept_room_warning(starved, {}) == ""  # nothing kept: doctor's no-room-to-autoextend says it


def test_a_folder_given_with_to_is_where_status_and_later_backups_look(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere, clock = tmp_path / "srv/pool-backups", Clock()
    clock.now = NOW
    runner = ScriptedRunner()
    _expect_backup(runner, elsewhere)
    _expect_vgcfgbackup(runner, elsewhere, clock.now, 7)
    context = _context(runner, tmp_path, clock)
    assert main(["backup", "--to", str(elsewhere)], context=context) == EXIT_OK
    assert observe.backup_folder("docker", "thinpool", tmp_path) == elsewhere
    capsys.readouterr()
    assert main(["backup", "--list", "--json"], context=context) == EXIT_OK  # no --to: the remembered folder
    listed = json.loads(capsys.readouterr().out)
    assert listed["folder"] == str(elsewhere) and len(listed["backups"]) == 1
    clock.now = NOW + 60
    runner.expect(commands.status_report("docker"), stdout=builders.status_report())
    assert main(["status", "--json"], context=context) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["backup_age"] == 60  # status sees it: doctor does not call it missing


@pytest.mark.parametrize(
    ("vg", "pool", "volume", "vg_tags", "fix"),
    [
        (
            "pve",
            "data",
            "vm-100-disk-0",
            "",
            "shut down the guests whose disks are on pve/data (qm shutdown ID, pct shutdown ID)",
        ),
        # Only the VG's tag says Incus here: the pool and its volume have names of their own.
        ("ssd", "fast", "web", "incus_pool", "stop the instances on it (incus stop --all, or each one)"),
    ],
)
def test_repair_of_an_owners_pool_in_use_says_how_its_owner_stops_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], vg: str, pool: str, volume: str, vg_tags: str, fix: str
) -> None:
    runner = ScriptedRunner()
    pool_row = lv_row(pool, vg_name=vg, segtype="thin-pool", lv_attr="twi-aotz--", transaction_id="3")
    disk = lv_row(volume, vg_name=vg, segtype="thin", pool_lv=pool, thin_id="1")
    vg_row = DOCKER_VG_ROW | {"vg_name": vg, "vg_tags": vg_tags}
    runner.expect(commands.lvm_report(), stdout=lvm_report(lvs=[pool_row, disk], vgs=[vg_row]))
    opened = commands.dm_name(vg, volume)
    runner.expect(commands.dmsetup_info(), stdout=f"{opened};LVM-x;1;L--w\n")  # its user has it open
    runner.expect(programs.fuser_mount(f"/dev/{vg}/{volume}"), stdout="")
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text("")
    assert main(["repair", f"{vg}/{pool}", "--yes"], context=Context(runner=runner, root=tmp_path, euid=0)) == 1
    assert runner.exhausted  # nothing was stopped
    err = capsys.readouterr().err
    assert f"{vg}/{volume} (open)" in err
    assert f"fix: {fix}, unmount" in err
