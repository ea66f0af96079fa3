"""Boot: activate thinpool's pools and volumes (what thinpool-activate.service runs), and install the units.

At boot the pools thinpool made (tagged thinpool.managed) and their tagged thin volumes are
activated, monitoring is switched on, and activation returns only once every device node is
there, so docker.service and containerd.service, ordered after the unit, find their storage.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from thinpool.app.context import Context
from thinpool.core.lvm import commands
from thinpool.core.model import LogicalVolume, Observed
from thinpool.core.programs import argv as programs
from thinpool.core.units import parse_span
from thinpool.errors import ThinpoolError
from thinpool.system import files, observe
from thinpool.system.runner import Runner

ACTIVATE_UNIT = "thinpool-activate.service"
METRICS_UNITS = ("thinpool-metrics.service",)  # runs metrics --textfile --every: Python starts once
# units an earlier thinpool installed, and why nothing runs them now
RETIRED_UNITS = {
    "thinpool-metrics.timer": "thinpool-metrics.service now keeps running and rewrites the textfile every minute",
}
MAINTAIN_UNITS = ("thinpool-maintain.service", "thinpool-maintain.timer")
MAINTAIN_EVERY = "5min"  # the timer template's own interval
UNIT_DIR = "/etc/systemd/system"


def check_interval(text: str) -> str:
    """The maintain timer's interval, refused unless systemd reads it as a positive time span
    (90, 30s, 5min, 1h30min: see systemd.time(7))."""
    try:
        seconds = parse_span(text, what="--maintain-every")
    except ThinpoolError:
        seconds = 0
    if not seconds:
        raise ThinpoolError(
            f"--maintain-every {text!r} is not a time span systemd reads",
            fix="give a positive span such as 90s, 5min, 1h or 1h30min",
        )
    return text


@dataclass
class Activation:
    volumes: list[str] = field(default_factory=list)  # VG/LV handled
    commands: list[list[str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # device nodes that never appeared
    warnings: list[str] = field(default_factory=list)


def managed_volumes(observed: Observed, targets: list[str]) -> list[LogicalVolume]:
    """Tagged pools and thin volumes (or the named VG/POOLs and their tagged volumes), pools first."""
    chosen: list[LogicalVolume] = []
    for vg in observed.vgs.values():
        for lv in vg.lvs:
            named = f"{vg.name}/{lv.bare_name}" in targets
            if lv.hidden or not (named or (not targets and commands.MANAGED_TAG in lv.tags)):
                continue
            if lv.is_thin_pool or lv.segtype == "thin":
                chosen.append(lv)
    unknown = [target for target in targets if not any(f"{lv.vg_name}/{lv.name}" == target for lv in chosen)]
    if unknown:
        raise ThinpoolError(f"no thin pool or thin volume {', '.join(unknown)}", fix="check the names with 'lvs'")
    return sorted(chosen, key=lambda lv: (not lv.is_thin_pool, lv.vg_name, lv.name))


def activate_volumes(
    runner: Runner, observed: Observed, targets: list[str], wait: float, dev: Path = Path("/dev")
) -> Activation:
    done = Activation()
    volumes = managed_volumes(observed, targets)
    for lv in volumes:
        done.volumes.append(f"{lv.vg_name}/{lv.name}")
        if not lv.active:
            _activate(runner, lv, done)
        if lv.is_thin_pool and lv.seg_monitor != "monitored":
            argv = commands.lvchange_monitor(lv.vg_name, lv.name)
            runner.run(argv, timeout=300)
            done.commands.append(list(argv))
    nodes = [dev / "mapper" / commands.dm_name(lv.vg_name, lv.name) for lv in volumes]
    deadline = time.monotonic() + wait
    while True:
        done.missing = [str(node) for node in nodes if not node.exists()]
        if not done.missing or time.monotonic() >= deadline:
            return done
        time.sleep(0.2)


def _activate(runner: Runner, lv: LogicalVolume, done: Activation) -> None:
    """lvchange -ay; a pool thin_check refused is tried once more past non-fatal errors (leaked blocks), and
    the warning says how to get the leaked space back. A fatal error still refuses it, as lvm said."""
    argv = commands.lvchange_activate(lv.vg_name, lv.name, True)
    first = runner.run(argv, timeout=300, check=False)
    done.commands.append(list(argv))
    if first.ok:
        return
    if not lv.is_thin_pool or commands.POOL_CHECK_FAILED not in first.stderr:
        first.raise_for_status()
    again = commands.lvchange_activate_past_non_fatal(lv.vg_name, lv.name)
    retried = runner.run(again, timeout=300, check=False)
    done.commands.append(list(again))
    if not retried.ok:
        first.raise_for_status()  # a fatal error: lvm's own words, and thinpool repair is the way
    target = f"{lv.vg_name}/{lv.name}"
    done.warnings.append(
        f"{target}'s metadata has non-fatal errors (thin_check: leaked blocks, as a power cut in the middle of a "
        f"discard leaves them): it was activated past them; the leaked space comes back with "
        f"thinpool repair {target} --yes, at a quiet time (it stops the pool)"
    )


def _thinpool_command() -> str:
    found = shutil.which("thinpool")
    return found or f"{sys.executable} -m thinpool"


def unit_text(name: str, thinpool: str) -> str:
    from importlib import resources

    template = resources.files("thinpool").joinpath("data", "systemd", name).read_text()
    return template.replace("/usr/local/bin/thinpool", thinpool)


def install_units(root: Path, thinpool: str, metrics: bool, maintain_every: str = MAINTAIN_EVERY) -> list[Path]:
    """Write the units under ``root``/etc/systemd/system; returns what was written."""
    folder = root / UNIT_DIR.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in (ACTIVATE_UNIT, *MAINTAIN_UNITS, *(METRICS_UNITS if metrics else ())):
        path = folder / name
        text = unit_text(name, thinpool)
        if name == "thinpool-maintain.timer":
            text = text.replace(MAINTAIN_EVERY, check_interval(maintain_every))
        files.write_atomically(path, text)
        written.append(path)
    return written


def activate(ctx: Context, targets: list[str], wait: float) -> Activation:
    """The pools and volumes, then a failure naming any of thinpool's encrypted devices left locked (a missing
    key): their VGs stay down, and the unit's failure says so at boot."""
    done = activate_volumes(ctx.runner, observe.read_lvm(ctx.runner), targets, wait, observe.under(ctx.root, "/dev"))
    locked = observe.locked_devices(ctx.runner, ctx.root)
    if locked is not None:
        raise locked
    return done


