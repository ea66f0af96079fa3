"""docker-overlay2-thin: overlay2 (every Docker version) on an XFS thin volume of the pool."""

from __future__ import annotations

from thinpool.config import fstab
from thinpool.config.document import ConfigError
from thinpool.core import names
from thinpool.core.lvm import commands
from thinpool.core.model import EngineState
from thinpool.core.plan import Action, ActionKind, Target
from thinpool.core.programs import argv as programs
from thinpool.core.spec import PoolSpec
from thinpool.core.units import format_size
from thinpool.engines import docker, systemd
from thinpool.engines.target import EngineChanges, PoolTarget
from thinpool.errors import SpecError

FSTAB = fstab.PATH
FILES = (docker.DAEMON_JSON, docker.DOCKER_DROP_IN, FSTAB, docker.DNSMASQ_CONF, docker.DNSMASQ_DEFAULTS)
USES_THIN_VOLUME = True  # --volume-name: its filesystem is observed
doctor = docker.doctor
pool_users = docker.pool_users
MOUNT_OPTIONS = "defaults,pquota,noatime"  # pquota: per-container size limits (overlay2.size)


# XFS retries failed metadata writes forever by default (/sys/fs/xfs/DEV/error/metadata/*): on a
# thin volume whose pool is full that hangs every writer. ENOSPC fails at once (space will not
# come back by retrying; a pool that can grow queues writes instead of returning it); EIO is
# retried for 30 s. Set before every start of dockerd, once the volume is mounted.
XFS_ERRORS = (("ENOSPC", "max_retries", 0), ("EIO", "retry_timeout_seconds", 30))


def xfs_errors_command(data_root: str) -> str:
    """An ExecStartPre= line ('$$' is systemd's literal '$'; '-': a kernel without the knobs is no failure).

    XFS names its sysfs folder after the kernel's device (dm-4): found from the mount's device
    number, which works with or without udev's /dev/mapper links.
    """
    folder = 'd=/sys/fs/xfs/$$(basename $$(readlink -f /sys/dev/block/$$(mountpoint -d "$$1")))/error/metadata'
    knobs = " && ".join(f"echo {value} > $$d/{error}/{knob}" for error, knob, value in XFS_ERRORS)
    return f"ExecStartPre=-/bin/sh -c '{folder} && {knobs}' xfs-errors {data_root}"


def largest_device(spec: PoolSpec, target: PoolTarget) -> tuple[str, int]:
    return "the data root's thin volume", spec.engine_options.volume_size or target.data_size


def fstab_line(device: str, data_root: str) -> str:
    return f"{device} {data_root} xfs {MOUNT_OPTIONS} 0 0"


def merged_fstab(state: EngineState, device: str, data_root: str, *, force: bool) -> str | None:
    """fstab with the data root's entry; None when it is already there. Another entry there is refused.

    Every other line comes back byte for byte, in the file's own line ending.
    """
    data_root = fstab.normal(data_root)
    parsed = fstab.parse(state.source(FSTAB))
    if isinstance(parsed, ConfigError):
        raise SpecError(f"{parsed}; it was left untouched", fix=f"check {FSTAB}'s permissions, then re-run")
    wanted = tuple(fstab_line(device, data_root).split())
    there = parsed.on(data_root)
    for entry in there:
        if entry.fields == wanted:
            return None
        if not force:
            raise SpecError(
                f"{FSTAB} already mounts {entry.source} on {data_root}",
                fix="remove that entry (and move its data), pass --data-root, or --force to replace the entry",
            )
    return parsed.without(there).appended("# thinpool: Docker's data root on a thin volume", " ".join(wanted))


def _volume_actions(spec: PoolSpec, target: PoolTarget, state: EngineState, device: str) -> list[Action]:
    name = spec.engine_options.volume_name
    existing = next((lv for lv in target.lvs if lv.bare_name == name), None)
    actions = []
    if existing is None:
        size = spec.engine_options.volume_size or target.data_size
        reason = f"{format_size(size)} of virtual space for Docker, taken from the pool as it is written"
        argv = commands.lvcreate_thin(target.vg, target.pool, name, size)
        actions.append(Action("create", ActionKind.THIN_VOLUME, Target(vg=target.vg, lv=name), reason, argv))
    elif existing.pool_lv != target.pool:
        raise SpecError(
            f"{target.vg}/{name} exists and is not a thin volume of {target.pool}",
            fix="pick another --volume-name; thinpool never converts an existing volume",
        )
    if existing is None or not state.volume_filesystem:
        why = "XFS with ftype=1, as overlay2 requires"
        actions.append(Action("create", ActionKind.FILESYSTEM, Target(path=device), why, programs.mkfs_xfs(device)))
    elif state.volume_filesystem != "xfs":
        raise SpecError(
            f"{device} carries {state.volume_filesystem}, not XFS",
            fix="overlay2 here needs XFS with ftype=1: pick another --volume-name, or move its data and wipe it",
        )
    return actions


def _mount_actions(spec: PoolSpec, state: EngineState, device: str) -> list[Action]:
    data_root = spec.engine_options.data_root
    actions = []
    content = merged_fstab(state, device, data_root, force=spec.engine_options.force)
    if content is not None:
        why = "mounted at every boot, with project quotas"
        actions.append(Action("write", ActionKind.FSTAB, Target(path=data_root), why, path=FSTAB, content=content))
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
    argv = programs.mount_from_fstab(data_root)
    actions.append(Action("change", ActionKind.MOUNT, Target(path=data_root), f"mount {device} there", argv))
    return actions


def plan(spec: PoolSpec, target: PoolTarget, state: EngineState) -> EngineChanges:
    options = spec.engine_options
    names.check_volume(target.vg, target.pool, options.volume_name)
    warnings = docker.check_hosts(options)
    device = f"/dev/mapper/{commands.dm_name(target.vg, options.volume_name)}"
    if target.data_size < (options.volume_size or 0) <= (target.max_data_size or target.data_size):
        warnings.append(
            f"the volume ({format_size(options.volume_size or 0)}) is larger than the pool's data "
            f"({format_size(target.data_size)}): autoextend must keep up, or writes fail when the pool is full"
        )
    actions = _volume_actions(spec, target, state, device) + _mount_actions(spec, state, device)
    extra = docker.api_keys(options)
    if options.data_root != "/var/lib/docker":
        extra["data-root"] = options.data_root
    current = docker.current_settings(state, options.force)
    extra |= docker.classic_store_keys(current, state, options.force)
    cache, dns, cache_warnings = docker.dns_cache(options, state, current)
    warnings += cache_warnings
    content = docker.merged_daemon_json(current, "overlay2", [], extra | dns, force=options.force)
    engine = docker.tls_actions(options, state) + cache
    engine += docker.config_action(content, f"overlay2 on the XFS thin volume at {options.data_root}")
    why = f"docker starts once {options.data_root} is mounted, its XFS set to fail fast when the pool is full"
    unit = {"RequiresMountsFor": options.data_root}
    engine += docker.drop_in_action(state, options, unit, why, (xfs_errors_command(options.data_root),))
    changes = (*actions, *engine, *systemd.reload_action(state, engine))
    return EngineChanges(changes, tuple(warnings), systemd.restart_steps("docker", engine))
