"""``thinpool migrate``: a Docker devicemapper host moved to overlay2 on a thin volume of its pool.

The rules are in core.migrate; here each step reads the host, checks it may run, and runs. Every
step can run again: what is already done is seen and skipped.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from thinpool.app import backup as backups
from thinpool.app import pool as pools
from thinpool.app.context import Context
from thinpool.config import daemon_json
from thinpool.core import migrate
from thinpool.core.lvm import commands
from thinpool.core.migrate import Inventory, MigrateRefused
from thinpool.core.model import VolumeGroup
from thinpool.core.plan import render_text
from thinpool.core.programs import argv as programs
from thinpool.core.spec import PoolSpec
from thinpool.core.units import format_size
from thinpool.engines import docker
from thinpool.system import files, observe, observe_engine

SAVED_FILES = (docker.DAEMON_JSON, docker.DOCKER_DROP_IN, "/etc/fstab")  # put back by a rollback
ABSENT = ".absent"  # beside a saved file's name: the file did not exist before the switch
LVM_BEFORE = "lvm-before-switch.vgcfg"
SHAPE = "vg-after-switch.json"  # the VG's PVs and LVs as the switch left them (core.migrate.vg_shape)
DOCKER_UNITS = ("docker.socket", "docker.service")


@dataclass
class StepResult:
    step: str
    done: list[str] = field(default_factory=list)
    report: migrate.ImportReport | None = None

    @property
    def ok(self) -> bool:
        return self.report is None or self.report.ok

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"step": self.step, "ok": self.ok, "done": self.done}
        if self.report is not None:
            result["report"] = self.report.to_dict()
        return result


def state_folder(ctx: Context, spec: PoolSpec) -> Path:
    return observe.under(ctx.root, f"{migrate.STATE_ROOT}/{spec.vg}-{spec.pool}")


def running_driver(ctx: Context) -> str | None:
    """The running Docker's storage driver, None when Docker does not answer."""
    answer = ctx.runner.run(programs.docker_driver(), check=False, timeout=60)
    return answer.stdout.strip() or None if answer.returncode == 0 else None


def _json_lines(ctx: Context, argv: tuple[str, ...]) -> str:
    return ctx.runner.run(argv, timeout=300).stdout


# export -----------------------------------------------------------------------------------------


def _images(ctx: Context) -> tuple[migrate.Image, ...]:
    ids = tuple(dict.fromkeys(ctx.runner.run(programs.docker_image_ids()).stdout.split()))
    return migrate.parse_images(_json_lines(ctx, programs.docker_image_inspect(ids))) if ids else ()


def read_inventory(ctx: Context) -> Inventory:
    """Docker's images, local volumes and containers, as the running Docker reports them."""
    names = tuple(ctx.runner.run(programs.docker_volume_names()).stdout.split())
    volumes, others = (
        migrate.parse_volumes(_json_lines(ctx, programs.docker_volume_inspect(names))) if names else ((), ())
    )
    containers = migrate.parse_containers(_json_lines(ctx, programs.docker_containers()))
    return Inventory(_images(ctx), volumes, containers, others)


def _commit(ctx: Context, inventory: Inventory) -> tuple[Inventory, int]:
    """Each container's writable layer committed to an image, so that it comes over too; one an earlier export
    already committed (its image is there: an export run again after a kill) is not committed again."""
    tags = {tag for image in inventory.images for tag in image.tags}
    committed, made = [], 0
    for container in inventory.containers:
        image = container.committed_as or migrate.commit_name(container)
        if image not in tags:
            ctx.runner.run(programs.docker_commit(container.id, image), timeout=3600)
            made += 1
        committed.append(replace(container, committed_as=image))
    return replace(inventory, images=_images(ctx) if made else inventory.images, containers=tuple(committed)), made


def _measured(ctx: Context, inventory: Inventory) -> Inventory:
    volumes = []
    for volume in inventory.volumes:
        digest, size = files.tree_digest(observe.under(ctx.root, volume.mountpoint))
        volumes.append(replace(volume, digest=digest, size=size))
    return replace(inventory, volumes=tuple(volumes))


