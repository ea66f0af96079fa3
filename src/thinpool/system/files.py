"""Writing files safely: an exclusive temporary file beside the target, fsync, rename, fsync of the folder (so
that a power cut leaves the old file or the new one, never an empty one); backups never overwritten."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from thinpool.core.model import ENCODING, ERRORS
from thinpool.errors import ThinpoolError


class LockBusy(Protocol):
    """What a waited lock tells, given the text its holder wrote: that it waits, and the error once it gives up."""

    def waiting(self, holder: str) -> None: ...

    def refused(self, holder: str) -> Exception: ...


class UnsafeFile(ThinpoolError):
    """A path thinpool will not write through."""


def read_exactly(path: Path) -> str:
    """A file's text with nothing translated: CRLF stays CRLF, bytes that are not UTF-8 survive a write back."""
    return path.read_bytes().decode(ENCODING, ERRORS)


def _refuse_special(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise UnsafeFile(f"{path} is not a regular file", fix="remove it or name another file")


def resolve_target(path: Path, *, follow_symlink: bool) -> Path:
    """The file to replace: a symlink is refused, or (for config files) its target is written."""
    if path.is_symlink():
        if not follow_symlink:
            raise UnsafeFile(
                f"{path} is a symbolic link; thinpool does not write through it",
                fix="remove the link or name another file",
            )
        path = Path(os.path.realpath(path))
    _refuse_special(path)
    return path


def write_atomically(
    path: Path, text: str, *, follow_symlink: bool = False, keep_owner: bool = True, mode: int = 0o644
) -> Path:
    """Replace ``path`` with ``text``; returns the file written.

    With ``keep_owner`` (config files) a replaced file keeps its mode and owner; without it (a file
    thinpool makes, such as a saved plan) the new file is root's with ``mode``, whoever owned the old one.
    """
    target = resolve_target(path, follow_symlink=follow_symlink)
    make_folders(target.parent)
    old = target.stat() if keep_owner and target.exists() else None
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".thinpool-tmp", dir=target.parent)
    try:
        with os.fdopen(descriptor, "w", encoding=ENCODING, errors=ERRORS, newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, stat.S_IMODE(old.st_mode) if old else mode)
        if old is not None:
            os.chown(temporary, old.st_uid, old.st_gid)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    sync_folder(target.parent)
    return target


def create_secret(path: Path, data: bytes) -> bool:
    """``data`` at ``path``, mode 0400 (a folder it makes: 0700, only root enters), whole or not at all: written to a
    temporary file, synced, then linked to its name, which fails rather than replace a file there (a key
    already made is never overwritten). Returns False when ``path`` already existed."""
    folder = path.parent
    if not folder.is_dir():  # a folder that exists keeps its mode: /etc or /root are not thinpool's
        make_folders(folder.parent)
        folder.mkdir(mode=0o700)
        os.chmod(folder, 0o700)  # whatever the umask
        sync_folder(folder.parent)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".thinpool-tmp", dir=folder)
    try:
        os.fchmod(descriptor, 0o400)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
    finally:
        os.unlink(temporary)
    sync_folder(folder)
    return True


def sync_folder(folder: Path) -> None:
    """fsync a folder: the names made, renamed or removed in it are on the disk once this returns."""
    _fsync(folder, os.O_RDONLY | os.O_DIRECTORY)


