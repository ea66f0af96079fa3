"""Power cuts in the guest: a command run until it reaches a chosen step, then qemu killed with no sync and
the same disks booted again; and what must hold after it (files whole, old or new, never empty)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from thinpool.rehearse.vm import SHARE_MOUNT, VM

CUTS = "cuts"  # the share's folder where the guest marks that the cut point was reached


@dataclass(frozen=True)
class Cut:
    """Where the power goes: when ``program`` is started with ``matching`` in its arguments (the first
    such call), ``delay`` seconds after it starts, or, with ``hold``, just before it runs (so that what
    the command wrote before it is all there is). An empty ``program``: just after the command exits."""

    program: str
    matching: str = ""
    delay: float = 0.0
    hold: bool = False

    @property
    def name(self) -> str:
        if not self.program:
            return "after-exit"
        where = "before" if self.hold else f"during+{self.delay:g}s"
        return f"{where}-{self.program}{'-' + self.matching.strip('- ') if self.matching else ''}"


# The command runs with one program wrapped: the wrapper marks (once, in the share, which the host sees at
# once) that the cut point is reached, then holds or runs the real program. The host pulls the plug.
CUT_AT = r"""
program=$1 matching=$2 hold=$3 marks=$4; shift 4
wrappers=/run/cut-wrappers
rm -rf "$wrappers"; mkdir -p "$wrappers"
if [ -n "$program" ]; then
  real=$(command -v "$program")
  then_do="exec $real \"\$@\""
  [ "$hold" = yes ] && then_do="sleep 3600"
  cat > "$wrappers/$program" <<EOF
#!/bin/sh
case " \$* " in *"$matching"*) mkdir $marks/reached 2>/dev/null && $then_do ;; esac
exec $real "\$@"
EOF
  chmod +x "$wrappers/$program"
fi
PATH="$wrappers:$PATH" "$@" > "$marks/output" 2>&1
status=$?
[ -z "$program" ] && mkdir "$marks/reached"
echo "exit $status" > "$marks/finished"
"""


def cut_power_at(vm: VM, cut: Cut, *args: str, timeout: float = 600) -> str:
    """Run ``thinpool ARGS`` until ``cut``, cut the power, boot the same disks; returns what the command
    printed before the cut. Fails when the command ended without reaching the cut point."""
    marks = vm.share / CUTS
    shutil.rmtree(marks, ignore_errors=True)
    marks.mkdir()
    hold = "yes" if cut.hold else "no"
    argv = ["sh", "-c", CUT_AT, "cut-at", cut.program, cut.matching, hold, f"{SHARE_MOUNT}/{CUTS}"]
    vm.start_background([*argv, *vm.thinpool_argv, *args])
    deadline = time.monotonic() + timeout
    while not (marks / "reached").exists():
        finished = marks / "finished"
        if finished.exists() or time.monotonic() > deadline:
            raise AssertionError(f"thinpool {' '.join(args)} never reached {cut.name}: {_output(marks)}")
        time.sleep(0.01)
    time.sleep(cut.delay)
    seconds = vm.cut_power()
    print(f"power cut {cut.name} of thinpool {' '.join(args)}; booted again in {seconds:.1f}s")
    vm.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=600)
    return _output(marks)


def _output(marks: Path) -> str:
    """What the command printed before the cut (kept in the share, which the cut does not touch)."""
    output = marks / "output"
    return output.read_text(errors="replace")[-3000:] if output.exists() else ""


@dataclass
class Witness:
    """Files as they were before a command, and every state each was seen in after a power cut: at the
    end, each seen state must be the file before or the file after one whole run (never empty or partial)."""

    paths: tuple[str, ...]
    before: dict[str, str | None] = field(default_factory=dict)
    seen: dict[str, set[str | None]] = field(default_factory=dict)

    def read(self, vm: VM) -> dict[str, str | None]:
        return {path: _text_or_none(vm, path) for path in self.paths}

    def start(self, vm: VM) -> None:
        self.before = self.read(vm)
        self.seen = {path: set() for path in self.paths}

    def look(self, vm: VM) -> dict[str, str | None]:
        now = self.read(vm)
        for path, text in now.items():
            assert text != "", f"{path} is empty after the power cut"
            self.seen[path].add(text)
        return now

    def assert_whole(self, after: dict[str, str | None], between: dict[str, str] | None = None) -> None:
        """``between``: a whole state a command writes on its way (a file it rewrites twice), also allowed."""
        for path, states in self.seen.items():
            allowed = {self.before[path], after[path], *([between[path]] if between and path in between else [])}
            assert states <= allowed, f"{path} was seen half-written after a power cut: {states - allowed}"


def _text_or_none(vm: VM, path: str) -> str | None:
    read = vm.run(["cat", path], check=False)
    return read.stdout if read.ok else None


def sha256_lines(vm: VM, *paths: str) -> str:
    return vm.run(["sha256sum", *paths]).stdout


def precious_file(vm: VM, path: str, megabytes: int) -> str:
    """A file of random bytes written and synced before a command; returns its sha256 line."""
    vm.run(["bash", "-c", f"head -c {megabytes}M /dev/urandom > {path} && sync"])
    return sha256_lines(vm, path)


def transaction_ids(vm: VM, vg: str, pool: str) -> tuple[int, int]:
    """The pool's transaction id as lvm's metadata has it and as the kernel's dm-thin has it."""
    lvm = int(vm.run(["lvs", "--noheadings", "-o", "transaction_id", f"{vg}/{pool}"]).stdout.strip())
    name = f"{vg.replace('-', '--')}-{pool.replace('-', '--')}"
    status = vm.run(["dmsetup", "status", f"{name}-tpool"], check=False)
    if not status.ok:  # a pool with no thin volume active may be mapped under its own name
        status = vm.run(["dmsetup", "status", name])
    fields = status.stdout.split()
    assert fields[2] == "thin-pool", status.stdout
    return lvm, int(fields[3])  # start length thin-pool <transaction id> ...
