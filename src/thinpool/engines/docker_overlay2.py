"""docker-overlay2-thin: overlay2 (every Docker version) on an XFS thin volume of the pool."""

from __future__ import annotations

from thinpool.core.model import EngineState
from thinpool.core.plan import Action
from thinpool.core.spec import PoolSpec
from thinpool.core.units import format_size
from thinpool.engines import EngineChanges, PoolTarget, docker, systemd
from thinpool.errors import SpecError
from thinpool.lvm import commands

FSTAB = "/etc/fstab"
MOUNT_OPTIONS = "defaults,pquota,noatime"  # pquota: per-container size limits (overlay2.size)


def fstab_line(device: str, data_root: str) -> str:
    return f"{device} {data_root} xfs {MOUNT_OPTIONS} 0 0"


def merged_fstab(text: str, device: str, data_root: str, *, force: bool) -> str | None:
    """fstab with the data root's entry; None when it is already there. Another entry there is refused."""
    wanted = fstab_line(device, data_root)
    lines = text.splitlines()
    kept = []
    for line in lines:
        fields = line.split()
        if fields and not fields[0].startswith("#") and len(fields) > 1 and fields[1].rstrip("/") == data_root:
            if line.split() == wanted.split():
                return None
            if not force:
                raise SpecError(
                    f"{FSTAB} already mounts {fields[0]} on {data_root}",
                    fix="remove that entry (and move its data), pass --data-root, or --force to replace the entry",
                )
            continue
        kept.append(line)
    return "\n".join([*kept, "# thinpool: Docker's data root on a thin volume", wanted]) + "\n"


def _volume_actions(spec: PoolSpec, target: PoolTarget, state: EngineState, device: str) -> list[Action]:
    name = spec.engine_options.volume_name
    existing = next((lv for lv in target.lvs if lv.bare_name == name), None)
    actions = []
    if existing is None:
        size = spec.engine_options.volume_size or target.data_size
        reason = f"{format_size(size)} of virtual space for Docker, taken from the pool as it is written"
        argv = commands.lvcreate_thin(target.vg, target.pool, name, size)
        actions.append(Action("create", "thin-volume", f"{target.vg}/{name}", reason, argv))
    elif existing.pool_lv != target.pool:
        raise SpecError(
            f"{target.vg}/{name} exists and is not a thin volume of {target.pool}",
            fix="pick another --volume-name; thinpool never converts an existing volume",
        )
    if existing is None or not state.volume_filesystem:
        argv = ("mkfs.xfs", "-q", "-n", "ftype=1", device)
        actions.append(Action("create", "filesystem", device, "XFS with ftype=1, as overlay2 requires", argv))
    elif state.volume_filesystem != "xfs":
        raise SpecError(
            f"{device} carries {state.volume_filesystem}, not XFS",
            fix="overlay2 here needs XFS with ftype=1: pick another --volume-name, or move its data and wipe it",
        )
    return actions


def _mount_actions(spec: PoolSpec, state: EngineState, device: str) -> list[Action]:
    data_root = spec.engine_options.data_root
    actions = []
    fstab = merged_fstab(state.files.get(FSTAB, ""), device, data_root, force=spec.engine_options.force)
    if fstab is not None:
        actions.append(Action("write", "fstab", data_root, "mounted at every boot, with project quotas", path=FSTAB,
                              content=fstab))  # fmt: skip
    if state.data_root_source == device:
        return actions
    if state.data_root_source:
        raise SpecError(
            f"{state.data_root_source} is already mounted on {data_root}",
            fix="stop Docker and unmount it first, or pass another --data-root",
        )
    if state.data_root_entries:
        raise SpecError(
            f"{data_root} already holds {state.data_root_entries} entries; mounting over them would hide them",
            fix=f"stop Docker and move {data_root} aside (mv {data_root} {data_root}.old), then re-run",
        )
    actions.append(Action("change", "mount", data_root, f"mount {device} there", ("mount", "--mkdir", data_root)))
    return actions


def plan(spec: PoolSpec, target: PoolTarget, state: EngineState) -> EngineChanges:
    options = spec.engine_options
    warnings = docker.check_hosts(options)
    device = f"/dev/mapper/{commands.dm_name(target.vg, options.volume_name)}"
    if (options.volume_size or 0) > target.data_size:
        warnings.append(
            f"the volume ({format_size(options.volume_size or 0)}) is larger than the pool's data "
            f"({format_size(target.data_size)}): autoextend must keep up, or writes fail when the pool is full"
        )
    actions = _volume_actions(spec, target, state, device) + _mount_actions(spec, state, device)
    extra = docker.api_keys(options)
    if options.data_root != "/var/lib/docker":
        extra["data-root"] = options.data_root
    content = docker.daemon_json(state.files.get(docker.DAEMON_JSON), "overlay2", [], extra, force=options.force)
    engine = docker.config_action(content, f"overlay2 on the XFS thin volume at {options.data_root}")
    why = f"docker starts once {options.data_root} is mounted"
    engine += docker.drop_in_action(state, options, {"RequiresMountsFor": options.data_root}, why)
    changes = (*actions, *engine, *systemd.reload_action(state, engine))
    return EngineChanges(changes, tuple(warnings), systemd.restart_steps("docker", engine))
