"""Use cases on a pool: plan, apply (fresh or saved), grow, destroy, and wiring or showing an engine."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from thinpool import engines
from thinpool.app.context import Context
from thinpool.app.executor import ApplyResult, Progress, StalePlan, apply, check_fresh
from thinpool.app.planning import plan_host
from thinpool.core import crypt, lifecycle
from thinpool.core.model import CryptState, EngineState, LvmLocal, Observed, StoreRoot, virtual_disks
from thinpool.core.plan import Action, ActionKind, Plan, SavedPlanError
from thinpool.core.spec import NO_ENGINE, PoolSpec, check_device_path
from thinpool.errors import ThinpoolError
from thinpool.system import files, observe, observe_engine


def _checked(spec: PoolSpec) -> PoolSpec:
    """The spec, checked before anything reads the system: no bad name or path reaches a command."""
    spec.validate()
    spec.check_devices()
    return spec


def observed_for(ctx: Context, spec: PoolSpec) -> Observed:
    return observe_engine.observe_for(_checked(spec), ctx.runner, ctx.root)


def plan_replica(
    ctx: Context,
    spec: PoolSpec,
    devices: tuple[str, ...],
    names: list[str],
    lvm_local: LvmLocal | None = None,
    crypt_state: CryptState | None = None,
) -> tuple[list[int], Plan]:
    """A plan for disks named ``names``, as large as this host's ``devices`` (read, never touched), made
    against this host's engine files and programs, as a VM that sees them will (no systemd, no mounts), and
    ``lvm_local``, the guest's lvmlocal.conf."""
    spec.validate()
    sizes = []
    for path in devices:
        check_device_path(path)
        device = observe.read_device(ctx.runner, path, ctx.root)
        if device is None:
            raise ThinpoolError(f"{path}: no such block device", fix="check the path with lsblk")
        sizes.append(device.size)
    replica = replace(spec, devices=tuple(names))
    engine = EngineState()
    if spec.engine != NO_ENGINE:
        seen = observe_engine.engine_state(ctx.runner, replica, ctx.root)
        unmounted = {path: replace(root, source="") for path, root in seen.roots.items()}
        engine = replace(seen, systemd=False, roots=unmounted)
    observed = Observed(
        devices=virtual_disks(sizes, names).devices,
        engine=engine,
        lvm_local=lvm_local,
        crypt=crypt_state or CryptState(),
    )
    return sizes, plan_host(replica, observed)


def plan(ctx: Context, spec: PoolSpec) -> Plan:
    return plan_host(spec, observed_for(ctx, spec))


def save(plan: Plan, path: Path) -> None:
    """``plan --out``: written atomically; a symbolic link or a special file there is refused."""
    files.write_atomically(path, plan.to_json(), keep_owner=False)


