"""docker-devicemapper: Docker's devicemapper driver on the pool (Docker 24 and older)."""

from __future__ import annotations

from thinpool.core.model import EngineState
from thinpool.core.spec import PoolSpec
from thinpool.core.units import GiB, MiB
from thinpool.engines import docker, systemd
from thinpool.engines.target import EngineChanges, PoolTarget
from thinpool.errors import SpecError

FILES = (docker.DAEMON_JSON, docker.DOCKER_DROP_IN, docker.DNSMASQ_CONF, docker.DNSMASQ_DEFAULTS)
doctor = docker.doctor
pool_users = docker.pool_users
data_folders = docker.data_folders


def _docker_size(size: int) -> str:
    """Docker parses sizes in binary units: 10G is 10 GiB."""
    return f"{size // GiB}G" if size % GiB == 0 else f"{size // MiB}M"


def storage_opts(spec: PoolSpec, target: PoolTarget, state: EngineState) -> list[str]:
    options = spec.engine_options
    chosen = {option.split("=", 1)[0].strip() for option in options.storage_opts}
    ours = [
        f"dm.thinpooldev={target.dm_path}",
        "dm.use_deferred_removal=true",
        "dm.use_deferred_deletion=true",
        "dm.fs=xfs",
        "dm.mountopt=noatime",
        f"dm.basesize={_docker_size(options.base_size)}",
        f"dm.min_free_space={options.min_free_space}%",
    ]
    if state.udev:
        # XFS fails at once on ENOSPC instead of retrying forever. Docker finds the device's sysfs
        # folder by reading the /dev/mapper link udev makes; without udev every container fails.
        ours.append("dm.xfs_nospace_max_retries=0")
    # an option the operator gave replaces thinpool's default for that key (Docker would take the last)
    return [option for option in ours if option.split("=", 1)[0] not in chosen] + list(options.storage_opts)


def largest_device(spec: PoolSpec, target: PoolTarget) -> tuple[str, int]:  # noqa: ARG001
    return "each image or container (dm.basesize)", spec.engine_options.base_size


def refuse_shared_pool(target: PoolTarget) -> None:
    thin = target.thin_volumes()
    if thin:
        raise SpecError(
            f"{target.vg}/{target.pool} holds lvm thin volumes ({', '.join(lv.name for lv in thin)}); "
            "an engine's devicemapper storage needs a pool of its own",
            fix="give Docker a dedicated pool (--pool NAME), or use --engine docker-overlay2-thin",
        )


def plan(spec: PoolSpec, target: PoolTarget, state: EngineState) -> EngineChanges:
    options = spec.engine_options
    docker.refuse_removed_devicemapper(state)
    refuse_shared_pool(target)
    warnings = docker.check_hosts(options)
    current = docker.current_settings(state, options.force)
    if state.docker_devicemapper_state and not docker.points_at(state, target):
        raise SpecError(
            f"{options.data_root}/devicemapper holds Docker devices of another pool (or of loopback files); "
            "Docker would refuse this pool ('Unable to take ownership of thin-pool')",
            fix=f"stop Docker and move {options.data_root} aside (its images and containers stay there), then re-run",
        )
    if state.observed and "dockerd" not in state.versions:
        warnings.append("dockerd was not found: daemon.json is written for the Docker installed later")
    cache, dns, cache_warnings = docker.dns_cache(options, state, current)
    warnings += cache_warnings
    content = docker.merged_daemon_json(
        current,
        "devicemapper",
        storage_opts(spec, target, state),
        docker.api_keys(options) | dns,
        force=options.force,
        newline=docker.daemon_newline(state),
    )
    actions = docker.tls_actions(options, state) + cache
    actions += docker.config_action(content, f"devicemapper on {target.dm_path} (deferred removal, xfs, noatime)")
    unit = systemd.device_unit(target.dm_path)
    actions += docker.drop_in_action(
        state, options, {"Requires": unit, "After": unit}, f"docker starts once {target.dm_path} is there"
    )
    changes = actions + systemd.reload_action(state, actions)
    return EngineChanges(changes, tuple(warnings), systemd.restart_steps("docker", actions))


def stores(spec: PoolSpec, state: EngineState) -> tuple[()]:  # noqa: ARG001 (the protocol's signature)
    """No store on a thin volume: its data is in the pool's own thin devices."""
    return ()