@dataclass
class Installed:
    written: list[Path]
    enabled: list[str]  # empty where systemd does not run here
    removed: list[Path] = field(default_factory=list)  # units an earlier thinpool installed, now retired


def retire_units(ctx: Context, folder: Path, running: bool) -> list[Path]:
    """Stop, disable and remove units an earlier thinpool installed that nothing runs any more."""
    removed = []
    for name in RETIRED_UNITS:
        path = folder / name
        if not path.exists():
            continue
        if running:
            ctx.runner.run(programs.systemctl_disable_now((name,)))
        for link in folder.glob(f"*.wants/{name}"):
            link.unlink()
        path.unlink()
        removed.append(path)
    return removed


def install(
    ctx: Context, thinpool: str | None, metrics: bool, root: Path, maintain_every: str = MAINTAIN_EVERY
) -> Installed:
    """Write the units under ``root``; on the running system, reload systemd, enable them, and
    (re)start the metrics writer so a changed unit takes effect at once."""
    check_interval(maintain_every)  # before anything is written
    running = root == Path("/") and observe.systemd_running(ctx.root)
    target = observe.under(ctx.root, str(root))
    written = install_units(target, thinpool or _thinpool_command(), metrics, maintain_every)
    removed = retire_units(ctx, target / UNIT_DIR.lstrip("/"), running)
    if not running:
        return Installed(written, [], removed)
    ctx.runner.run(programs.systemctl_daemon_reload())
    started_by_systemd = (ACTIVATE_UNIT, *METRICS_UNITS)
    names = tuple(path.name for path in written if path.suffix == ".timer" or path.name in started_by_systemd)
    ctx.runner.run(programs.systemctl_enable(names))
    if metrics:
        ctx.runner.run(programs.systemctl_restart(METRICS_UNITS))
    return Installed(written, list(names), removed)
