"""A throwaway qemu VM with real device-mapper, booted from a Debian kernel, for rehearsals and tests.

The guest sees a root read-only under an overlay, and N sparse disks. The root is a pinned
release's (``rehearse.guest``: its own kernel, lvm2, engines and python3, thinpool installed from
its Debian package at boot) or this host's own (its kernel package unpacked, this checkout run by
the host's interpreter). The guest runs the agent as PID 1, or boots the root's systemd with the
agent as a unit; with a state disk, what the guest writes to its root outlives a reboot.
Guarantees: a hard deadline, a write budget on the disk files (a runaway guest can never
fill the host's disk), qemu killed with its whole process group and reaped whatever
happens, disk files deleted on the way out.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import thinpool
from thinpool.core.units import GiB, MiB, format_size
from thinpool.errors import MissingTool, ThinpoolError
from thinpool.rehearse import initramfs
from thinpool.rehearse.guest import GuestRoot
from thinpool.rehearse.kernel import Kernel
from thinpool.system.runner import Completed

log = logging.getLogger("thinpool.vm")
QEMU = "qemu-system-x86_64"
SWTPM = "swtpm"
SHARE_MOUNT = "/mnt/thinpool-share"
DISK_SERIAL_PREFIX = "tp-disk"
STATE_DISK_SIZE = 4 * GiB  # sparse: holds what the guest writes to its root, when kept across reboots
_PR_SET_PDEATHSIG = 1


class VMError(ThinpoolError):
    """The VM could not boot, died, or broke one of its limits."""


# Under emulation, a vCPU the busy host does not run for 20 s or more trips the guest's soft-lockup
# detector (seen: 44 s inside an IPI while runc started a container). That is the emulator, not the
# guest: the kernel says so on the serial console and goes on; a guest that really hangs meets the
# command's timeout. softlockup_panic=1 had turned such a stall into a dead VM.
SOFT_LOCKUP = "softlockup_panic=0"
# What a VM that died of a guest kernel panic under TCG says: under MTTCG the emulator's own races (an
# ``Oops: int3`` while the kernel patches its code) crash a healthy kernel now and then.
EMULATED_PANIC = "the emulated guest kernel panicked"


def _die_with_parent() -> None:
    """In the child before exec: take qemu down if the process that started it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def kvm_usable() -> bool:
    """KVM only with real vmx/svm: a nested device without them hangs a stock kernel."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    has_virt = " vmx" in flags or " svm" in flags
    return has_virt and os.access("/dev/kvm", os.R_OK | os.W_OK)


def disk_device(index: int) -> str:
    """The guest's name for the index-th attached disk: /dev/vda, /dev/vdb, ..."""
    return "/dev/vd" + "abcdefghijklmnopqrstuvwxyz"[index]


@dataclass
class VMConfig:
    disk_sizes: Sequence[int]
    kernel: Kernel
    memory_mib: int = 2048
    cpus: int = 2
    boot_timeout: float = 180.0
    lifetime: float = 3600.0
    write_budget: int = 4 * GiB
    workdir_parent: Path | None = None
    extra_append: str = ""
    guest: GuestRoot | None = None  # a pinned release's root; None: this host's own root
    systemd: bool = False  # boot the root's systemd (the agent runs as a unit)
    keep_root_changes: bool = False  # a state disk keeps what the guest writes to its root across reboots
    packages: tuple[Path, ...] = ()  # .deb files dpkg installs in the guest once booted (a reboot keeps them)
    tpm: bool = False  # an emulated TPM 2.0 (swtpm), its state kept across reboots as a real machine's is


