"""docker-containerd-thin: Docker with its containerd image store (the default of a fresh Docker 29), all of it
on the pool: Docker's data root and containerd's root, each on an XFS thin volume of its own.

With the containerd image store, images and container layers are containerd's snapshots under containerd's
root (/var/lib/containerd: Debian's dockerd runs on the system containerd); Docker's data root keeps its
volumes, logs and container state. ``data-root`` does not move containerd's root, so one volume could hold
both only through bind mounts; a volume each needs none, gives each its own quota and fstrim, and each daemon
waits for its own mount. Both volumes are thin: the second costs no space until it is written.

daemon.json turns the store on (``features.containerd-snapshotter``); a classic ``storage-driver`` (what
docker-overlay2-thin writes) is dropped, since the containerd store reads that key as a snapshotter's name.
"""

from __future__ import annotations

from typing import Any

from thinpool.config import daemon_json
from thinpool.core.model import EngineState
from thinpool.core.plan import Action
from thinpool.core.spec import EngineOptions, PoolSpec
from thinpool.engines import containerd_overlayfs, docker, docker_overlay2, systemd, thin_volume
from thinpool.engines.target import EngineChanges, PoolTarget
from thinpool.errors import SpecError

FILES = tuple(dict.fromkeys((*docker_overlay2.FILES, *containerd_overlayfs.FILES)))
doctor = docker.doctor
pool_users = docker.pool_users
data_folders = docker.data_folders


def largest_device(spec: PoolSpec, target: PoolTarget) -> tuple[str, int]:
    return "each of the two thin volumes", spec.engine_options.volume_size or target.data_size


def containerd_store(state: EngineState) -> thin_volume.Store:
    """containerd's root (config.toml's, /var/lib/containerd by default) on its volume; --volume-name names Docker's."""
    root = containerd_overlayfs.containerd_root(state)
    return thin_volume.Store("containerd", root, containerd_overlayfs.VOLUME_NAME, "stop docker and containerd")


def stores(spec: PoolSpec, state: EngineState) -> tuple[thin_volume.Store, ...]:
    return docker_overlay2.store(spec, state), containerd_store(state)


def containerd_store_settings(
    current: dict[str, Any], options: EngineOptions, extra: dict[str, Any]
) -> dict[str, Any] | None:
    """daemon.json with the containerd image store on and no classic storage-driver; None when it is so already.

    A store another classic driver holds (devicemapper, btrfs ...) is refused unless --force: switching hides
    its images. overlay2's images are hidden too, and said so in the plan's reason.
    """
    driver = current.get("storage-driver")
    if driver in docker.CLASSIC_DRIVERS and driver != "overlay2" and not options.force:
        raise SpecError(
            f"{docker.DAEMON_JSON} sets storage-driver {driver!r}: the containerd image store would hide its images",
            fix="docker save what you need, then pass --force (a backup of daemon.json is kept)",
        )
    merged = {key: value for key, value in current.items() if not _classic(key, value)}
    features = current.get("features")
    merged["features"] = {**(features if isinstance(features, dict) else {}), docker.SNAPSHOTTER_FEATURE: True}
    merged |= docker.api_keys(options) | extra
    if options.data_root != "/var/lib/docker":
        merged["data-root"] = options.data_root
    return None if merged == current else merged


def _classic(key: str, value: Any) -> bool:
    """A classic driver's key: its storage-driver, and storage-opts (dm.*, overlay2.*) it alone reads."""
    return (key == "storage-driver" and value in docker.CLASSIC_DRIVERS) or key == "storage-opts"


def _daemon_json(spec: PoolSpec, state: EngineState) -> tuple[tuple[Action, ...], list[str]]:
    options = spec.engine_options
    current = docker.current_settings(state, options.force)
    cache, dns, warnings = docker.dns_cache(options, state, current)
    merged = containerd_store_settings(current, options, dns)
    content = None if merged is None else daemon_json.dumps(merged, docker.daemon_newline(state))
    reason = "Docker's containerd image store (images and layers in containerd's root, on its thin volume)"
    if current.get("storage-driver") in docker.CLASSIC_DRIVERS:
        reason += f"; the classic {current['storage-driver']} store's images are not seen by it"
    return docker.tls_actions(options, state) + cache + docker.config_action(content, reason), warnings


def plan(spec: PoolSpec, target: PoolTarget, state: EngineState) -> EngineChanges:
    options = spec.engine_options
    data, snapshots = stores(spec, state)
    warnings = docker.check_hosts(options) + thin_volume.size_warnings(spec, target)
    placed = [
        (data, "XFS with ftype=1, for Docker's data root"),
        (snapshots, "XFS with ftype=1, as overlayfs requires"),
    ]
    actions = thin_volume.stores_actions(spec, target, state, placed)
    engine, dns_warnings = _daemon_json(spec, state)
    warnings += dns_warnings
    why = f"containerd starts once {snapshots.root} is mounted, its XFS set to fail fast when the pool is full"
    unit = {"RequiresMountsFor": snapshots.root}
    engine += systemd.drop_in_action(
        state,
        containerd_overlayfs.CONTAINERD_DROP_IN,
        "containerd.service",
        unit,
        why,
        (thin_volume.xfs_errors_command(snapshots.root),),
    )
    why = f"docker starts once {data.root} is mounted, its XFS set to fail fast when the pool is full"
    before_start = (thin_volume.xfs_errors_command(data.root),)
    engine += docker.drop_in_action(state, options, {"RequiresMountsFor": data.root}, why, before_start)
    changes = (*actions, *engine, *systemd.reload_action(state, engine))
    steps = systemd.restart_steps("containerd docker", engine)
    return EngineChanges(changes, tuple(warnings), steps)