def _staged(staging: Path, name: str, argv_for: Any, ctx: Context) -> bool:
    """Run ``argv_for(partial)`` unless ``staging/name`` exists; the file appears whole or not at all."""
    target = staging / name
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    ctx.runner.run(argv_for(str(partial)), timeout=6 * 3600)
    os.replace(partial, target)
    return True


def export(ctx: Context, staging: Path, *, commit_containers: bool, data_root: str) -> StepResult:
    migrate.check_staging_place(str(staging), data_root)
    migrate.require_driver("export", running_driver(ctx))
    done = StepResult("export")
    inventory = read_inventory(ctx)
    if commit_containers and inventory.containers:
        inventory, made = _commit(ctx, inventory)
        if made:
            done.done.append(f"committed {made} containers' writable layers to images")
    inventory = _measured(ctx, inventory)
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not (staging / migrate.INVENTORY).exists():
        migrate.check_staging_room(str(staging), migrate.staging_needed(inventory), shutil.disk_usage(staging).free)
    for image in inventory.images:
        names = image.tags or (image.id,)
        if _staged(staging, image.archive, lambda out, n=names: programs.docker_save(out, n), ctx):
            done.done.append(f"saved image {image.id[:19]} ({', '.join(image.tags) or 'untagged'})")
    for volume in inventory.volumes:
        source = str(observe.under(ctx.root, volume.mountpoint))
        if _staged(staging, volume.archive, lambda out, s=source: programs.tar_create(out, s), ctx):
            done.done.append(f"copied volume {volume.name}")
    text = json.dumps(inventory.to_dict(), indent=1) + "\n"
    files.write_atomically(staging / migrate.INVENTORY, text, keep_owner=False, mode=0o600)
    done.done.append(f"inventory: {len(inventory.images)} images, {len(inventory.volumes)} volumes, "
                     f"{len(inventory.containers)} containers ({staging / migrate.INVENTORY})")  # fmt: skip
    return done


# switch -----------------------------------------------------------------------------------------


def _save_files(ctx: Context, folder: Path) -> None:
    """Docker's files as they were before the switch, once (a re-run keeps the first copies)."""
    kept = folder / "files"
    if kept.exists():
        return
    partial = folder / "files.partial"
    shutil.rmtree(partial, ignore_errors=True)
    for path in SAVED_FILES:
        source = observe.under(ctx.root, path)
        target = partial / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.exists():
            shutil.copy2(source, target)
        else:
            target.with_name(target.name + ABSENT).touch()
    os.replace(partial, kept)


def _docker_records(ctx: Context, data_root: str) -> dict[int, migrate.DockerDevice]:
    for where in (data_root + migrate.ASIDE_SUFFIX, data_root):
        folder = observe.under(ctx.root, f"{where}/{migrate.DOCKER_METADATA}")
        if folder.is_dir():
            return migrate.parse_docker_devices({p.name: p.read_text() for p in folder.iterdir() if p.is_file()})
    return {}


def _device_lvs(group: VolumeGroup, pool: str) -> list[str]:
    return [lv.bare_name for lv in group.lvs if migrate.DEVICE_TAG in lv.tags and lv.pool_lv == pool]


def _record_devices(ctx: Context, spec: PoolSpec, folder: Path) -> str | None:
    """lvm told about Docker's thin devices (core.migrate.with_docker_devices); None when it knows them."""
    group, lv = backups.pool_lv(ctx, spec.vg, spec.pool)
    if _device_lvs(group, spec.pool):
        return None
    taken = backups.take(ctx, spec.vg, spec.pool)  # the kernel's devices and transaction id; and a safety net
    devices = migrate.kept_devices(taken.devices, _docker_records(ctx, spec.engine_options.data_root))
    before = folder / LVM_BEFORE
    if not before.exists():
        ctx.runner.run(commands.vgcfgbackup(spec.vg, str(before)))
    edited = folder / "lvm-switched.vgcfg.partial"
    edited.write_text(migrate.with_docker_devices(
        before.read_text(), spec.pool, lvm_transaction_id=lv.transaction_id or 0,
        kernel_transaction_id=taken.transaction_id, devices=devices, extent_size=group.extent_size,
        vg_uuid=group.uuid, created=int(ctx.clock())))  # fmt: skip
    ctx.runner.run(commands.lvchange_activate(spec.vg, spec.pool, False))  # never two pool targets on one metadata
    ctx.runner.run(commands.vgcfgrestore(spec.vg, str(edited)))
    edited.unlink()
    return (f"recorded Docker's {len(devices)} thin devices in lvm (LVs tagged {migrate.DEVICE_TAG}) and set "
            f"lvm's transaction id to the kernel's, {taken.transaction_id} (metadata backup {taken.stem})")  # fmt: skip