@dataclass
class VM:
    """``with VM(config) as vm: vm.run(["lvs"])`` — one boot serves any number of commands."""

    config: VMConfig
    workdir: Path = field(init=False)
    share: Path = field(init=False)
    disks: list[Path] = field(default_factory=list, init=False)
    boot_seconds: float = field(default=0.0, init=False)
    boot_retries: int = field(default=0, init=False)
    _serial_offset: int = field(default=0, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _tpm: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _ids: itertools.count[int] = field(default_factory=itertools.count, init=False)
    _stop_reason: str = field(default="", init=False)
    _watchdog: threading.Thread | None = field(default=None, init=False)
    _closing: threading.Event = field(default_factory=threading.Event, init=False)

    def __enter__(self) -> VM:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root(self) -> Path:
        """The folder the guest boots as its root: the pinned release's, or this host's."""
        return self.config.guest.path if self.config.guest else Path("/")

    @property
    def devices(self) -> list[str]:
        return [disk_device(index) for index in range(len(self.disks))]

    def start(self) -> None:
        if shutil.which(QEMU) is None:
            raise MissingTool(
                f"{QEMU} is not installed", fix="apt-get install qemu-system-x86 (or thinpool rehearse --install-deps)"
            )
        if self.config.tpm and shutil.which(SWTPM) is None:
            raise MissingTool(f"{SWTPM} (the emulated TPM) is not installed", fix="apt-get install swtpm")
        self._check_host_room()
        self.workdir = Path(tempfile.mkdtemp(prefix="thinpool-vm-", dir=self.config.workdir_parent))
        try:
            self._boot()
        except BaseException:
            self.close()
            raise

    def _check_host_room(self) -> None:
        parent = self.config.workdir_parent or Path(tempfile.gettempdir())
        free = shutil.disk_usage(parent).free
        needed = self.config.write_budget + GiB
        if free < needed:
            raise VMError(
                f"only {format_size(free)} free in {parent}; the VM's disks may write up to "
                f"{format_size(self.config.write_budget)} and 1 GiB is kept spare",
                fix="free some space, or lower the write budget",
            )

    def _boot(self) -> None:
        self.share = self.workdir / "share"
        self.share.mkdir()
        for index, size in enumerate(self.config.disk_sizes):
            disk = self.workdir / f"disk{index}.img"
            with disk.open("wb") as handle:
                handle.truncate(size)
            self.disks.append(disk)
        if self.config.keep_root_changes:
            self._make_state_disk()
        for package in self.config.packages:
            shutil.copyfile(package, self.share / package.name)
        if self._thinpool_from_share:
            shutil.copytree(
                Path(thinpool.__file__).resolve().parent,
                self.share / "lib" / "thinpool",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        self._launch()
        self._install_packages()  # once: a reboot keeps them with the rest of the root's changes

    def _make_state_disk(self) -> None:
        state = self.workdir / "root-state.img"
        with state.open("wb") as handle:
            handle.truncate(STATE_DISK_SIZE)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", str(state)], check=True, capture_output=True)

    @property
    def _thinpool_from_share(self) -> bool:
        """On a release's root without thinpool's package, this thinpool runs from the share on its python3."""
        return self.config.guest is not None and not self.config.packages

    def _launch_arguments(self) -> tuple[str, ...]:
        guest = self.config.guest
        if guest is not None:
            pythonpath = f"{SHARE_MOUNT}/lib" if self._thinpool_from_share else ""
            return (SHARE_MOUNT, "", guest.python, pythonpath, "systemd" if self.config.systemd else "pid1")
        return (
            SHARE_MOUNT,
            str(self.config.kernel.modules_root),
            sys.executable,
            str(Path(thinpool.__file__).resolve().parent.parent),
            "pid1",
        )

    def _launch(self) -> None:
        """Start qemu on the disks made and wait for the agent.

        Under TCG an SMP guest kernel can panic while it boots, from the emulator's own races (an ``Oops: int3``
        while the kernel patches its code): nothing has run on the disks yet, so such a boot is tried once more,
        with a warning and the count in ``boot_retries``. A panic after the guest is up is never retried.
        """
        try:
            self._launch_once()
        except VMError:
            if kvm_usable() or not self._kernel_panicked():
                raise
            self.boot_retries += 1
            log.warning("the emulated guest kernel panicked while booting; booting once more")
            self._launch_once()

    def _kernel_panicked(self) -> bool:
        serial = self.workdir / "serial.log"
        with serial.open("rb") as handle:
            handle.seek(self._serial_offset)
            return b"Kernel panic" in handle.read()

    def _launch_once(self) -> None:
        launch = initramfs.GuestLaunch(
            stage2=Path(__file__).with_name("stage2.sh"),
            share_tag="share",
            share_mount=SHARE_MOUNT,
            arguments=self._launch_arguments(),
            agent=Path(__file__).with_name("agent.py"),
            systemd=self.config.systemd,
            state_disk=self.config.keep_root_changes,
        )
        initrd = initramfs.build(self.config.kernel.modules_dir, launch, self.workdir / "initrd.gz", self.root)
        if self.config.tpm:
            self._start_tpm()
        argv = self._qemu_argv(initrd)
        log.info("boot: %s", " ".join(argv))
        started = time.monotonic()
        self._stop_reason = ""
        self._closing.clear()
        (self.share / "ready").unlink(missing_ok=True)
        with (self.workdir / "serial.log").open("ab") as serial:  # qemu keeps its own copy of the descriptor
            self._serial_offset = serial.tell()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=serial,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._watchdog = threading.Thread(target=self._watch, name="thinpool-vm-watchdog", daemon=True)
        self._watchdog.start()
        self._wait_for(self.share / "ready", self.config.boot_timeout, "boot")
        self.boot_seconds = time.monotonic() - started
        log.info("VM ready after %.1fs", self.boot_seconds)

    @property
    def _tpm_socket(self) -> Path:
        return self.workdir / "tpm.sock"

    def _start_tpm(self) -> None:
        """swtpm for this boot (it ends with qemu's connection), on the TPM's state from the boots before."""
        self._stop_tpm()
        state = self.workdir / "tpm-state"
        state.mkdir(exist_ok=True)
        self._tpm_socket.unlink(missing_ok=True)
        argv = [SWTPM, "socket", "--tpm2", "--terminate", "--tpmstate", f"dir={state}",
                "--ctrl", f"type=unixio,path={self._tpm_socket}"]  # fmt: skip
        log.info("tpm: %s", " ".join(argv))
        with (self.workdir / "swtpm.log").open("ab") as log_file:  # swtpm keeps its own copy of the descriptor
            self._tpm = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        deadline = time.monotonic() + 30
        while not self._tpm_socket.exists():
            if self._tpm.poll() is not None or time.monotonic() > deadline:
                said = (self.workdir / "swtpm.log").read_text(errors="replace")[-2000:]
                raise VMError(f"{SWTPM} did not start: {said}", fix="run it by hand with the arguments logged")
            time.sleep(0.02)

    def _stop_tpm(self) -> None:
        tpm, self._tpm = self._tpm, None
        if tpm is not None:
            if tpm.poll() is None:
                tpm.kill()
            tpm.wait()

    def _install_packages(self) -> None:
        if not self.config.packages:
            return
        names = [f"{SHARE_MOUNT}/{package.name}" for package in self.config.packages]
        done = self.run(["dpkg", "-i", *names], check=False, timeout=600)
        if not done.ok:
            raise VMError(
                f"dpkg could not install {', '.join(names)} in the guest: {done.stderr.strip()}",
                fix="the package's dependencies must be in the guest root (rehearse.guest)",
            )

    def reboot(self, *, new_tpm: bool = False) -> float:
        """Shut the guest down cleanly and boot it again on the same disks; returns the new boot's seconds.
        ``new_tpm``: the TPM's state is cleared while the machine is off, as a cleared TPM, or the disks moved
        to another machine, would have it."""
        if not self.config.keep_root_changes:
            raise VMError("this VM keeps no root changes across a reboot", fix="VMConfig(keep_root_changes=True)")
        self.power_off()
        if new_tpm:
            shutil.rmtree(self.workdir / "tpm-state", ignore_errors=True)
        self._launch()
        return self.boot_seconds

    def cut_power(self) -> float:
        """Pull the plug: qemu is killed with no shutdown and no sync, so whatever the guest had not yet
        written to its disks is lost (what it wrote, synced or not, is kept: qemu writes through to the
        disk files, which outlive it). Then the same disks boot again; returns that boot's seconds."""
        if not self.config.keep_root_changes:
            raise VMError("this VM keeps no root changes across a power cut", fix="VMConfig(keep_root_changes=True)")
        self._stop_qemu("power cut")
        for folder in ("req", "res"):  # requests the dead guest never answered
            for stale in (self.share / folder).iterdir():
                stale.unlink()
        self._launch()
        return self.boot_seconds

    def _stop_qemu(self, reason: str) -> None:
        """Kill qemu (nothing synced) and reap it and its watchdog."""
        proc = self._proc
        self._closing.set()
        if proc is not None:
            self._kill(reason)
            proc.wait()
        self._stop_tpm()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)

    def _ask_power_off(self) -> None:
        """The agent's poweroff request (it syncs first; under systemd, a clean shutdown)."""
        (self.share / "req" / "999999.json").write_text(json.dumps({"argv": ["poweroff"]}))

    def power_off(self, timeout: float = 120) -> None:
        """Ask the guest to power off (systemd shuts down its units first) and wait for qemu to exit."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._ask_power_off()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(f"the guest did not power off within {timeout:.0f}s")
            proc.wait()
        self._closing.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)

    def _qemu_argv(self, initrd: Path) -> list[str]:
        accel = ["-accel", "kvm", "-cpu", "host"] if kvm_usable() else ["-accel", "tcg", "-cpu", "max"]
        append = "console=ttyS0 panic=-1 quiet loglevel=3 " + SOFT_LOCKUP + " " + self.config.extra_append
        argv = [
            QEMU,
            *accel,
            "-smp",
            str(self.config.cpus),
            "-m",
            str(self.config.memory_mib),
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-kernel",
            str(self.config.kernel.vmlinuz),
            "-initrd",
            str(initrd),
            "-append",
            append.strip(),
            "-fsdev",
            f"local,id=root,path={self.root},security_model=none,readonly=on,multidevs=remap",
            "-device",
            "virtio-9p-pci,fsdev=root,mount_tag=hostroot",
            "-fsdev",
            f"local,id=share,path={self.share},security_model=none",
            "-device",
            "virtio-9p-pci,fsdev=share,mount_tag=share",
            "-device",
            "virtio-rng-pci",
        ]
        if self.config.tpm:
            argv += ["-chardev", f"socket,id=tpm,path={self._tpm_socket}", "-tpmdev", "emulator,id=tpm0,chardev=tpm",
                     "-device", "tpm-tis,tpmdev=tpm0"]  # fmt: skip
        for index, disk in enumerate(self.disks):
            argv += [
                "-drive",
                f"file={disk},if=none,id=d{index},format=raw,cache=unsafe,discard=unmap,detect-zeroes=unmap",
                "-device",
                f"virtio-blk-pci,drive=d{index},serial={DISK_SERIAL_PREFIX}{index}",
            ]
        if self.config.keep_root_changes:
            argv += [
                "-drive",
                f"file={self.workdir / 'root-state.img'},if=none,id=state,format=raw,cache=unsafe",
                "-device",
                "virtio-scsi-pci,id=scsi",
                "-device",
                "scsi-hd,drive=state,bus=scsi.0",
            ]
        return argv

    def disk_bytes_written(self) -> int:
        """Host bytes the sparse disk files (the state disk's included) really occupy now."""
        total = 0
        for disk in [*self.disks, self.workdir / "root-state.img"]:
            with contextlib.suppress(FileNotFoundError):
                total += disk.stat().st_blocks * 512
        return total

    def _watch(self) -> None:
        deadline = time.monotonic() + self.config.lifetime
        while not self._closing.wait(0.25):
            if self._proc is None or self._proc.poll() is not None:
                return
            written = self.disk_bytes_written()
            if written > self.config.write_budget:
                self._kill(
                    f"the disks wrote {format_size(written)}, over the {format_size(self.config.write_budget)} budget"
                )
                return
            if time.monotonic() > deadline:
                self._kill(f"the VM outlived its {self.config.lifetime:.0f}s lifetime")
                return

    def _kill(self, reason: str) -> None:
        self._stop_reason = self._stop_reason or reason
        proc = self._proc
        if proc is not None and proc.poll() is None:
            log.warning("killing the VM: %s", reason)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _died(self, waiting_for: str) -> VMError:
        reason = self._stop_reason or f"qemu exited with {self._proc.returncode if self._proc else '?'}"
        fix = "read the serial console output above; rerun with -v for every command"
        if not kvm_usable() and self._kernel_panicked():
            reason = f"{EMULATED_PANIC} ({reason})"
            fix = "run it again: without KVM such a crash is usually the emulator's, not the guest's; " + fix
        return VMError(f"the VM stopped while waiting for {waiting_for}: {reason}\n{self.serial_tail()}", fix=fix)

    def serial_tail(self, lines: int = 60) -> str:
        texts = []
        for name in ("serial.log", "share/boot.log", "share/agent.log"):
            path = self.workdir / name
            if path.exists():
                texts += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(texts)

    def _wait_for(self, path: Path, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self._proc is None or self._proc.poll() is not None:
                raise self._died(what)
            if time.monotonic() > deadline:
                self._kill(f"{what} took longer than {timeout:.0f}s")
                raise self._died(what)
            time.sleep(0.02)

    def _request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self._proc is None or self._proc.poll() is not None:
            raise self._died("a command")
        request_id = f"{next(self._ids):06d}"
        temporary = self.share / "req" / f".{request_id}.tmp"
        temporary.write_text(json.dumps(request))
        temporary.rename(self.share / "req" / f"{request_id}.json")
        answer = self.share / "res" / f"{request_id}.json"
        self._wait_for(answer, timeout, " ".join(request["argv"]))
        result: dict[str, Any] = json.loads(answer.read_text())
        answer.unlink()
        return result

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: int | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Completed:
        """Run ``argv`` as root in the guest. Same contract as the host runner."""
        if cwd is not None:
            raise ValueError("the guest runs commands from /; pass absolute paths instead of cwd")
        limit = timeout or 600
        request = {"argv": list(argv), "timeout": limit, "input": input, "env": env or {}}
        log.info("vm run: %s", " ".join(argv))
        result = self._request(request, limit + 30)
        completed = Completed(tuple(argv), result["returncode"], result["stdout"], result["stderr"])
        return completed.raise_for_status() if check else completed

    def start_background(self, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        """Start a daemon in the guest; its output goes to share/logs. Returns its pid."""
        result = self._request({"argv": list(argv), "background": True, "env": env or {}}, 60)
        return int(result["stdout"])

    @property
    def python_path(self) -> str:
        """The guest's interpreter: the release's python3, or (on this host's root) the host's own."""
        return self.config.guest.python if self.config.guest else sys.executable

    @property
    def thinpool_argv(self) -> tuple[str, ...]:
        """thinpool in the guest: the installed package, or this thinpool run by the guest's interpreter."""
        return ("/usr/bin/thinpool",) if self.config.packages else (self.python_path, "-m", "thinpool")

    def python(self, *args: str, **kwargs: Any) -> Completed:
        """Run the guest's interpreter."""
        return self.run([self.python_path, *args], **kwargs)

    def thinpool(self, *args: str, **kwargs: Any) -> Completed:
        return self.run([*self.thinpool_argv, *args], **kwargs)

    def run_script(self, script: Path, *args: str, **kwargs: Any) -> Completed:
        """Run a Python file of this host's (a benchmark's guest side) on the guest's interpreter: it is
        copied into the share first, since a release's root does not hold this checkout."""
        (self.share / "scripts").mkdir(exist_ok=True)
        shutil.copyfile(script, self.share / "scripts" / script.name)
        return self.python(f"{SHARE_MOUNT}/scripts/{script.name}", *args, **kwargs)

    def close(self) -> None:
        """Power off (politely, then by force), reap qemu, delete the disks and the workdir."""
        proc = self._proc
        if proc is not None and proc.poll() is None and not self._stop_reason:
            try:
                self._ask_power_off()
                proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._stop_qemu("closing")
        if hasattr(self, "workdir"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.disks = []


def boot_for_tests(disk_sizes: Sequence[int], kernel: Kernel, **options: Any) -> VM:
    vm = VM(VMConfig(disk_sizes=disk_sizes, kernel=kernel, **options))
    vm.start()
    return vm


__all__ = ["VM", "MiB", "VMConfig", "VMError", "boot_for_tests", "disk_device", "kvm_usable"]
