"""A kernel with device-mapper for the rehearsal VM: Debian's package, unpacked, never installed.

The ABI changes with security updates and only the newest package stays downloadable,
so the version is read from ``apt-cache depends linux-image-amd64`` each time and the
unpacked tree is cached under that version.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from thinpool.core.programs import argv as programs
from thinpool.errors import MissingTool, ThinpoolError
from thinpool.system.runner import Runner

META_PACKAGE = "linux-image-amd64"


@dataclass(frozen=True)
class Kernel:
    version: str
    vmlinuz: Path
    modules_root: Path  # the folder that holds lib/modules/<version>

    @property
    def modules_dir(self) -> Path:
        return self.modules_root / "lib" / "modules" / self.version


def cache_dir() -> Path:
    base = os.environ.get("THINPOOL_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "thinpool"


def newest_kernel_package(runner: Runner) -> str:
    """``linux-image-6.1.0-NN-amd64``, as the archive names it today."""
    shown = runner.run(programs.apt_depends(META_PACKAGE), check=False)
    match = re.search(r"Depends:\s*(linux-image-[0-9][^\s]*-amd64)", shown.stdout)
    if not shown.ok or not match:
        raise MissingTool(
            f"cannot find the kernel package behind {META_PACKAGE}",
            fix="run 'apt-get update' (apt-cache needs package lists), or pass --kernel VMLINUZ --modules DIR",
        )
    return match.group(1)


def _cached(folder: Path) -> Kernel | None:
    boot = folder / "boot"
    images = sorted(boot.glob("vmlinuz-*")) if boot.is_dir() else []
    if not images or not (folder / "ready").exists():
        return None
    version = images[0].name.removeprefix("vmlinuz-")
    return Kernel(version=version, vmlinuz=images[0], modules_root=folder)


def obtain_debian_kernel(runner: Runner) -> Kernel:
    """Download and unpack Debian's newest amd64 kernel into the cache (once per version)."""
    package = newest_kernel_package(runner)
    folder = cache_dir() / "kernel" / package
    found = _cached(folder)
    if found is not None:
        return found
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{package}.", dir=folder.parent))
    try:
        runner.run(programs.apt_download(package), timeout=600, cwd=staging)
        debs = sorted(staging.glob("*.deb"))
        if not debs:
            raise ThinpoolError(f"apt-get download {package} left no .deb", fix="check apt's sources")
        runner.run(programs.dpkg_extract(str(debs[0]), str(staging / "root")))
        unpacked = _cached_after_unpack(staging / "root")
        runner.run(programs.depmod(str(unpacked.modules_root), unpacked.version))
        (staging / "root" / "ready").write_text(unpacked.version + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        (staging / "root").rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    kernel = _cached(folder)
    assert kernel is not None
    return kernel


def _cached_after_unpack(root: Path) -> Kernel:
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if not images:
        raise ThinpoolError("the kernel package holds no vmlinuz", fix="report this with the package name")
    return Kernel(version=images[0].name.removeprefix("vmlinuz-"), vmlinuz=images[0], modules_root=root)


def kernel_from_paths(vmlinuz: Path, modules_root: Path) -> Kernel:
    """A kernel the operator names (e.g. the host's own, /boot/vmlinuz-X and / for /lib/modules/X)."""
    version = vmlinuz.name.removeprefix("vmlinuz-")
    kernel = Kernel(version=version, vmlinuz=vmlinuz, modules_root=modules_root)
    if not vmlinuz.is_file() or not kernel.modules_dir.is_dir():
        raise ThinpoolError(
            f"kernel {vmlinuz} or its modules {kernel.modules_dir} are missing",
            fix="pass --kernel /boot/vmlinuz-VERSION and --modules-root / (its lib/modules/VERSION must exist)",
        )
    return kernel
