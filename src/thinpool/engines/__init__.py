"""Engine adapters and their registry: adding an engine touches this registry and its own module.

Each adapter module (``docker_devicemapper``, ``containerd_devmapper``, ``docker_overlay2``) is
pure and provides:
  * ``FILES``: the configuration files it reads (the observation layer reads them);
  * ``USES_THIN_VOLUME``: whether it keeps its data on a thin volume (whose filesystem is observed);
  * ``plan(spec, target, state) -> EngineChanges``: the actions that wire it to the pool;
  * ``doctor(state, target) -> list[Finding]``: what its configuration says that can hurt;
  * ``pool_users(state, target) -> tuple[str, ...]``: its files that still point at the pool.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from types import ModuleType

from thinpool.core.health import Finding
from thinpool.core.model import EngineState, Observed
from thinpool.core.plan import Plan
from thinpool.core.spec import NO_ENGINE, PoolSpec
from thinpool.core.units import format_size
from thinpool.engines.target import EngineChanges, PoolTarget
from thinpool.errors import SpecError

_MODULES = {
    "docker-devicemapper": "docker_devicemapper",
    "containerd-devmapper": "containerd_devmapper",
    "docker-overlay2-thin": "docker_overlay2",
}
NAMES: tuple[str, ...] = tuple(_MODULES)
CHOICES: tuple[str, ...] = (NO_ENGINE, *NAMES)

__all__ = ["CHOICES", "NAMES", "EngineChanges", "PoolTarget", "adapter", "doctor", "plan_host", "pool_users"]


def adapter(name: str) -> ModuleType:
    if name not in _MODULES:
        raise SpecError(f"unknown engine {name!r}", fix="choose one of: " + ", ".join(CHOICES))
    return importlib.import_module(f".{_MODULES[name]}", __package__)  # relative: also where Ansible bundles it


def adapters() -> tuple[ModuleType, ...]:
    return tuple(adapter(name) for name in NAMES)


def config_files() -> tuple[str, ...]:
    """Every file some adapter reads, each once, in registry order."""
    return tuple(dict.fromkeys(path for module in adapters() for path in module.FILES))


def plan_host(spec: PoolSpec, observed: Observed, pool_plan: Plan) -> Plan:
    """``pool_plan`` followed by the engine's actions, wired to the pool as the plan leaves it."""
    if spec.engine == NO_ENGINE:
        return pool_plan
    module = adapter(spec.engine)
    vg = observed.vgs.get(spec.vg)
    layout = pool_plan.layout
    data_size = layout.data_size if layout else 0
    room = (layout.headroom_extents + layout.left_extents) * layout.extent_size if layout else 0
    target = PoolTarget(spec.vg, spec.pool, data_size, vg.lvs if vg else (), data_size + room)
    changes: EngineChanges = module.plan(spec, target, observed.engine)
    return replace(
        pool_plan,
        actions=pool_plan.actions + changes.actions,
        warnings=pool_plan.warnings + _beyond_growth(module.largest_device(spec, target), target) + changes.warnings,
        next_steps=changes.next_steps,
    )


def _beyond_growth(device: tuple[str, int], target: PoolTarget) -> tuple[str, ...]:
    """A device that may hold more than the pool can ever grow to fills it, whatever autoextend does."""
    what, size = device
    if not target.max_data_size or size <= target.max_data_size:
        return ()
    return (
        f"{what} may grow to {format_size(size)}, more than {target.vg}/{target.pool} can ever hold "
        f"({format_size(target.max_data_size)} once autoextend has used the VG's room): one device can fill "
        "the pool; give the VG more disks (thinpool grow) or a smaller size",
    )


def _distinct(name: str) -> list[object]:
    return list(dict.fromkeys(getattr(module, name) for module in adapters()))


def doctor(state: EngineState, vg: str, pool: str) -> list[Finding]:
    """Each configuration's findings about itself and this pool (engines sharing a file check it once)."""
    target = PoolTarget(vg, pool, 0)
    return [finding for check in _distinct("doctor") for finding in check(state, target)]  # type: ignore[operator]


def pool_users(state: EngineState, vg: str, pool: str) -> tuple[str, ...]:
    """The configuration files that still point at ``vg/pool`` (destroy refuses while there is one)."""
    target = PoolTarget(vg, pool, 0)
    found = [path for check in _distinct("pool_users") for path in check(state, target)]  # type: ignore[operator]
    return tuple(dict.fromkeys(found))


def describe(state: EngineState) -> dict[str, object]:
    """What 'thinpool engine show' prints: versions and the storage parts of each config."""
    from thinpool.config import containerd_toml, daemon_json
    from thinpool.engines import containerd_devmapper, docker

    docker_json = daemon_json.parse(state.source(docker.DAEMON_JSON))
    if isinstance(docker_json, daemon_json.DaemonJson):
        keys = ("storage-driver", "storage-opts", "data-root", "hosts", "dns", "tlsverify")
        docker_part: dict[str, object] = {key: docker_json.data[key] for key in keys if key in docker_json.data}
    else:
        docker_part = {} if docker_json.problem == "missing" else {"error": str(docker_json)}
    toml = containerd_toml.parse(state.source(containerd_devmapper.CONFIG_TOML))
    if isinstance(toml, containerd_toml.ContainerdConfig):
        containerd_part: dict[str, object] = {"version": toml.version, **toml.devmapper} if toml.data else {}
    else:
        containerd_part = {} if toml.problem == "missing" else {"error": str(toml)}
    return {
        "versions": dict(state.versions),
        "docker daemon.json": docker_part,
        "containerd devmapper": containerd_part,
        "data root mounted from": state.data_root_source or "(not a mount point)",
        "docker devicemapper state": state.docker_devicemapper_state,
        "systemd drop-ins": {
            path: "present"
            for path in (docker.DOCKER_DROP_IN, containerd_devmapper.CONTAINERD_DROP_IN)
            if path in state.files
        },
    }
