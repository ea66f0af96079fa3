"""A tiny initramfs: static busybox, the virtio/9p/overlay modules, and an /init script.

/init mounts the guest's root (a pinned release's, or the host's own) read-only over 9p, lays an
overlay on it whose writable layer is a tmpfs, or an ext4 state disk that outlives a reboot (the
guest can write /etc, /var, /tmp; the shared root is never touched), mounts the read-write share,
copies the second stage and the agent in, and hands over: to the second stage as PID 1, or to
the root's own systemd with the agent as a unit. Written as a ``newc`` cpio archive by Python.
"""

from __future__ import annotations

import gzip
import io
import lzma
import shlex
from dataclasses import dataclass
from pathlib import Path

from thinpool.errors import MissingTool

BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
# What /init needs before the host's root is visible; dependencies come from modules.dep.
BOOT_MODULES = ("virtio_pci", "virtio_blk", "9pnet_virtio", "9p", "overlay")
# The state disk that keeps the overlay's writable layer across reboots: ext4 on virtio-scsi
# (/dev/sda), so the test disks keep their names (/dev/vda, /dev/vdb ...).
STATE_MODULES = ("virtio_scsi", "sd_mod", "crc32c_generic", "ext4")  # ext4 asks the crypto API for crc32c
NINEP_OPTIONS = "trans=virtio,version=9p2000.L,msize=512000,cache=mmap"
GUEST_FOLDER = "/.thinpool-vm"  # where the second stage and the agent are copied in the guest
AGENT_UNIT = "thinpool-vm-agent.service"


@dataclass(frozen=True)
class GuestLaunch:
    """What runs once the guest's root is mounted: the second stage with its arguments, or systemd."""

    stage2: Path
    share_tag: str
    share_mount: str
    arguments: tuple[str, ...]
    agent: Path | None = None  # copied in beside the second stage
    systemd: bool = False  # boot the root's systemd, the agent as a unit
    state_disk: bool = False  # the overlay's writable layer on /dev/sda (ext4), kept across reboots


def find_busybox(root: Path = Path("/")) -> Path:
    """A static busybox: the guest root's own first, else this host's."""
    for base in dict.fromkeys((root, Path("/"))):
        for candidate in BUSYBOX_CANDIDATES:
            found = base / candidate.relative_to("/")
            if found.is_file():
                return found
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


def module_file_name(path: str) -> str:
    """The name a module has in the initramfs: compressed modules (6.12's .ko.xz) are stored plain."""
    return Path(path).name.removesuffix(".xz")


def module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.suffix == ".xz" else data


def _writable_layer(launch: GuestLaunch) -> str:
    bb = "/bin/busybox"
    if not launch.state_disk:
        return f"{bb} mount -t tmpfs -o mode=0755 tmpfs /rw"
    return (
        f"for i in $({bb} seq 100); do [ -b /dev/sda ] && break; {bb} sleep 0.1; done\n"
        f"{bb} mount -t ext4 /dev/sda /rw || {{ echo 'thinpool: no state disk'; {bb} poweroff -f; }}"
    )


def agent_unit(launch: GuestLaunch) -> str:
    """The unit that runs the second stage under the root's systemd, once the system is up."""
    args = " ".join(shlex.quote(arg) for arg in launch.arguments)
    return (
        f"[Unit]\nDescription=thinpool VM agent\nAfter=basic.target\n\n[Service]\n"
        f"ExecStart=/bin/bash {GUEST_FOLDER}/{launch.stage2.name} {args}\n"
    )


def _hand_over(launch: GuestLaunch) -> str:
    bb = "/bin/busybox"
    if not launch.systemd:
        args = " ".join(shlex.quote(arg) for arg in launch.arguments)
        return f"exec {bb} switch_root /newroot /bin/bash {GUEST_FOLDER}/{launch.stage2.name} {args}"
    wants = "/newroot/etc/systemd/system/multi-user.target.wants"
    return (
        f"{bb} cp /{AGENT_UNIT} /newroot/etc/systemd/system/{AGENT_UNIT}\n"
        f"{bb} mkdir -p {wants} && {bb} ln -sf ../{AGENT_UNIT} {wants}/{AGENT_UNIT}\n"
        f"exec {bb} switch_root /newroot /lib/systemd/systemd"
    )


def init_script(modules: list[str], launch: GuestLaunch) -> str:
    bb = "/bin/busybox"
    loads = "\n".join(f"{bb} insmod /modules/{module_file_name(path)}" for path in modules)
    copies = " ".join(f"/{path.name}" for path in (launch.stage2, launch.agent) if path is not None)
    return f"""#!/bin/busybox sh
{bb} mkdir -p /proc /sys /dev /lower /rw /newroot
{bb} mount -t proc proc /proc
{bb} mount -t sysfs sysfs /sys
{bb} mount -t devtmpfs devtmpfs /dev
{loads}
{bb} mount -t 9p -o ro,{NINEP_OPTIONS} hostroot /lower || {{ echo "thinpool: no guest root"; {bb} poweroff -f; }}
{_writable_layer(launch)}
{bb} mkdir -p /rw/upper /rw/work
{bb} mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot
{bb} mkdir -p /newroot{launch.share_mount} /newroot{GUEST_FOLDER}
{bb} cp {copies} /newroot{GUEST_FOLDER}/
{bb} mount -t 9p -o {NINEP_OPTIONS} {launch.share_tag} /newroot{launch.share_mount}
{bb} mount --move /dev /newroot/dev
{bb} umount /proc /sys
{_hand_over(launch)}
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


def build(modules_dir: Path, launch: GuestLaunch, destination: Path, root: Path = Path("/")) -> Path:
    modules = module_load_order(modules_dir, BOOT_MODULES + (STATE_MODULES if launch.state_disk else ()))
    archive = _Cpio()
    for folder in ("bin", "dev", "modules", "proc", "sys"):
        archive.directory(folder)
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", find_busybox(root).read_bytes(), executable=True)
    for path in modules:
        archive.file(f"modules/{module_file_name(path)}", module_bytes(modules_dir / path))
    for script in (launch.stage2, launch.agent):
        if script is not None:
            archive.file(script.name, script.read_bytes(), executable=True)
    if launch.systemd:
        archive.file(AGENT_UNIT, agent_unit(launch).encode())
    archive.file("init", init_script(modules, launch).encode(), executable=True)
    destination.write_bytes(gzip.compress(archive.finish(), compresslevel=1))
    return destination