def _strip_daemon_json(ctx: Context) -> bool:
    settings = _daemon_settings(ctx)
    if not migrate.uses_devicemapper(settings):
        return False
    path = observe.under(ctx.root, docker.DAEMON_JSON)
    files.write_atomically(path, daemon_json.dumps(migrate.without_devicemapper(settings)))
    return True


def _move_data_root(ctx: Context, data_root: str) -> bool:
    current = observe.under(ctx.root, data_root)
    aside = observe.under(ctx.root, data_root + migrate.ASIDE_SUFFIX)
    if aside.exists() or not current.exists():
        return False
    if observe.mounted_source(data_root, ctx.root):
        raise MigrateRefused(f"{data_root} is a mount point; moving it aside would move nothing",
                             fix="unmount it (Docker stopped), then run --step switch again")  # fmt: skip
    os.rename(current, aside)
    return True


def overlay_spec(ctx: Context, spec: PoolSpec) -> PoolSpec:
    """The docker-overlay2-thin spec on this pool: its VG's disks unless others were named."""
    devices = spec.devices
    if not devices:
        group = observe.read_lvm(ctx.runner).vgs.get(spec.vg)
        if group is None:
            raise MigrateRefused(f"there is no volume group {spec.vg}", fix="name the pool with --vg and --pool")
        devices = group.pv_names
    return replace(spec, engine=migrate.TARGET, devices=devices)


def _daemon_settings(ctx: Context) -> dict[str, Any]:
    """daemon.json's settings ({} when it is missing), read by the engines' own parser; a broken file is refused."""
    return docker.current_settings(observe_engine.engine_files(ctx.root), force=False)


def switch(ctx: Context, spec: PoolSpec) -> StepResult:
    migrate.require_driver("switch", running_driver(ctx))
    thinpooldev = daemon_json.DaemonJson(_daemon_settings(ctx)).thinpooldev
    migrate.check_dockers_pool(thinpooldev, "/dev/mapper/" + commands.dm_name(spec.vg, spec.pool))
    done = StepResult("switch")
    folder = state_folder(ctx, spec)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _save_files(ctx, folder)
    recorded = _record_devices(ctx, spec, folder)
    if recorded:
        done.done.append(recorded)
    if _strip_daemon_json(ctx):
        done.done.append(f"removed devicemapper's settings from {docker.DAEMON_JSON} (the rest kept)")
    data_root = spec.engine_options.data_root
    if _move_data_root(ctx, data_root):
        done.done.append(f"moved {data_root} aside to {data_root}{migrate.ASIDE_SUFFIX}")
    plan = pools.plan(ctx, overlay_spec(ctx, spec))
    result = pools.run(ctx, plan)
    if not result.ok:
        raise MigrateRefused(f"the docker-overlay2-thin apply stopped:\n{render_text(plan)}",
                             fix="fix what the failed step says, then run --step switch again")  # fmt: skip
    done.done.append(f"docker-overlay2-thin applied ({len(plan.actions)} changes)")
    group, _ = backups.pool_lv(ctx, spec.vg, spec.pool)
    shape = json.dumps(migrate.vg_shape(group, spec.engine_options.volume_name), indent=1) + "\n"
    files.write_atomically(folder / SHAPE, shape, keep_owner=False, mode=0o600)
    return done


def _shape_at_switch(folder: Path) -> tuple[str, ...] | None:
    try:
        return tuple(json.loads((folder / SHAPE).read_text()))
    except FileNotFoundError:
        return None


# import -----------------------------------------------------------------------------------------


