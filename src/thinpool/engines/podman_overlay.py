"""podman-overlay-thin: containers-storage (Podman, Buildah, CRI-O) with its overlay driver, root's store
(storage.conf's ``graphroot``) on an XFS thin volume of the pool.

devicemapper was removed from containers-storage as from Docker: overlay on an XFS thin volume is the
thin route. The volume is mounted with project quotas, so ``podman run --storage-opt size=`` works.
Rootless users keep their store under their home (``~/.local/share/containers/storage``), which this
engine does not move: put /home on a thin volume of its own if their images must be on the pool.
"""

from __future__ import annotations

from thinpool.config import storage_conf
from thinpool.config.document import ConfigError, Problem
from thinpool.core.findings import Finding, Severity
from thinpool.core.model import EngineState
from thinpool.core.plan import Action, ActionKind, Target
from thinpool.core.spec import PoolSpec
from thinpool.engines import thin_volume
from thinpool.engines.target import EngineChanges, PoolTarget
from thinpool.errors import SpecError

STORAGE_CONF = storage_conf.PATH
FILES = (STORAGE_CONF, thin_volume.FSTAB)
VOLUME_NAME = "containers-data"  # unless --volume-name says otherwise
DRIVER = "overlay"


def largest_device(spec: PoolSpec, target: PoolTarget) -> tuple[str, int]:
    return "containers-storage's thin volume", spec.engine_options.volume_size or target.data_size


def _parsed(state: EngineState) -> storage_conf.StorageConf | None:
    """storage.conf to merge into; None when there is none. A broken one is refused."""
    parsed = storage_conf.parse(state.source(STORAGE_CONF))
    if isinstance(parsed, storage_conf.StorageConf):
        return parsed
    if parsed.problem == Problem.MISSING:
        return None
    raise SpecError(f"{parsed}; it was left untouched", fix=f"repair {STORAGE_CONF} (podman info shows what it reads)")


def store(spec: PoolSpec, state: EngineState) -> thin_volume.Store:
    """Root's containers-storage graphroot, on the thin volume."""
    parsed = _parsed(state)
    graphroot = parsed.graphroot if parsed else storage_conf.DEFAULT_GRAPHROOT
    name = spec.engine_options.volume_name or VOLUME_NAME
    return thin_volume.Store("containers-storage", graphroot, name, "stop every podman container and CRI-O")


def merged_storage_conf(state: EngineState, *, force: bool) -> str | None:
    """storage.conf with the overlay driver; every other key and comment kept. Another driver is refused."""
    parsed = _parsed(state)
    present = parsed.driver if parsed else ""
    if present not in ("", DRIVER) and not force:
        raise SpecError(
            f"{STORAGE_CONF} sets driver {present!r}; switching hides every image and container it holds",
            fix=f"pass --force to switch to {DRIVER} (a backup of {STORAGE_CONF} is kept)",
        )
    return storage_conf.edit(state.source(STORAGE_CONF).text or "", {"driver": DRIVER})


def stores(spec: PoolSpec, state: EngineState) -> tuple[thin_volume.Store, ...]:
    return (store(spec, state),)


def plan(spec: PoolSpec, target: PoolTarget, state: EngineState) -> EngineChanges:
    root = store(spec, state)
    warnings = thin_volume.size_warnings(spec, target)
    if state.observed and "podman" not in state.versions:
        warnings.append("podman was not found: its store is put on the pool anyway")
    actions = thin_volume.storage_actions(spec, target, state, root, "XFS with ftype=1, as overlay requires")
    content = merged_storage_conf(state, force=spec.engine_options.force)
    if content is not None:
        reason = f"the {DRIVER} driver, on the XFS thin volume at {root.root}"
        target_name = Target(name="containers storage.conf")
        actions.append(
            Action("write", ActionKind.ENGINE_CONFIG, target_name, reason, path=STORAGE_CONF, content=content)
        )
    steps = ("podman, buildah and CRI-O read storage.conf at their next start",) if actions else ()
    return EngineChanges(tuple(actions), tuple(warnings), steps)


def doctor(state: EngineState, target: PoolTarget) -> list[Finding]:
    parsed = storage_conf.parse(state.source(STORAGE_CONF))
    if not isinstance(parsed, ConfigError) or parsed.problem == Problem.MISSING:
        return _outside_pool(state, target)
    return [
        Finding(
            Severity.WARNING,
            "storage-conf-invalid",
            f"{parsed}: podman, buildah and CRI-O will not start",
            f"repair it (podman info names the error), or thinpool engine configure --engine podman-overlay-thin "
            f"--vg {target.vg} --pool {target.pool} --force",
        )
    ]


def _layer_links(state: EngineState) -> str:
    """The overlay driver's folder of short links under graphroot: one entry per layer ("" when storage.conf
    does not parse: doctor reports that)."""
    parsed = storage_conf.parse(state.source(STORAGE_CONF))
    if isinstance(parsed, storage_conf.StorageConf):
        return f"{parsed.graphroot}/overlay/l"
    return f"{storage_conf.DEFAULT_GRAPHROOT}/overlay/l" if parsed.problem == Problem.MISSING else ""


def data_folders(state: EngineState) -> tuple[str, ...]:
    folder = _layer_links(state)
    return (folder,) if folder else ()


def _outside_pool(state: EngineState, target: PoolTarget) -> list[Finding]:
    folder = _layer_links(state)
    seen = state.root(folder)
    if not (folder and seen.entries and seen.on_root_filesystem):
        return []
    graphroot = folder.removesuffix("/overlay/l")
    problem = (
        f"containers-storage (Podman, Buildah, CRI-O) keeps {seen.entries} layers in {graphroot} on the root "
        "filesystem, not on a thin volume: they fill it, and the pool's monitoring, autoextend and trims do not "
        "reach them"
    )
    fix = (
        f"stop every podman container and CRI-O, move {graphroot} aside (mv {graphroot} {graphroot}.old), then "
        f"thinpool engine configure --engine podman-overlay-thin --vg {target.vg} --pool {target.pool} (podman "
        "save and load, or pull, the images you need)"
    )
    return [Finding(Severity.WARNING, "engine-data-outside-pool", problem, fix)]


def pool_users(state: EngineState, target: PoolTarget) -> tuple[str, ...]:  # noqa: ARG001 (the protocol's)
    """None: storage.conf never names the pool (its volume is an lvm thin volume, which destroy sees)."""
    return ()
