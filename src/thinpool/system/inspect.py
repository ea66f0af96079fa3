"""Gather observed state through the runner: lsblk, wipefs and lvm's JSON reports."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thinpool.core.model import Device, Observed
from thinpool.core.spec import PoolSpec
from thinpool.lvm import commands, report
from thinpool.system.runner import Runner

if TYPE_CHECKING:
    from thinpool.core.health import PoolStatus

LSBLK_COLUMNS = "NAME,PATH,SIZE,TYPE,FSTYPE,MOUNTPOINT,RO,ROTA"


def parse_lsblk(text: str) -> list[dict[str, Any]]:
    data = json.loads(text)
    return list(data.get("blockdevices", []))


def parse_wipefs(text: str) -> tuple[str, ...]:
    if not text.strip():
        return ()
    return tuple(str(sig.get("type", "unknown")) for sig in json.loads(text).get("signatures", []))


def _mountpoints(node: dict[str, Any]) -> tuple[str, ...]:
    found = [node.get("mountpoint"), *(node.get("mountpoints") or [])]
    return tuple(sorted({str(point) for point in found if point}))


def _holders(name: str, sys_block: Path) -> tuple[str, ...]:
    folder = sys_block / name / "holders"
    return tuple(sorted(entry.name for entry in folder.iterdir())) if folder.is_dir() else ()


def read_device(runner: Runner, path: str, sys_block: Path = Path("/sys/class/block")) -> Device | None:
    """A device as lsblk and wipefs see it; None when it does not exist."""
    listed = runner.run(("lsblk", "--json", "--bytes", "--output", LSBLK_COLUMNS, path), check=False)
    if not listed.ok:
        return None
    nodes = parse_lsblk(listed.stdout)
    if not nodes:
        return None
    node = nodes[0]
    children = node.get("children") or []
    signatures = runner.run(("wipefs", "--json", "--no-act", path), check=False)
    return Device(
        path=path,
        size=int(node["size"]),
        type=str(node.get("type", "")),
        mountpoints=_mountpoints(node) + tuple(p for child in children for p in _mountpoints(child)),
        holders=_holders(str(node["name"]), sys_block),
        partitions=tuple(str(child.get("path") or child["name"]) for child in children),
        signatures=parse_wipefs(signatures.stdout) if signatures.ok else (),
        read_only=bool(node.get("ro")),
        rotational=bool(node.get("rota")),
        swap=node.get("fstype") == "swap",
    )


def read_lvm(runner: Runner) -> Observed:
    pvs = report.parse_pvs(runner.run(commands.pvs_report()).stdout)
    lvs = report.parse_lvs(runner.run(commands.lvs_report()).stdout)
    vgs = report.assemble_vgs(runner.run(commands.vgs_report()).stdout, pvs, lvs)
    return Observed(pvs={pv.name: pv for pv in pvs}, vgs=vgs)


def read_profiles(names: Iterable[str], root: Path = Path("/")) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        path = root / commands.profile_path(name).lstrip("/")
        if path.is_file():
            found[name] = path.read_text()
    return found


def observe(runner: Runner, devices: Iterable[str], profiles: Iterable[str] = ()) -> Observed:
    lvm = read_lvm(runner)
    found = {path: dev for path in devices if (dev := read_device(runner, path)) is not None}
    dm = report.parse_dmsetup_info(runner.run(commands.dmsetup_info(), check=False).stdout)
    return Observed(devices=found, pvs=lvm.pvs, vgs=lvm.vgs, profiles=read_profiles(profiles), dm_devices=tuple(dm))


def read_engine_configs(paths: Iterable[str], root: Path = Path("/")) -> dict[str, str]:
    """The engine configuration files that exist, by path (destroy refuses while one names the pool)."""
    found: dict[str, str] = {}
    for path in paths:
        file = root / path.lstrip("/")
        if file.is_file():
            found[path] = file.read_text(errors="replace")
    return found


def virtual(sizes: Iterable[int], names: Iterable[str] | None = None) -> Observed:
    """Blank virtual disks (``disk1``, ``disk2`` ... unless named) for planning without touching anything."""
    sizes = list(sizes)
    labels = list(names) if names is not None else [f"disk{index}" for index in range(1, len(sizes) + 1)]
    return Observed(devices={name: Device(name, size, virtual=True) for name, size in zip(labels, sizes, strict=True)})


def read_pool_status(runner: Runner, vg: str, pool: str, root: Path = Path("/")) -> PoolStatus:
    """One lvm report call, plus the pool's profile file."""
    from thinpool.core import health

    text = runner.run(commands.status_report(vg)).stdout
    return health.pool_status(text, vg, pool, read_profiles(health.profile_names(text), root))


def observe_for(spec: PoolSpec, runner: Runner) -> Observed:
    """The real system as ``spec`` needs it: devices, lvm, the profile, and (with an engine) the engine."""
    observed = observe(runner, spec.devices, profiles=(spec.profile_name,))
    if spec.engine == "none":
        return observed
    from thinpool.system.engine_state import observe_engine

    return replace(observed, engine=observe_engine(runner, spec))