def sync_file(path: Path) -> None:
    _fsync(path, os.O_RDONLY)


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder``, the folder itself last."""
    for directory, _subfolders, names in os.walk(folder, topdown=False):
        base = Path(directory)
        for name in names:
            if (base / name).is_file() and not (base / name).is_symlink():
                sync_file(base / name)
        sync_folder(base)


def make_folders(folder: Path) -> None:
    """``mkdir -p`` whose new folders survive a power cut (each one's parent synced)."""
    if folder.is_dir():
        return
    make_folders(folder.parent)
    with contextlib.suppress(FileExistsError):
        folder.mkdir()
    sync_folder(folder.parent)


def replace_synced(source: Path, target: Path) -> None:
    """Rename a finished file (or a folder already synced) over ``target``: its data first, then the
    folder's new name are synced, so that after a power cut ``target`` is the old one or the whole new one."""
    if source.is_file():
        sync_file(source)
    os.replace(source, target)
    sync_folder(target.parent)


def rename_synced(source: Path, target: Path) -> None:
    """Rename a file or folder and sync both folders the name left and entered."""
    os.rename(source, target)
    sync_folder(target.parent)
    if source.parent != target.parent:
        sync_folder(source.parent)


@contextlib.contextmanager
def exclusive_lock(path: Path, *, held_by_another: ThinpoolError) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` for the body; ``held_by_another`` is raised, without
    waiting, when another process holds it. The kernel drops the lock when its holder dies."""
    descriptor = _open_lock(path)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise held_by_another from None
        yield
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def waited_lock(
    path: Path, record: str, *, wait: float, busy: LockBusy, sleep: Callable[[float], None]
) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` for the body, trying again every 0.2 s for up to ``wait`` seconds
    (``busy.waiting`` hears once what the holder wrote, then ``busy.refused`` makes the error raised). Once
    held, ``record`` replaces the file's text. The kernel drops the lock when its holder dies."""
    descriptor = _open_lock(path)
    try:
        started = time.monotonic()
        deadline = started + wait
        told = False
        while not _locked(descriptor):
            holder = os.pread(descriptor, 4096, 0).decode(errors="replace")
            if time.monotonic() >= deadline:
                raise busy.refused(holder)
            # A holder writes its record just after it takes the lock: tell once it has (or after a second).
            if not told and (holder or time.monotonic() - started >= NAMELESS_HOLDER_WAIT):
                busy.waiting(holder)
                told = True
            sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, record.encode(), 0)
        yield
    finally:
        os.close(descriptor)


def _open_lock(path: Path) -> int:
    """A lock file, made if missing; never through a link (lock folders such as /run/lock are world-writable)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as error:
        raise UnsafeFile(
            f"cannot open the lock {path}: {error.strerror} (a link or something else that is not a plain file?)",
            fix=f"remove {path} (thinpool makes it again as a plain file), then run this again",
        ) from None


NAMELESS_HOLDER_WAIT = 1.0  # seconds a waiter gives a new holder to write who it is before it says "another"


def _locked(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def backup_name(path: Path, when: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return path.with_name(f"{path.name}.thinpool-{stamp}.bak")


def keep_backup(path: Path, when: float) -> Path:
    """Copy ``path`` to a new timestamped backup (mode kept); an earlier backup is never overwritten."""
    first = backup_name(path, when)
    data = path.read_bytes()
    for number in range(1000):
        candidate = first if number == 0 else first.with_name(f"{first.name}.{number}")
        try:
            descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IMODE(path.stat().st_mode))
        except FileExistsError:
            continue
        os.fchmod(descriptor, stat.S_IMODE(path.stat().st_mode))
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        sync_folder(candidate.parent)
        return candidate
    raise UnsafeFile(f"too many backups of {path} at {first.name}", fix="remove old backups")


def tree_digest(folder: Path) -> tuple[str, int]:
    """A sha256 over a folder's tree (each entry's relative path, kind, mode, owner, and its content or
    link target, in sorted order) and the bytes its files hold. Two trees with the same digest match."""
    import hashlib  # only migrate hashes trees: not on the watch commands' path

    digest = hashlib.sha256()
    total = 0
    for entry in sorted(_walk(folder)):
        info = entry.lstat()
        relative = entry.relative_to(folder).as_posix()
        digest.update(
            f"{relative}\0{stat.S_IFMT(info.st_mode)}\0{stat.S_IMODE(info.st_mode)}\0"
            f"{info.st_uid}\0{info.st_gid}\0".encode(ENCODING, ERRORS)
        )
        if stat.S_ISLNK(info.st_mode):
            digest.update(os.readlink(entry).encode(ENCODING, ERRORS))
        elif stat.S_ISREG(info.st_mode):
            total += info.st_size
            with entry.open("rb") as handle:
                for block in iter(lambda: handle.read(1024 * 1024), b""):
                    digest.update(block)
        digest.update(b"\n")
    return digest.hexdigest(), total


def _walk(folder: Path) -> Iterator[Path]:
    for directory, subfolders, names in os.walk(folder):
        base = Path(directory)
        for name in (*subfolders, *names):
            yield base / name
