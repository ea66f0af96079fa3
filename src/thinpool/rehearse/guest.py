"""Pinned guest systems: a Debian release's own root, built from its packages, for the VM to boot.

A guest root is made once with mmdebstrap from the release's archive (the mirror this host's apt
uses), with that release's kernel, lvm2, thin-provisioning-tools, engines and python3, and cached
under ``/var/cache/thinpool/guests/RELEASE-KEY`` (KEY: a hash of the recipe, so a changed package
list builds a new root, and the release's older roots go once it is built, unless a running VM shares
one). The VM shares it read-only under a throwaway overlay: nothing of the host
but the hardware reaches the guest, and nothing the guest does reaches the cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from thinpool.core.programs import argv as programs
from thinpool.errors import MissingTool, ThinpoolError
from thinpool.rehearse.kernel import Kernel
from thinpool.system.runner import Runner

CACHE_ENV = "THINPOOL_GUEST_CACHE"
DEFAULT_CACHE = Path("/var/cache/thinpool/guests")
RECIPE_VERSION = 2  # bumped whenever the steps below change what a root holds
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# What every guest holds: the kernel, systemd and udev (for the boots that run them), what thinpool
# needs and drives, the engines, the monitoring stack, Ansible, and what the tests use to make images.
COMMON_PACKAGES = (
    "linux-image-amd64", "systemd", "systemd-sysv", "udev", "dbus", "kmod", "procps", "iproute2", "psmisc",
    "util-linux", "e2fsprogs", "xfsprogs", "lvm2", "dmeventd", "thin-provisioning-tools", "cryptsetup-bin",
    "python3", "python3-tomlkit", "python3-prometheus-client", "python3-cryptography",
    "docker.io", "containerd", "runc", "tini", "iptables", "dnsmasq-base",
    "prometheus", "prometheus-node-exporter", "ansible-core", "busybox-static",
    "apparmor",  # as on Debian's default install: with securityfs mounted, dockerd loads its profile with it
)  # fmt: skip
# What systemd-cryptenroll and systemd-cryptsetup load to use a TPM2 (systemd only suggests them), by release.
TPM2_LIBRARIES_12 = ("libtss2-esys-3.0.2-0", "libtss2-mu0", "libtss2-rc0", "libtss2-tcti-device0")
TPM2_LIBRARIES_13 = ("libtss2-esys-3.0.2-0t64", "libtss2-mu-4.0.1-0t64", "libtss2-rc0t64", "libtss2-tcti-device0t64")
# Services Debian enables on install that a test starts itself when it needs them (a boot under
# emulation pays for every service it starts).
QUIET_UNITS = (
    "docker.service", "docker.socket", "containerd.service", "prometheus.service",
    "prometheus-node-exporter.service", "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer",
    "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer", "dpkg-db-backup.timer",
    "prometheus-node-exporter-apt.timer", "prometheus-node-exporter-nvme.timer",
    "prometheus-node-exporter-smartmon.timer", "prometheus-node-exporter-ipmitool-sensor.timer",
    "prometheus-node-exporter-mellanox-hca-temp.timer", "systemd-timesyncd.service",
)  # fmt: skip
# The same for what only some releases hold (disabled in a command of their own: one missing unit
# fails the whole command).
QUIET_RELEASE_UNITS = ("incus.socket", "incus-user.socket", "incus-startup.service", "lxcfs.service")


@dataclass(frozen=True)
class Release:
    """A Debian release the VM can boot: its name for thinpool, its suite, and what its root holds."""

    name: str
    suite: str
    packages: tuple[str, ...]
    description: str

    def recipe_key(self, mirror: str) -> str:
        recipe = {"suite": self.suite, "packages": sorted(self.packages), "mirror": mirror, "v": RECIPE_VERSION}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


RELEASES: dict[str, Release] = {
    "debian-12": Release(
        "debian-12", "bookworm", (*COMMON_PACKAGES, *TPM2_LIBRARIES_12),
        "Debian 12: lvm2 2.03.16, thin-provisioning-tools 0.9, kernel 6.1, docker.io 20.10 (devicemapper)",
    ),
    "debian-13": Release(
        "debian-13", "trixie",
        (*COMMON_PACKAGES, "docker-cli", "podman", "incus-base", "systemd-cryptsetup", *TPM2_LIBRARIES_13),
        "Debian 13: lvm2 2.03.31, thin-provisioning-tools 1.1, kernel 6.12, docker.io 26.1, containerd 1.7, podman 5.4,"
        " incus 6.0 (containers only: a pool another tool made)",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class GuestRoot:
    """A built root: its release, its folder, and the kernel inside it."""

    release: Release
    path: Path
    kernel: Kernel

    @property
    def python(self) -> str:
        return "/usr/bin/python3"


def release_named(name: str) -> Release:
    try:
        return RELEASES[name]
    except KeyError:
        raise ThinpoolError(f"unknown release {name!r}", fix=f"choose one of {', '.join(RELEASES)}") from None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def host_mirror(sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The Debian archive this host's apt reads (the guests come from the same place)."""
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for found in re.finditer(r"(?m)^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text):
            uri = found.group(1)
            if "security" not in uri and not uri.startswith("file:"):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _kernel_in(root: Path) -> Kernel:
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if not images:
        raise ThinpoolError(f"the guest root {root} holds no kernel", fix=f"remove {root} to build it again")
    version = images[-1].name.removeprefix("vmlinuz-")
    return Kernel(version=version, vmlinuz=images[-1], modules_root=root)


def _customize_hook(release: Release) -> str:
    """Run by mmdebstrap inside the new root, with the root's own tools."""
    units = " ".join(QUIET_UNITS)
    return (
        f'chroot "$1" systemctl disable {units} >/dev/null 2>&1; '
        f'chroot "$1" systemctl disable {" ".join(QUIET_RELEASE_UNITS)} >/dev/null 2>&1; '
        f'chroot "$1" systemctl mask e2scrub_reap.service >/dev/null 2>&1; '
        f'echo thinpool-{release.name} > "$1/etc/hostname"; '
        'rm -f "$1/etc/machine-id"; touch "$1/etc/machine-id"; '
        'printf "# the rehearsal disks only\\n" > "$1/etc/fstab"'
    )


def build_argv(release: Release, folder: Path, mirror: str) -> tuple[str, ...]:
    return (
        "mmdebstrap",
        "--variant=apt",
        "--mode=root",
        "--include=" + ",".join(release.packages),
        "--customize-hook=" + _customize_hook(release),
        release.suite,
        str(folder),
        f"deb {mirror} {release.suite} main",
    )


def obtain(release: Release, runner: Runner, say: Callable[[str], None] = lambda _: None) -> GuestRoot:
    """The cached root of ``release``, built first when missing (one builder at a time)."""
    mirror = host_mirror()
    folder = cache_dir() / f"{release.name}-{release.recipe_key(mirror)}"
    if (folder / ".thinpool-ready").exists():
        return GuestRoot(release, folder, _kernel_in(folder))
    if shutil.which("mmdebstrap") is None:
        raise MissingTool("mmdebstrap is not installed", fix="apt-get install mmdebstrap (or --install-deps)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".thinpool-ready").exists():
            say(f"building the {release.name} guest root from {mirror} (once; cached in {folder}) ...")
            _build(release, folder, mirror, runner)
            for stale in stale_roots(release, folder, roots_in_use()):
                say(f"removing {stale}, a root of an older recipe that no VM runs on")
                shutil.rmtree(stale, ignore_errors=True)
    return GuestRoot(release, folder, _kernel_in(folder))


def stale_roots(release: Release, kept: Path, in_use: set[Path]) -> list[Path]:
    """The release's other built roots (older recipes: about 1.3 GiB each) that no running VM shares."""
    return sorted(
        folder
        for folder in kept.parent.glob(f"{release.name}-*")
        if folder != kept and folder.is_dir() and (folder / ".thinpool-ready").exists() and folder not in in_use
    )


def roots_in_use(proc: Path = Path("/proc")) -> set[Path]:
    """The folders a running qemu shares as a guest's root (its ``-fsdev local,id=root,path=...``)."""
    found = set()
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue  # the process ended, or is not ours to read
        for arg in argv:
            if arg.startswith(b"local,id=root,path="):
                found.add(Path(arg.decode(errors="replace").split("path=", 1)[1].split(",", 1)[0]))
    return found


def _build(release: Release, folder: Path, mirror: str, runner: Runner) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{release.name}.", dir=folder.parent))
    try:
        root = staging / "root"
        runner.run(build_argv(release, root, mirror), timeout=3600, env={"DEBIAN_FRONTEND": "noninteractive"})
        kernel = _kernel_in(root)
        if not kernel.modules_dir.is_dir():
            runner.run(programs.depmod(str(root), kernel.version))
        (root / ".thinpool-ready").write_text(json.dumps({"release": release.name, "mirror": mirror}) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        root.rename(folder)  # an older recipe's root stays: a VM may still be booted on it
    finally:
        shutil.rmtree(staging, ignore_errors=True)
