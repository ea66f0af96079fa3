"""docker-overlay2-thin: overlay2 (every Docker version) on an XFS thin volume of the pool."""

from __future__ import annotations

from thinpool.core.model import EngineState
from thinpool.core.spec import PoolSpec
from thinpool.engines import docker, systemd, thin_volume
from thinpool.engines.target import EngineChanges, PoolTarget

FSTAB = thin_volume.FSTAB
FILES = (docker.DAEMON_JSON, docker.DOCKER_DROP_IN, FSTAB, docker.DNSMASQ_CONF, docker.DNSMASQ_DEFAULTS)
doctor = docker.doctor
pool_users = docker.pool_users
data_folders = docker.data_folders


def largest_device(spec: PoolSpec, target: PoolTarget) -> tuple[str, int]:
    return "the data root's thin volume", spec.engine_options.volume_size or target.data_size


VOLUME_NAME = "docker-data"  # unless --volume-name says otherwise


def store(spec: PoolSpec, state: EngineState | None = None) -> thin_volume.Store:  # noqa: ARG001 (the protocol's)
    """Docker's data root, on the thin volume."""
    options = spec.engine_options
    name = options.volume_name or VOLUME_NAME
    return thin_volume.Store("Docker", options.data_root, name, "stop Docker", movable=True)


def stores(spec: PoolSpec, state: EngineState) -> tuple[thin_volume.Store, ...]:
    return (store(spec, state),)


def plan(spec: PoolSpec, target: PoolTarget, state: EngineState) -> EngineChanges:
    options = spec.engine_options
    warnings = docker.check_hosts(options) + thin_volume.size_warnings(spec, target)
    actions = thin_volume.storage_actions(spec, target, state, store(spec), "XFS with ftype=1, as overlay2 requires")
    extra = docker.api_keys(options)
    if options.data_root != "/var/lib/docker":
        extra["data-root"] = options.data_root
    current = docker.current_settings(state, options.force)
    extra |= docker.classic_store_keys(current, state, options.force)
    cache, dns, cache_warnings = docker.dns_cache(options, state, current)
    warnings += cache_warnings
    content = docker.merged_daemon_json(
        current, "overlay2", [], extra | dns, force=options.force, newline=docker.daemon_newline(state)
    )
    engine = docker.tls_actions(options, state) + cache
    engine += docker.config_action(content, f"overlay2 on the XFS thin volume at {options.data_root}")
    why = f"docker starts once {options.data_root} is mounted, its XFS set to fail fast when the pool is full"
    unit = {"RequiresMountsFor": options.data_root}
    engine += docker.drop_in_action(state, options, unit, why, (thin_volume.xfs_errors_command(options.data_root),))
    changes = (*actions, *engine, *systemd.reload_action(state, engine))
    return EngineChanges(changes, tuple(warnings), systemd.restart_steps("docker", engine))