def read_staged(staging: Path) -> Inventory:
    path = staging / migrate.INVENTORY
    if not path.exists():
        raise MigrateRefused(f"{path} does not exist", fix="run --step export (with this --staging) first")
    try:
        return Inventory.from_dict(json.loads(path.read_text()))
    except ValueError as error:
        raise MigrateRefused(f"{path} is not JSON ({error})", fix="run --step export again") from error


def _volume_mountpoint(ctx: Context, name: str) -> Path:
    ctx.runner.run(programs.docker_volume_create(name))
    volumes, _ = migrate.parse_volumes(_json_lines(ctx, programs.docker_volume_inspect((name,))))
    return observe.under(ctx.root, volumes[0].mountpoint)


def import_(ctx: Context, staging: Path) -> StepResult:
    migrate.require_driver("import", running_driver(ctx))
    inventory = read_staged(staging)
    done = StepResult("import")
    present = {image.id: set(image.tags) for image in _images(ctx)}
    for image in inventory.images:
        if image.id not in present:
            ctx.runner.run(programs.docker_load(str(staging / image.archive)), timeout=6 * 3600)
            done.done.append(f"loaded image {image.id[:19]}")
        for tag in image.tags:
            if tag not in present.get(image.id, set()):
                ctx.runner.run(programs.docker_tag(image.id, tag))
    digests = {}
    for volume in inventory.volumes:
        where = _volume_mountpoint(ctx, volume.name)
        digests[volume.name] = files.tree_digest(where)[0]
        if digests[volume.name] != volume.digest:
            ctx.runner.run(programs.tar_extract(str(staging / volume.archive), str(where)), timeout=6 * 3600)
            done.done.append(f"restored volume {volume.name}")
            digests[volume.name] = files.tree_digest(where)[0]
    done.report = migrate.compare(inventory, _images(ctx), digests)
    if done.report.ok:
        text = json.dumps(done.report.to_dict(), indent=1) + "\n"
        files.write_atomically(staging / migrate.IMPORTED, text, keep_owner=False, mode=0o600)
    return done


# finish and rollback -------------------------------------------------------------------------


def finish(ctx: Context, spec: PoolSpec, staging: Path) -> StepResult:
    migrate.require_driver("finish", running_driver(ctx))
    folder = state_folder(ctx, spec)
    done = StepResult("finish")
    if folder.exists() and not (staging / migrate.IMPORTED).exists():
        raise MigrateRefused(
            f"the import into overlay2 has not been verified ({staging / migrate.IMPORTED} is missing)",
            fix="run --step import (Docker on overlay2) until it reports everything came over",
        )
    group, _ = backups.pool_lv(ctx, spec.vg, spec.pool)
    for name in _device_lvs(group, spec.pool):
        ctx.runner.run(commands.lvremove(spec.vg, name), timeout=600)
        done.done.append(f"removed Docker's old thin device {spec.vg}/{name}")
    aside = observe.under(ctx.root, spec.engine_options.data_root + migrate.ASIDE_SUFFIX)
    if aside.exists():
        shutil.rmtree(aside)
        done.done.append(f"removed {spec.engine_options.data_root}{migrate.ASIDE_SUFFIX}")
    for name in ("images", "volumes", migrate.INVENTORY, migrate.IMPORTED):
        path = staging / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if folder.exists():
        shutil.rmtree(folder)
        done.done.append(f"removed the staging's archives and {folder}")
    return done


def _restore_files(ctx: Context, folder: Path) -> None:
    for path in SAVED_FILES:
        saved = folder / "files" / path.lstrip("/")
        target = observe.under(ctx.root, path)
        if saved.exists():
            files.write_atomically(target, saved.read_text())
        elif saved.with_name(saved.name + ABSENT).exists():
            target.unlink(missing_ok=True)


