"""system.files syncs what it renames: the file's data before the rename, the folder's entry after it.

A power cut's effects are proven in the VM (tests/vm/test_power_cut.py); here, which descriptors are
fsynced and in what order, by watching os.fsync."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from thinpool.system import files


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each os.fsync was given: 'dir NAME' or 'file NAME'."""
    seen: list[str] = []
    real = os.fsync

    def watched(descriptor: int) -> None:
        info = os.fstat(descriptor)
        path = Path(os.readlink(f"/proc/self/fd/{descriptor}"))
        seen.append(f"{'dir' if stat.S_ISDIR(info.st_mode) else 'file'} {path.name}")
        real(descriptor)

    monkeypatch.setattr(os, "fsync", watched)
    return seen


def test_write_atomically_syncs_the_file_then_its_folder(tmp_path: Path, synced: list[str]) -> None:
    target = tmp_path / "etc" / "daemon.json"
    files.write_atomically(target, "{}\n")
    assert target.read_text() == "{}\n"
    assert synced[0] == "dir " + tmp_path.name  # the new folder etc/ made durable in its parent
    assert synced[1].startswith("file .daemon.json.") and synced[1].endswith(".thinpool-tmp")
    assert synced[2:] == ["dir etc"]  # the rename, after the data


def test_a_kept_backup_is_synced_with_its_folder(tmp_path: Path, synced: list[str]) -> None:
    original = tmp_path / "fstab"
    original.write_text("UUID=1 / ext4 defaults 0 1\n")
    kept = files.keep_backup(original, 0.0)
    assert kept.read_text() == original.read_text()
    assert synced == [f"file {kept.name}", f"dir {tmp_path.name}"]


def test_replace_synced_syncs_the_data_before_the_name(tmp_path: Path, synced: list[str]) -> None:
    partial = tmp_path / "dump.partial"
    partial.write_bytes(b"x" * 10)
    files.replace_synced(partial, tmp_path / "dump")
    assert (tmp_path / "dump").read_bytes() == b"x" * 10 and not partial.exists()
    assert synced == ["file dump.partial", f"dir {tmp_path.name}"]  # its data synced before the rename


def test_rename_synced_syncs_both_folders(tmp_path: Path, synced: list[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "docker").mkdir()
    files.rename_synced(tmp_path / "a" / "docker", tmp_path / "b" / "docker.aside")
    assert (tmp_path / "b" / "docker.aside").is_dir()
    assert synced == ["dir b", "dir a"]


def test_sync_tree_syncs_files_before_their_folders(tmp_path: Path, synced: list[str]) -> None:
    (tmp_path / "saved" / "etc").mkdir(parents=True)
    (tmp_path / "saved" / "etc" / "fstab").write_text("x")
    (tmp_path / "saved" / "etc" / "link").symlink_to("fstab")
    files.sync_tree(tmp_path / "saved")
    assert synced == ["file fstab", "dir etc", "dir saved"]


def test_the_per_pool_lock_is_never_opened_through_a_link(tmp_path: Path) -> None:
    """A link planted where a backup's lock goes is refused with the fix; the file it names is untouched."""
    target = tmp_path / "shadow"
    target.write_text("root:x\n")
    lock = tmp_path / "lock" / "docker-thinpool.lock"
    lock.parent.mkdir()
    lock.symlink_to(target)
    opened = files.exclusive_lock(lock, held_by_another=files.UnsafeFile("busy"))
    with pytest.raises(files.UnsafeFile, match=r"cannot open the lock .*docker-thinpool\.lock") as refused:
        opened.__enter__()
    assert refused.value.fix == f"remove {lock} (thinpool makes it again as a plain file), then run this again"
    assert target.read_text() == "root:x\n" and oct(target.stat().st_mode & 0o777) != "0o600"
