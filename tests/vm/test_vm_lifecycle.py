"""The VM's own promises: hard limits, and nothing left behind after a pass, a failure or a timeout."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from thinpool.core.units import GiB, MiB
from thinpool.rehearse.vm import EMULATED_PANIC, VM, VMConfig, VMError, kvm_usable

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-13")]


def _leftovers() -> tuple[list[str], list[Path]]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    qemus = [line for line in listing.splitlines() if "qemu-system" in line and "thinpool-vm-" in line]
    return qemus, sorted(Path(tempfile.gettempdir()).glob("thinpool-vm-*"))


def test_a_command_timeout_answers_124_and_the_vm_lives_on(vm_session: VM) -> None:
    slow = vm_session.run(["sleep", "30"], timeout=2, check=False)
    assert slow.returncode == 124 and "timed out" in slow.stderr
    assert vm_session.run(["true"]).returncode == 0


def test_boot_timeout_leaves_nothing_behind(vm_session: VM) -> None:
    before = _leftovers()
    machine = VM(
        VMConfig(disk_sizes=[GiB], kernel=vm_session.config.kernel, guest=vm_session.config.guest, boot_timeout=0.5)
    )
    with pytest.raises(VMError, match="took longer than"):
        machine.start()
    assert _leftovers() == before


def test_a_kernel_panic_while_booting_is_booted_once_more_then_reported(vm_session: VM) -> None:
    before = _leftovers()
    machine = VM(
        VMConfig(
            disk_sizes=[GiB],
            kernel=vm_session.config.kernel,
            guest=vm_session.config.guest,
            extra_append="rdinit=/no-such-init",  # no init, no root: the kernel panics on every boot
        )
    )
    with pytest.raises(VMError, match="Kernel panic") as refused:
        machine.start()
    assert machine.boot_retries == 1
    assert "qemu exited" in str(refused.value)
    if not kvm_usable():  # what test_rehearse's one rerun matches, and what a user is told to do
        assert EMULATED_PANIC in str(refused.value) and "run it again" in refused.value.fix
    assert _leftovers() == before


def test_write_budget_kills_a_runaway_guest(vm_session: VM) -> None:
    before = _leftovers()
    machine = VM(
        VMConfig(
            disk_sizes=[4 * GiB], kernel=vm_session.config.kernel, guest=vm_session.config.guest, write_budget=48 * MiB
        )
    )
    machine.start()
    try:
        with pytest.raises(VMError, match="over the 48 MiB budget"):
            machine.run(["dd", "if=/dev/urandom", "of=/dev/vda", "bs=1M", "count=400", "oflag=direct"], timeout=300)
    finally:
        machine.close()
    assert machine.disks == []
    assert _leftovers() == before


def test_not_enough_host_room_is_refused_before_anything_is_made() -> None:
    machine = VM(VMConfig(disk_sizes=[GiB], kernel=None, write_budget=1 << 60))  # type: ignore[arg-type]
    with pytest.raises(VMError, match="free in"):
        machine.start()
    assert not hasattr(machine, "workdir")