def rollback(ctx: Context, spec: PoolSpec) -> StepResult:
    migrate.require_driver("rollback", running_driver(ctx))
    folder = state_folder(ctx, spec)
    before = folder / LVM_BEFORE
    data_root = spec.engine_options.data_root
    aside = observe.under(ctx.root, data_root + migrate.ASIDE_SUFFIX)
    if not before.exists() or not aside.exists():
        raise MigrateRefused("there is no switch to roll back (it never ran, or --finish removed the old data)",
                             fix="nothing to do: Docker's data is where it is")  # fmt: skip
    done = StepResult("rollback")
    if observe.mounted_source(data_root, ctx.root):
        ctx.runner.run(programs.umount(data_root))
        done.done.append(f"unmounted {data_root}")
    group, _ = backups.pool_lv(ctx, spec.vg, spec.pool)
    volume = spec.engine_options.volume_name
    migrate.check_vg_unchanged(_shape_at_switch(folder), migrate.vg_shape(group, volume))
    if any(lv.bare_name == volume and lv.pool_lv == spec.pool for lv in group.lvs):
        ctx.runner.run(commands.lvremove(spec.vg, volume), timeout=600)  # its device leaves the kernel too
        done.done.append(f"removed {spec.vg}/{volume}")
    if _device_lvs(group, spec.pool):
        ctx.runner.run(commands.lvchange_activate(spec.vg, spec.pool, False))
        ctx.runner.run(commands.vgcfgrestore(spec.vg, str(before)))
        done.done.append("put back lvm's metadata from before the switch (Docker's devices unknown to lvm again)")
    ctx.runner.run(commands.lvchange_activate(spec.vg, spec.pool, True))  # Docker's devicemapper opens it as it is
    _restore_files(ctx, folder)
    done.done.append("put back " + ", ".join(SAVED_FILES))
    current = observe.under(ctx.root, data_root)
    if current.exists():
        current.rmdir()  # the empty mount point; anything in it is refused by rmdir, never deleted
    os.rename(aside, current)
    shutil.rmtree(folder)
    done.done.append(f"moved {data_root}{migrate.ASIDE_SUFFIX} back to {data_root}: start Docker (devicemapper)")
    return done


# every step in one run ----------------------------------------------------------------------------


def run_all(ctx: Context, spec: PoolSpec, staging: Path, *, commit_containers: bool) -> list[StepResult]:
    """export, stop Docker, switch, start Docker, import; --finish stays the operator's decision."""
    if not observe.systemd_running(ctx.root):
        raise MigrateRefused(
            "systemd does not run here, so thinpool cannot stop and start Docker between the steps",
            fix=f"run the steps yourself: thinpool migrate --to {migrate.TARGET} --step export --staging "
            f"{staging} --yes; stop Docker; ... --step switch --yes; start Docker; ... --step import --staging "
            f"{staging} --yes",
        )
    results = [export(ctx, staging, commit_containers=commit_containers, data_root=spec.engine_options.data_root)]
    ctx.runner.run(programs.systemctl_stop(DOCKER_UNITS), timeout=600)
    results.append(switch(ctx, spec))
    ctx.runner.run(programs.systemctl_start(DOCKER_UNITS), timeout=600)
    results.append(import_(ctx, staging))
    return results


# what a step would do, read from the host and changing nothing -------------------------------------


def _preview_export(ctx: Context, staging: Path, commit_containers: bool, data_root: str) -> list[str]:
    migrate.check_staging_place(str(staging), data_root)
    migrate.require_driver("export", running_driver(ctx))
    inventory = _measured(ctx, read_inventory(ctx))
    needed = migrate.staging_needed(inventory)
    free = shutil.disk_usage(_existing_parent(staging)).free
    lines = [
        f"save {len(inventory.images)} images ({format_size(inventory.image_bytes)}) and copy "
        f"{len(inventory.volumes)} volumes ({format_size(inventory.volume_bytes)}) into {staging}",
        f"the staging needs {format_size(needed)}; {format_size(free)} is free there",
    ]
    lines += [f"volume {name}: not on the local driver, not copied" for name in inventory.skipped_volumes]
    fate = "committed to an image first" if commit_containers else "LOST (pass --commit-containers to keep them)"
    lines += [f"container {c.name} ({c.state}): its writable layer is {fate}" for c in inventory.containers]
    migrate.check_staging_room(str(staging), needed, free)
    return lines


def _existing_parent(path: Path) -> Path:
    return next(folder for folder in (path, *path.parents) if folder.exists())


