"""Boot: ``thinpool activate`` (what thinpool-activate.service runs) and ``thinpool install-units``.

At boot the pools thinpool made (tagged thinpool.managed) and their tagged thin volumes are
activated, monitoring is switched on, and the command returns only once every device node is
there, so docker.service and containerd.service, ordered after the unit, find their storage.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from thinpool.errors import ThinpoolError

if TYPE_CHECKING:
    from thinpool.core.model import LogicalVolume, Observed
    from thinpool.system.runner import Runner

ACTIVATE_UNIT = "thinpool-activate.service"
METRICS_UNITS = ("thinpool-metrics.service", "thinpool-metrics.timer")
UNIT_DIR = "/etc/systemd/system"


@dataclass
class Activation:
    volumes: list[str] = field(default_factory=list)  # VG/LV handled
    commands: list[list[str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # device nodes that never appeared


def managed_volumes(observed: Observed, targets: list[str]) -> list[LogicalVolume]:
    """Tagged pools and thin volumes (or the named VG/POOLs and their tagged volumes), pools first."""
    from thinpool.lvm import commands

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


def activate(
    runner: Runner, observed: Observed, targets: list[str], wait: float, dev: Path = Path("/dev")
) -> Activation:
    from thinpool.lvm import commands

    done = Activation()
    volumes = managed_volumes(observed, targets)
    for lv in volumes:
        done.volumes.append(f"{lv.vg_name}/{lv.name}")
        steps = [] if lv.active else [commands.lvchange_activate(lv.vg_name, lv.name, True)]
        if lv.is_thin_pool and lv.seg_monitor != "monitored":
            steps.append(commands.lvchange_monitor(lv.vg_name, lv.name))
        for argv in steps:
            runner.run(argv, timeout=300)
            done.commands.append(list(argv))
    nodes = [dev / "mapper" / commands.dm_name(lv.vg_name, lv.name) for lv in volumes]
    deadline = time.monotonic() + wait
    while True:
        done.missing = [str(node) for node in nodes if not node.exists()]
        if not done.missing or time.monotonic() >= deadline:
            return done
        time.sleep(0.2)


def _thinpool_command() -> str:
    found = shutil.which("thinpool")
    return found or f"{sys.executable} -m thinpool"


def unit_text(name: str, thinpool: str) -> str:
    from importlib import resources

    template = resources.files("thinpool").joinpath("data", "systemd", name).read_text()
    return template.replace("/usr/local/bin/thinpool", thinpool)


def install_units(root: Path, thinpool: str, metrics: bool) -> list[Path]:
    """Write the units under ``root``/etc/systemd/system; returns what was written."""
    folder = root / UNIT_DIR.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in (ACTIVATE_UNIT, *(METRICS_UNITS if metrics else ())):
        path = folder / name
        temporary = path.with_name(f".{name}.tmp")
        temporary.write_text(unit_text(name, thinpool))
        temporary.replace(path)
        written.append(path)
    return written


def _cmd_activate(args: argparse.Namespace) -> int:
    from thinpool.system import inspect
    from thinpool.system.runner import SystemRunner

    runner = SystemRunner()
    done = activate(runner, inspect.read_lvm(runner), args.target, args.wait)
    if args.json:
        sys.stdout.write(json.dumps({"schema_version": 1, "kind": "thinpool-activation", **done.__dict__}) + "\n")
    else:
        for argv in done.commands:
            print("ran: " + " ".join(argv))
        print(f"active: {', '.join(done.volumes) or 'nothing to activate'}")
    if done.missing:
        print(f"thinpool: error: no device node after {args.wait:g}s: {', '.join(done.missing)}", file=sys.stderr)
        return 1
    return 0


def _cmd_install_units(args: argparse.Namespace) -> int:
    from thinpool.system.runner import SystemRunner

    root = Path(args.root)
    written = install_units(root, args.thinpool or _thinpool_command(), args.metrics)
    for path in written:
        print(f"wrote {path}")
    if args.root == "/" and Path("/run/systemd/system").is_dir():
        runner = SystemRunner()
        runner.run(("systemctl", "daemon-reload"))
        names = [path.name for path in written if path.suffix == ".timer" or path.name == ACTIVATE_UNIT]
        runner.run(("systemctl", "enable", *names))
        print(f"enabled: {', '.join(names)}")
    else:
        print("systemd is not running here: enable them with systemctl enable on the host that boots them")
    return 0


def add_parsers(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    activate_parser = subcommands.add_parser(
        "activate",
        help="activate thinpool's pools and volumes, switch on monitoring, wait for their devices",
        description="Activates every thin pool and thin volume tagged thinpool.managed (or the VG/POOL "
        "named), enables dmeventd monitoring, and waits until their /dev/mapper nodes exist. "
        "thinpool-activate.service runs this at boot, before docker and containerd.",
    )
    activate_parser.add_argument("target", nargs="*", metavar="VG/LV", help="default: everything thinpool made")
    activate_parser.add_argument("--wait", type=float, default=90, metavar="SECONDS",
                                 help="how long to wait for the device nodes (default: 90)")  # fmt: skip
    activate_parser.add_argument("--json", action="store_true", help="print the result as JSON")
    activate_parser.set_defaults(handler=_cmd_activate)
    units = subcommands.add_parser(
        "install-units",
        help="install thinpool-activate.service (and the metrics timer)",
        description="Writes thinpool-activate.service (oneshot, ordered before docker.service and "
        "containerd.service) and, with --metrics, thinpool-metrics.service and .timer (a node_exporter "
        "textfile every minute) into /etc/systemd/system, then reloads systemd and enables them.",
    )
    units.add_argument("--metrics", action="store_true", help="also the metrics service and timer")
    units.add_argument("--root", default="/", help="install under this root instead (an image being built)")
    units.add_argument("--thinpool", metavar="COMMAND", help="the thinpool command the units run "
                       "(default: the one on PATH)")  # fmt: skip
    units.set_defaults(handler=_cmd_install_units)