def read_saved(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise SavedPlanError(
            f"{path} is not a readable thinpool plan: {error}", fix="make one with 'thinpool plan ... --out FILE'"
        ) from error
    return Plan.from_dict(data)


def with_planned_uuids(observed: Observed, saved: Plan) -> Observed:
    """The LUKS UUIDs the saved plan chose for the devices it formats (observing drew new ones): its
    luksFormat and crypttab line are then what the re-derived plan holds too."""
    planned = {
        action.argv[-1]: action.argv[action.argv.index("--uuid") + 1]
        for action in saved.actions
        if action.kind is ActionKind.LUKS_HEADER and action.op == "create" and "--uuid" in action.argv
    }
    fresh = {
        device: uuid if crypt.is_luks(observed.devices.get(device)) else planned.get(device, uuid)
        for device, uuid in observed.crypt.uuids.items()
    }
    return replace(observed, crypt=replace(observed.crypt, uuids=fresh))


def replan_saved(ctx: Context, path: Path) -> Plan:
    """The plan re-derived from the saved one's spec, refused unless it is the very same plan.

    Only the re-derived plan is shown and run: what else the file says (warnings, layout) is not trusted.
    """
    saved = read_saved(path)
    observed = with_planned_uuids(observed_for(ctx, saved.spec), saved)
    check_fresh(saved, observed)
    fresh = plan_host(saved.spec, observed)
    if _unguarded(fresh.actions) != _unguarded(saved.actions) or fresh.layout != saved.layout:
        raise StalePlan(
            "the saved plan's actions no longer match what the system needs",
            fix="make a new plan with 'thinpool plan --out FILE' and review it",
        )
    return fresh


def _unguarded(actions: tuple[Action, ...]) -> tuple[Action, ...]:
    """The actions without what each write's file held: a plan made where nothing was read (on virtual disks,
    for a rehearsal) has none, and the fingerprint already compares the files."""
    return tuple(replace(action, expect="") for action in actions)


def run(ctx: Context, plan: Plan, progress: Progress | None = None) -> ApplyResult:
    return apply(plan, ctx.runner, root=ctx.root, progress=progress)


def plan_grow(ctx: Context, spec: PoolSpec) -> Plan:
    """A VG on thinpool's LUKS mappings gets its new disks encrypted the same way, with the same key."""
    observed = observe.observe(ctx.runner, _checked(spec).devices, root=ctx.root, vg=spec.vg)
    vg = observed.vgs.get(spec.vg)
    recovery_key = spec.encryption.key_file if spec.encryption else crypt.default_key_file(spec.vg)
    entries = crypt.our_entries(observe.read_crypttab(ctx.root))
    encryption = crypt.vg_encryption(vg.pv_names, entries, recovery_key) if vg else None
    if encryption is not None:
        spec = replace(spec, encryption=encryption)
        observed = observe.read_crypt(ctx.runner, spec.devices, encryption, observed, ctx.root)
    return lifecycle.plan_grow(spec, observed)


def plan_destroy(ctx: Context, spec: PoolSpec, *, erase_encryption: bool = False) -> Plan:
    spec.validate()
    observed = observe.observe(ctx.runner, (), root=ctx.root)
    vg = observed.vgs.get(spec.vg)
    if vg is not None:
        observed = observe.read_crypt_under(ctx.runner, vg.pv_names, observed, ctx.root)
    users = engines.pool_users(observe_engine.engine_files(ctx.root), spec.vg, spec.pool)
    return lifecycle.plan_destroy(spec, observed, users, erase_encryption=erase_encryption)


def plan_engine_configure(ctx: Context, spec: PoolSpec) -> Plan:
    if spec.engine == NO_ENGINE:
        raise ThinpoolError("engine configure needs --engine", fix="e.g. --engine docker-devicemapper")
    observed = observed_for(ctx, spec)
    vg = observed.vgs.get(spec.vg)
    if vg is None or vg.lv(spec.pool) is None:
        raise ThinpoolError(
            f"{spec.vg}/{spec.pool} does not exist", fix="create it with 'thinpool apply DEVICE --engine ...'"
        )
    return plan_host(spec, observed)


def engine_show(ctx: Context, spec: PoolSpec) -> dict[str, object]:
    return _describe_engines(observe_engine.engine_state(ctx.runner, spec, ctx.root))


def _describe_engines(state: EngineState) -> dict[str, object]:
    """What 'thinpool engine show' prints: versions and the storage parts of each config."""
    from thinpool.config import containerd_toml, daemon_json, storage_conf
    from thinpool.engines import containerd_devmapper, docker

    docker_json = daemon_json.parse(state.source(docker.DAEMON_JSON))
    if isinstance(docker_json, daemon_json.DaemonJson):
        keys = ("storage-driver", "storage-opts", "data-root", "features", "hosts", "dns", "tlsverify")
        docker_part: dict[str, object] = {key: docker_json.data[key] for key in keys if key in docker_json.data}
    else:
        docker_part = {} if docker_json.problem == "missing" else {"error": str(docker_json)}
    toml = containerd_toml.parse(state.source(containerd_devmapper.CONFIG_TOML))
    if isinstance(toml, containerd_toml.ContainerdConfig):
        containerd_part: dict[str, object] = {"version": toml.version, **toml.devmapper} if toml.data else {}
    else:
        containerd_part = {} if toml.problem == "missing" else {"error": str(toml)}
    containers = storage_conf.parse(state.source(storage_conf.PATH))
    if isinstance(containers, storage_conf.StorageConf):
        containers_part: dict[str, object] = {"driver": containers.driver, "graphroot": containers.graphroot}
    else:
        containers_part = {} if containers.problem == "missing" else {"error": str(containers)}
    data = engines.data_folders(state)
    return {
        "versions": dict(state.versions),
        "docker daemon.json": docker_part,
        "containerd devmapper": containerd_part,
        "containers storage.conf": containers_part,
        "store roots mounted from": {
            path: seen.source or "(not a mount point)" for path, seen in state.roots.items() if path not in data
        },
        "engine data": {path: _data_place(state.root(path)) for path in data if state.root(path).entries},
        "docker devicemapper state": state.docker_devicemapper_state,
        "systemd drop-ins": {
            path: "present"
            for path in (docker.DOCKER_DROP_IN, containerd_devmapper.CONTAINERD_DROP_IN)
            if path in state.files
        },
    }


def _data_place(seen: StoreRoot) -> str:
    where = "on the root filesystem" if seen.on_root_filesystem else "on a filesystem of its own"
    return f"{seen.entries} entries, {where}"