def _preview_switch(ctx: Context, spec: PoolSpec) -> list[str]:
    migrate.require_driver("switch", running_driver(ctx))
    data_root = spec.engine_options.data_root
    records = _docker_records(ctx, data_root)
    return [
        f"back up {spec.vg}/{spec.pool}'s metadata, then record Docker's thin devices in lvm "
        f"({len(records)} in Docker's records; the kernel's list decides) as LVs tagged {migrate.DEVICE_TAG}",
        f"remove storage-driver and dm.* options from {docker.DAEMON_JSON}; keep every other key",
        f"move {data_root} to {data_root}{migrate.ASIDE_SUFFIX} (kept until --finish)",
        f"apply --engine {migrate.TARGET} on {spec.vg}/{spec.pool}: an XFS thin volume mounted on {data_root}",
    ]


def _preview_finish(ctx: Context, spec: PoolSpec, staging: Path) -> list[str]:
    migrate.require_driver("finish", running_driver(ctx))
    group, _ = backups.pool_lv(ctx, spec.vg, spec.pool)
    names = _device_lvs(group, spec.pool)
    return [
        f"remove Docker's {len(names)} old thin devices: " + (", ".join(names) or "none left"),
        f"remove {spec.engine_options.data_root}{migrate.ASIDE_SUFFIX}, and the archives in {staging}",
    ]


def _preview_import(ctx: Context, staging: Path) -> list[str]:
    migrate.require_driver("import", running_driver(ctx))
    inventory = read_staged(staging)
    return [f"load {len(inventory.images)} images and restore {len(inventory.volumes)} volumes from {staging}, "
            "then check their IDs, tags and checksums against the inventory"]  # fmt: skip


def _preview_rollback(ctx: Context, spec: PoolSpec) -> list[str]:
    migrate.require_driver("rollback", running_driver(ctx))
    options = spec.engine_options
    return [f"remove {spec.vg}/{options.volume_name}; put back lvm's metadata, {', '.join(SAVED_FILES)}",
            f"move {options.data_root}{migrate.ASIDE_SUFFIX} back to {options.data_root}"]  # fmt: skip


def _preview_all(spec: PoolSpec) -> list[str]:
    return ["export (Docker on devicemapper)", "systemctl stop docker",
            f"switch: record Docker's devices in lvm, strip devicemapper's settings, move "
            f"{spec.engine_options.data_root} aside, apply --engine {migrate.TARGET}",
            "systemctl start docker", "import, then check (run --finish yourself once satisfied)"]  # fmt: skip


def run(ctx: Context, step: str, spec: PoolSpec, staging: Path, *, commit_containers: bool) -> list[StepResult]:
    """Run ``step`` ("all": export, switch and import with systemctl between them)."""
    migrate.check_data_root(_daemon_settings(ctx).get("data-root"), spec.engine_options.data_root)
    data_root = spec.engine_options.data_root
    runs = {
        "all": lambda: run_all(ctx, spec, staging, commit_containers=commit_containers),
        "export": lambda: [export(ctx, staging, commit_containers=commit_containers, data_root=data_root)],
        "switch": lambda: [switch(ctx, spec)],
        "import": lambda: [import_(ctx, staging)],
        "finish": lambda: [finish(ctx, spec, staging)],
        "rollback": lambda: [rollback(ctx, spec)],
    }
    return runs[step]()


def preview(ctx: Context, step: str, spec: PoolSpec, staging: Path, *, commit_containers: bool) -> list[str]:
    """What ``step`` would do on this host; refusals come now, before anything is asked."""
    migrate.check_data_root(_daemon_settings(ctx).get("data-root"), spec.engine_options.data_root)
    previews = {
        "export": lambda: _preview_export(ctx, staging, commit_containers, spec.engine_options.data_root),
        "switch": lambda: _preview_switch(ctx, spec),
        "import": lambda: _preview_import(ctx, staging),
        "finish": lambda: _preview_finish(ctx, spec, staging),
        "rollback": lambda: _preview_rollback(ctx, spec),
    }
    return previews.get(step, lambda: _preview_all(spec))()
