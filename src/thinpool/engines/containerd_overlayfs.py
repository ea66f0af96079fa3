"""containerd-overlayfs-thin: containerd with its default overlayfs snapshotter (what Kubernetes' CRI,
nerdctl and k3s-style hosts run), its whole root on an XFS thin volume of the pool.

containerd keeps content and snapshots under its root (config.toml's ``root``, /var/lib/containerd by
default); the volume is mounted there before containerd starts. config.toml is read, never written:
the overlayfs snapshotter needs no setting.
"""

from __future__ import annotations

from thinpool.config import containerd_toml
from thinpool.config.document import Problem
from thinpool.core.findings import Finding, Severity
from thinpool.core.model import EngineState
from thinpool.core.spec import PoolSpec
from thinpool.engines import containerd_devmapper, docker, systemd, thin_volume
from thinpool.engines.target import EngineChanges, PoolTarget
from thinpool.errors import SpecError

CONFIG_TOML = containerd_toml.PATH
CONTAINERD_DROP_IN = containerd_devmapper.CONTAINERD_DROP_IN
FILES = (CONFIG_TOML, CONTAINERD_DROP_IN, thin_volume.FSTAB)
VOLUME_NAME = "containerd-data"  # unless --volume-name says otherwise
SNAPSHOTS = "io.containerd.snapshotter.v1.overlayfs/snapshots"  # under containerd's root: one entry per snapshot
pool_users = containerd_devmapper.pool_users


def largest_device(spec: PoolSpec, target: PoolTarget) -> tuple[str, int]:
    return "containerd's thin volume", spec.engine_options.volume_size or target.data_size


def containerd_root(state: EngineState) -> str:
    """config.toml's root, or containerd's default; a config.toml that does not parse is refused."""
    parsed = containerd_toml.parse(state.source(CONFIG_TOML))
    if isinstance(parsed, containerd_toml.ContainerdConfig):
        return parsed.root
    if parsed.problem == Problem.MISSING:
        return containerd_toml.DEFAULT_ROOT
    raise SpecError(f"{parsed}; it was left untouched", fix=f"repair {CONFIG_TOML}, then re-run")


def store(spec: PoolSpec, state: EngineState) -> thin_volume.Store:
    """containerd's root, on the thin volume."""
    name = spec.engine_options.volume_name or VOLUME_NAME
    return thin_volume.Store("containerd", containerd_root(state), name, "stop containerd (systemctl stop containerd)")


def stores(spec: PoolSpec, state: EngineState) -> tuple[thin_volume.Store, ...]:
    return (store(spec, state),)


def plan(spec: PoolSpec, target: PoolTarget, state: EngineState) -> EngineChanges:
    root = store(spec, state)
    warnings = thin_volume.size_warnings(spec, target)
    if state.observed and "containerd" not in state.versions:
        warnings.append("containerd was not found: its root is put on the pool anyway")
    actions = thin_volume.storage_actions(spec, target, state, root, "XFS with ftype=1, as overlayfs requires")
    why = f"containerd starts once {root.root} is mounted, its XFS set to fail fast when the pool is full"
    unit = {"RequiresMountsFor": root.root}
    engine = systemd.drop_in_action(
        state, CONTAINERD_DROP_IN, "containerd.service", unit, why, (thin_volume.xfs_errors_command(root.root),)
    )
    changes = (*actions, *engine, *systemd.reload_action(state, engine))
    steps = systemd.restart_steps("containerd", engine)
    if changes:
        steps += ("overlayfs is containerd's default snapshotter: ctr, nerdctl and the CRI use it as they are",)
    return EngineChanges(changes, tuple(warnings), steps)


def _snapshots(state: EngineState) -> str:
    """containerd's overlayfs snapshots folder; none when config.toml does not parse (containerd-devmapper's
    doctor reports that)."""
    try:
        return f"{containerd_root(state)}/{SNAPSHOTS}"
    except SpecError:
        return ""


def data_folders(state: EngineState) -> tuple[str, ...]:
    folder = _snapshots(state)
    return (folder,) if folder else ()


def doctor(state: EngineState, target: PoolTarget) -> list[Finding]:
    """containerd's overlayfs snapshots on the root filesystem (config.toml's own findings are
    containerd-devmapper's; Docker's containerd image store has Docker's rule)."""
    folder = _snapshots(state)
    seen = state.root(folder)
    if not (folder and seen.entries and seen.on_root_filesystem) or docker.reports_containerd_root(state):
        return []
    root = containerd_root(state)
    problem = (
        f"containerd keeps {seen.entries} overlayfs snapshots in {root} on the root filesystem, not on a thin "
        "volume: they fill it, and the pool's monitoring, autoextend and trims do not reach them"
    )
    fix = (
        f"stop containerd (and what runs on it), move {root} aside (mv {root} {root}.old), then "
        f"{docker.configure_command('containerd-overlayfs-thin', target)} and start containerd (pull the images again, "
        "or ctr export and import them)"
    )
    return [Finding(Severity.WARNING, docker.OUTSIDE_POOL, problem, fix)]
