"""A tiny initramfs: static busybox, the virtio/9p/overlay modules, and an /init script.

/init mounts the host's root read-only over 9p, lays a tmpfs overlay on it (the guest can
write /etc, /var, /tmp; the host is never touched), mounts the read-write share and hands
over to the second stage. Written as a ``newc`` cpio archive by Python: no cpio needed.
"""

from __future__ import annotations

import gzip
import io
import shlex
from pathlib import Path

from thinpool.core.record import record
from thinpool.errors import MissingTool

BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
# What /init needs before the host's root is visible; dependencies come from modules.dep.
BOOT_MODULES = ("virtio_pci", "virtio_blk", "9pnet_virtio", "9p", "overlay")
NINEP_OPTIONS = "trans=virtio,version=9p2000.L,msize=512000,cache=mmap"


@record
class GuestLaunch:
    """What the second stage runs once the host's root is mounted in the guest."""

    stage2: Path
    share_tag: str
    share_mount: str
    arguments: tuple[str, ...]


def find_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise MissingTool("busybox is not installed", fix="apt-get install busybox-static")


def module_load_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Module paths (relative to ``modules_dir``) in an order insmod can load them."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        deps[target] = rest.split()
        by_name[Path(target).name.split(".ko")[0].replace("-", "_")] = target
    builtin = {
        Path(line).name.split(".ko")[0].replace("-", "_")
        for line in (modules_dir / "modules.builtin").read_text().splitlines()
    }
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in reversed(deps.get(path, [])):
            visit(dep)
        order.append(path)

    for name in wanted:
        key = name.replace("-", "_")
        if key in by_name:
            visit(by_name[key])
        elif key not in builtin:
            raise MissingTool(
                f"kernel module {name} is neither built in nor in {modules_dir}", fix="use another kernel"
            )
    return order


def init_script(modules: list[str], launch: GuestLaunch) -> str:
    bb = "/bin/busybox"
    loads = "\n".join(f"{bb} insmod /modules/{Path(path).name}" for path in modules)
    args = " ".join(shlex.quote(arg) for arg in launch.arguments)
    return f"""#!/bin/busybox sh
{bb} mkdir -p /proc /sys /dev /lower /rw /newroot
{bb} mount -t proc proc /proc
{bb} mount -t sysfs sysfs /sys
{bb} mount -t devtmpfs devtmpfs /dev
{loads}
{bb} mount -t 9p -o ro,{NINEP_OPTIONS} hostroot /lower || {{ echo "thinpool: no host root"; {bb} poweroff -f; }}
{bb} mount -t tmpfs -o mode=0755 tmpfs /rw
{bb} mkdir -p /rw/upper /rw/work
{bb} mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot
{bb} mkdir -p /newroot{launch.share_mount}
{bb} mount -t 9p -o {NINEP_OPTIONS} {launch.share_tag} /newroot{launch.share_mount}
{bb} mount --move /dev /newroot/dev
{bb} umount /proc /sys
exec {bb} switch_root /newroot /bin/bash {shlex.quote(str(launch.stage2))} {args}
"""


class _Cpio:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.inode = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self.inode += 1
        self.buffer.write(b"070701" + b"".join(f"{value:08X}".encode() for value in fields))
        self.buffer.write(encoded)
        self.buffer.write(b"\0" * (-(110 + len(encoded)) % 4))
        self.buffer.write(data)
        self.buffer.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, executable: bool = False) -> None:
        self._entry(name, 0o100755 if executable else 0o100644, data)

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buffer.getvalue()


def build(modules_dir: Path, launch: GuestLaunch, destination: Path) -> Path:
    modules = module_load_order(modules_dir, BOOT_MODULES)
    archive = _Cpio()
    for folder in ("bin", "dev", "modules", "proc", "sys"):
        archive.directory(folder)
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", find_busybox().read_bytes(), executable=True)
    for path in modules:
        archive.file(f"modules/{Path(path).name}", (modules_dir / path).read_bytes())
    archive.file("init", init_script(modules, launch).encode(), executable=True)
    destination.write_bytes(gzip.compress(archive.finish(), compresslevel=1))
    return destination
