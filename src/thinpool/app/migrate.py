"""``thinpool migrate``: a Docker devicemapper host moved to overlay2 on a thin volume of its pool.

Each step is planned before it runs: ``plan`` reads the host, refuses what may not run, and returns the
step's operations (``core.migrate.Operation``) with notes. The preview prints that plan; ``run`` executes
exactly its operations and reports them, so the two cannot differ. Every step can run again: what is
already done is not planned again. The rules are in core.migrate.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from thinpool.app import backup as backups
from thinpool.app import pool as pools
from thinpool.app.context import Context
from thinpool.config import daemon_json
from thinpool.core import migrate
from thinpool.core.lvm import commands
from thinpool.core.migrate import Inventory, MigrateRefused, Operation, OpKind, Step
from thinpool.core.model import VolumeGroup
from thinpool.core.plan import render_text
from thinpool.core.programs import argv as programs
from thinpool.core.spec import PoolSpec
from thinpool.core.units import format_size
from thinpool.engines import docker, docker_overlay2
from thinpool.system import files, observe, observe_engine

SAVED_FILES = (docker.DAEMON_JSON, docker.DOCKER_DROP_IN, "/etc/fstab")  # put back by a rollback
ABSENT = ".absent"  # beside a saved file's name: the file did not exist before the switch
LVM_BEFORE = "lvm-before-switch.vgcfg"
SHAPE = "vg-after-switch.json"  # the VG's PVs and LVs as the switch left them (core.migrate.vg_shape)
DOCKER_UNITS = ("docker.socket", "docker.service")
STAGED_NAMES = ("images", "volumes", migrate.INVENTORY, migrate.IMPORTED)  # what --finish removes from the staging


@dataclass(frozen=True)
class Where:
    """The places one migrate run works in, and how it treats containers."""

    spec: PoolSpec
    staging: Path
    commit_containers: bool = False

    @property
    def data_root(self) -> str:
        return self.spec.engine_options.data_root


@dataclass(frozen=True)
class StepPlan:
    """One step's operations, in order, and what the operator should know before it runs."""

    step: Step
    where: Where
    operations: tuple[Operation, ...] = ()
    notes: tuple[str, ...] = ()
    inventory: Inventory | None = None  # export: what goes into the staging; import: what came out of it

    def to_dict(self) -> dict[str, Any]:
        operations = [operation.to_dict() for operation in self.operations]
        return {"step": str(self.step), "operations": operations, "notes": list(self.notes)}


@dataclass
class StepResult:
    """What a step did: the operations of its plan that ran, and the import's check."""

    step: str
    ran: list[Operation] = field(default_factory=list)
    report: migrate.ImportReport | None = None

    @property
    def done(self) -> list[str]:
        return [operation.text for operation in self.ran]

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


def _images(ctx: Context) -> tuple[migrate.Image, ...]:
    ids = tuple(dict.fromkeys(ctx.runner.run(programs.docker_image_ids()).stdout.split()))
    return migrate.parse_images(_json_lines(ctx, programs.docker_image_inspect(ids))) if ids else ()


def read_inventory(ctx: Context) -> Inventory:
    """Docker's images, local volumes and containers, as the running Docker reports them."""
    names = tuple(ctx.runner.run(programs.docker_volume_names()).stdout.split())
    inspected = _json_lines(ctx, programs.docker_volume_inspect(names)) if names else ""
    volumes, others = migrate.parse_volumes(inspected) if names else ((), ())
    containers = migrate.parse_containers(_json_lines(ctx, programs.docker_containers()))
    return Inventory(_images(ctx), volumes, containers, others)


def _measured(ctx: Context, inventory: Inventory) -> Inventory:
    volumes = []
    for volume in inventory.volumes:
        digest, size = files.tree_digest(observe.under(ctx.root, volume.mountpoint))
        volumes.append(replace(volume, digest=digest, size=size))
    return replace(inventory, volumes=tuple(volumes))


def _existing_parent(path: Path) -> Path:
    return next(folder for folder in (path, *path.parents) if folder.exists())


# export -----------------------------------------------------------------------------------------


def _commits(inventory: Inventory) -> tuple[Inventory, list[Operation]]:
    """Each container as committed to an image, and the commits still to make: one an earlier export already
    made (its image is there: an export run again after a kill) is not made again."""
    tags = {tag for image in inventory.images for tag in image.tags}
    containers, operations = [], []
    for container in inventory.containers:
        image = container.committed_as or migrate.commit_name(container)
        if image not in tags:
            text = f"commit container {container.name}'s writable layer to the image {image}"
            operations.append(Operation(OpKind.COMMIT_CONTAINER, text, image, (container.id,)))
            operations.append(Operation(OpKind.SAVE_COMMITTED_IMAGE, f"save image {image}", image))
        containers.append(replace(container, committed_as=image))
    return replace(inventory, containers=tuple(containers)), operations


def _staging_operations(inventory: Inventory, staging: Path) -> list[Operation]:
    """Saving each image and copying each volume that the staging does not hold yet."""
    operations = []
    for image in inventory.images:
        if not (staging / image.archive).exists():
            text = f"save image {image.id[:19]} ({', '.join(image.tags) or 'untagged'})"
            operations.append(Operation(OpKind.SAVE_IMAGE, text, image.id, image.tags or (image.id,)))
    for volume in inventory.volumes:
        if not (staging / volume.archive).exists():
            operations.append(Operation(OpKind.COPY_VOLUME, f"copy volume {volume.name}", volume.name))
    return operations


def _export_notes(inventory: Inventory, staging: Path, commit_containers: bool, free: int) -> list[str]:
    notes = [
        f"save {len(inventory.images)} images ({format_size(inventory.image_bytes)}) and copy "
        f"{len(inventory.volumes)} volumes ({format_size(inventory.volume_bytes)}) into {staging}",
        f"the staging needs {format_size(migrate.staging_needed(inventory))}; {format_size(free)} is free there",
    ]
    notes += [f"volume {name}: not on the local driver, not copied" for name in inventory.skipped_volumes]
    fate = "committed to an image first" if commit_containers else "LOST (pass --commit-containers to keep them)"
    return notes + [f"container {c.name} ({c.state}): its writable layer is {fate}" for c in inventory.containers]


def plan_export(ctx: Context, where: Where) -> StepPlan:
    staging = where.staging
    migrate.check_staging_place(str(staging), where.data_root)
    migrate.require_driver("export", running_driver(ctx))
    inventory = _measured(ctx, read_inventory(ctx))
    commits: list[Operation] = []
    if where.commit_containers:
        inventory, commits = _commits(inventory)
    free = shutil.disk_usage(_existing_parent(staging)).free
    if not (staging / migrate.INVENTORY).exists():
        migrate.check_staging_room(str(staging), migrate.staging_needed(inventory), free)
    images = len(inventory.images) + sum(op.kind == OpKind.COMMIT_CONTAINER for op in commits)
    listed = (
        f"write the inventory: {images} images, {len(inventory.volumes)} volumes, "
        f"{len(inventory.containers)} containers ({staging / migrate.INVENTORY})"
    )
    operations = (*commits, *_staging_operations(inventory, staging), Operation(OpKind.WRITE_INVENTORY, listed))
    notes = _export_notes(inventory, staging, where.commit_containers, free)
    return StepPlan(Step.EXPORT, where, operations, tuple(notes), inventory)


def _staged(staging: Path, name: str, argv_for: Callable[[str], tuple[str, ...]], ctx: Context) -> None:
    """Run ``argv_for(partial)`` into ``staging/name``; the file appears whole or not at all."""
    target = staging / name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    ctx.runner.run(argv_for(str(partial)), timeout=6 * 3600)
    files.replace_synced(partial, target)


def _commit_container(ctx: Context, _plan: StepPlan, operation: Operation) -> None:
    ctx.runner.run(programs.docker_commit(operation.names[0], operation.subject), timeout=3600)


def _save_image(ctx: Context, plan: StepPlan, operation: Operation) -> None:
    archive = migrate.Image(operation.subject, operation.names, 0).archive
    _staged(plan.where.staging, archive, lambda out: programs.docker_save(out, operation.names), ctx)


def _save_committed_image(ctx: Context, plan: StepPlan, operation: Operation) -> None:
    image = next((image for image in _images(ctx) if operation.subject in image.tags), None)
    if image is None:
        raise MigrateRefused(
            f"the image {operation.subject} that was just committed is not there", fix="run --step export again"
        )
    _staged(plan.where.staging, image.archive, lambda out: programs.docker_save(out, (operation.subject,)), ctx)


def _copy_volume(ctx: Context, plan: StepPlan, operation: Operation) -> None:
    assert plan.inventory is not None
    volume = next(volume for volume in plan.inventory.volumes if volume.name == operation.subject)
    source = str(observe.under(ctx.root, volume.mountpoint))
    _staged(plan.where.staging, volume.archive, lambda out: programs.tar_create(out, source), ctx)


def _write_inventory(ctx: Context, plan: StepPlan, _operation: Operation) -> None:
    assert plan.inventory is not None
    inventory = plan.inventory
    if any(operation.kind == OpKind.COMMIT_CONTAINER for operation in plan.operations):
        inventory = replace(inventory, images=_images(ctx))  # with the images the commits made
    text = json.dumps(inventory.to_dict(), indent=1) + "\n"
    files.write_atomically(plan.where.staging / migrate.INVENTORY, text, keep_owner=False, mode=0o600)


# switch -----------------------------------------------------------------------------------------


def _docker_records(ctx: Context, data_root: str) -> dict[int, migrate.DockerDevice]:
    for where in (data_root + migrate.ASIDE_SUFFIX, data_root):
        folder = observe.under(ctx.root, f"{where}/{migrate.DOCKER_METADATA}")
        if folder.is_dir():
            return migrate.parse_docker_devices({p.name: p.read_text() for p in folder.iterdir() if p.is_file()})
    return {}


def _device_lvs(group: VolumeGroup, pool: str) -> list[str]:
    return [lv.bare_name for lv in group.lvs if migrate.DEVICE_TAG in lv.tags and lv.pool_lv == pool]


def _daemon_settings(ctx: Context) -> dict[str, Any]:
    """daemon.json's settings ({} when it is missing), read by the engines' own parser; a broken file is refused."""
    return docker.current_settings(observe_engine.engine_files(ctx.root), force=False)


def overlay_spec(ctx: Context, spec: PoolSpec) -> PoolSpec:
    """The docker-overlay2-thin spec on this pool: its VG's disks unless others were named."""
    devices = spec.devices
    if not devices:
        group = observe.read_lvm(ctx.runner).vgs.get(spec.vg)
        if group is None:
            raise MigrateRefused(f"there is no volume group {spec.vg}", fix="name the pool with --vg and --pool")
        devices = group.pv_names
    return replace(spec, engine=migrate.TARGET, devices=devices)


def _switch_operations(ctx: Context, where: Where, folder: Path) -> list[Operation]:
    spec, data_root = where.spec, where.data_root
    operations = []
    if not (folder / "files").exists():
        text = f"keep a copy of {', '.join(SAVED_FILES)} in {folder / 'files'} (a rollback puts them back)"
        operations.append(Operation(OpKind.KEEP_FILES, text))
    group, _ = backups.pool_lv(ctx, spec.vg, spec.pool)
    if not _device_lvs(group, spec.pool):
        records = len(_docker_records(ctx, data_root))
        text = (
            f"back up {spec.vg}/{spec.pool}'s metadata, then record Docker's thin devices in lvm ({records} in "
            f"Docker's records; the kernel's list decides) as LVs tagged {migrate.DEVICE_TAG}, with the "
            "kernel's transaction id"
        )
        operations.append(Operation(OpKind.RECORD_DEVICES, text))
    if migrate.uses_devicemapper(_daemon_settings(ctx)):
        text = f"remove storage-driver and dm.* options from {docker.DAEMON_JSON}; keep every other key"
        operations.append(Operation(OpKind.STRIP_DAEMON_JSON, text, docker.DAEMON_JSON))
    aside = data_root + migrate.ASIDE_SUFFIX
    if not observe.under(ctx.root, aside).exists() and observe.under(ctx.root, data_root).exists():
        if observe.mounted_source(data_root, ctx.root):
            raise MigrateRefused(
                f"{data_root} is a mount point; moving it aside would move nothing",
                fix="unmount it (Docker stopped), then run --step switch again",
            )
        text = f"move {data_root} to {aside} (kept until --finish)"
        operations.append(Operation(OpKind.MOVE_DATA_ROOT, text, data_root))
    return operations


def plan_switch(ctx: Context, where: Where) -> StepPlan:
    spec = where.spec
    migrate.require_driver("switch", running_driver(ctx))
    thinpooldev = daemon_json.DaemonJson(_daemon_settings(ctx)).thinpooldev
    migrate.check_dockers_pool(thinpooldev, "/dev/mapper/" + commands.dm_name(spec.vg, spec.pool))
    folder = state_folder(ctx, spec)
    applied = (
        f"apply --engine {migrate.TARGET} on {spec.vg}/{spec.pool}: an XFS thin volume mounted on {where.data_root}"
    )
    shape = f"record the volume group's shape in {folder / SHAPE} (a rollback checks it)"
    operations = (
        *_hold_docker_operations(ctx),
        *_switch_operations(ctx, where, folder),
        Operation(OpKind.APPLY_ENGINE, applied),
        Operation(OpKind.RECORD_SHAPE, shape),
        _release_docker_operation(),
    )
    return StepPlan(Step.SWITCH, where, operations)


def _hold_path(ctx: Context) -> Path:
    return observe.under(ctx.root, migrate.HOLD_DROP_IN)


def _hold_docker_operations(ctx: Context) -> list[Operation]:
    """Docker held back for the switch's whole run, unless a run that was cut off already holds it."""
    if _hold_path(ctx).exists():
        return []
    why = "after a crash or a power cut mid-switch, Docker must not start on a data root moved aside or half-made"
    return [Operation(OpKind.HOLD_DOCKER, f"hold docker.service back ({migrate.HOLD_DROP_IN}): {why}")]


def _release_docker_operation() -> Operation:
    return Operation(OpKind.RELEASE_DOCKER, f"let docker.service start again (remove {migrate.HOLD_DROP_IN})")


def _systemd_reads_its_units(ctx: Context) -> None:
    if observe.systemd_running(ctx.root):
        ctx.runner.run(programs.systemctl_daemon_reload())


def _hold_docker(ctx: Context, _plan: StepPlan, _operation: Operation) -> None:
    files.write_atomically(_hold_path(ctx), migrate.hold_drop_in(), keep_owner=False, mode=0o644)
    _systemd_reads_its_units(ctx)


def _release_docker(ctx: Context, _plan: StepPlan, _operation: Operation) -> None:
    path = _hold_path(ctx)
    if path.exists() or path.is_symlink():
        path.unlink()
        files.sync_folder(path.parent)
    _systemd_reads_its_units(ctx)


def _keep_files(ctx: Context, plan: StepPlan, _operation: Operation) -> None:
    """Docker's files as they were before the switch, once (a re-run keeps the first copies)."""
    folder = state_folder(ctx, plan.where.spec)
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
    files.sync_tree(partial)
    files.replace_synced(partial, folder / "files")


def _record_devices(ctx: Context, plan: StepPlan, _operation: Operation) -> None:
    """lvm told about Docker's thin devices (core.migrate.with_docker_devices)."""
    spec = plan.where.spec
    folder = state_folder(ctx, spec)
    group, lv = backups.pool_lv(ctx, spec.vg, spec.pool)
    taken = backups.take(ctx, spec.vg, spec.pool)  # the kernel's devices and transaction id; and a safety net
    devices = migrate.kept_devices(taken.devices, _docker_records(ctx, plan.where.data_root))
    before = folder / LVM_BEFORE
    if not before.exists():  # whole or absent after a power cut: a rollback and a re-run read it
        partial = before.with_name(before.name + ".partial")
        ctx.runner.run(commands.vgcfgbackup(spec.vg, str(partial)))
        files.replace_synced(partial, before)
    edited = folder / "lvm-switched.vgcfg.partial"
    edited.write_text(
        migrate.with_docker_devices(
            before.read_text(),
            spec.pool,
            lvm_transaction_id=lv.transaction_id or 0,
            kernel_transaction_id=taken.transaction_id,
            devices=devices,
            extent_size=group.extent_size,
            vg_uuid=group.uuid,
            created=int(ctx.clock()),
        )
    )
    ctx.runner.run(commands.lvchange_activate(spec.vg, spec.pool, False))  # never two pool targets on one metadata
    ctx.runner.run(commands.vgcfgrestore(spec.vg, str(edited)))
    edited.unlink()


def _strip_daemon_json(ctx: Context, _plan: StepPlan, _operation: Operation) -> None:
    path = observe.under(ctx.root, docker.DAEMON_JSON)
    state = observe_engine.engine_files(ctx.root)
    stripped = migrate.without_devicemapper(docker.current_settings(state, force=False))
    files.write_atomically(path, daemon_json.dumps(stripped, docker.daemon_newline(state)))


def _move_data_root(ctx: Context, plan: StepPlan, _operation: Operation) -> None:
    data_root = plan.where.data_root
    files.rename_synced(observe.under(ctx.root, data_root), observe.under(ctx.root, data_root + migrate.ASIDE_SUFFIX))


def _apply_engine(ctx: Context, plan: StepPlan, _operation: Operation) -> None:
    applied = pools.plan(ctx, overlay_spec(ctx, plan.where.spec))
    if not pools.run(ctx, applied).ok:
        raise MigrateRefused(
            f"the docker-overlay2-thin apply stopped:\n{render_text(applied)}",
            fix="fix what the failed step says, then run --step switch again",
        )


def _record_shape(ctx: Context, plan: StepPlan, _operation: Operation) -> None:
    spec = plan.where.spec
    group, _ = backups.pool_lv(ctx, spec.vg, spec.pool)
    shape = json.dumps(migrate.vg_shape(group, docker_overlay2.store(spec).volume), indent=1) + "\n"
    files.write_atomically(state_folder(ctx, spec) / SHAPE, shape, keep_owner=False, mode=0o600)


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


def _volume_digest(ctx: Context, name: str) -> str | None:
    """The checksum of the named volume's tree, None when Docker has no such volume."""
    found = ctx.runner.run(programs.docker_volume_inspect((name,)), check=False, timeout=300)
    volumes, _ = migrate.parse_volumes(found.stdout) if found.returncode == 0 else ((), ())
    return files.tree_digest(observe.under(ctx.root, volumes[0].mountpoint))[0] if volumes else None


def plan_import(ctx: Context, where: Where) -> StepPlan:
    migrate.require_driver("import", running_driver(ctx))
    inventory = read_staged(where.staging)
    present = {image.id: set(image.tags) for image in _images(ctx)}
    operations = []
    for image in inventory.images:
        if image.id not in present:
            text = f"load image {image.id[:19]} from {where.staging / image.archive}"
            operations.append(Operation(OpKind.LOAD_IMAGE, text, image.id))
        for tag in image.tags:
            if tag not in present.get(image.id, set()):
                operations.append(Operation(OpKind.TAG_IMAGE, f"tag image {image.id[:19]} as {tag}", image.id, (tag,)))
    for volume in inventory.volumes:
        if _volume_digest(ctx, volume.name) != volume.digest:
            text = f"restore volume {volume.name} from {where.staging / volume.archive}"
            operations.append(Operation(OpKind.RESTORE_VOLUME, text, volume.name))
    notes = ("then check image IDs, tags and the volumes' checksums against the inventory",)
    return StepPlan(Step.IMPORT, where, tuple(operations), notes, inventory)


def _load_image(ctx: Context, plan: StepPlan, operation: Operation) -> None:
    archive = migrate.Image(operation.subject, (), 0).archive
    ctx.runner.run(programs.docker_load(str(plan.where.staging / archive)), timeout=6 * 3600)


def _tag_image(ctx: Context, _plan: StepPlan, operation: Operation) -> None:
    ctx.runner.run(programs.docker_tag(operation.subject, operation.names[0]))


def _volume_mountpoint(ctx: Context, name: str) -> Path:
    ctx.runner.run(programs.docker_volume_create(name))
    volumes, _ = migrate.parse_volumes(_json_lines(ctx, programs.docker_volume_inspect((name,))))
    return observe.under(ctx.root, volumes[0].mountpoint)


def _restore_volume(ctx: Context, plan: StepPlan, operation: Operation) -> None:
    archive = migrate.Volume(operation.subject, "").archive
    where = _volume_mountpoint(ctx, operation.subject)
    ctx.runner.run(programs.tar_extract(str(plan.where.staging / archive), str(where)), timeout=6 * 3600)


def _check_import(ctx: Context, plan: StepPlan) -> migrate.ImportReport:
    """The import compared with the inventory; the staging records it when everything came over."""
    assert plan.inventory is not None
    digests = {volume.name: _volume_digest(ctx, volume.name) or "" for volume in plan.inventory.volumes}
    report = migrate.compare(plan.inventory, _images(ctx), digests)
    if report.ok:
        text = json.dumps(report.to_dict(), indent=1) + "\n"
        files.write_atomically(plan.where.staging / migrate.IMPORTED, text, keep_owner=False, mode=0o600)
    return report


# finish and rollback -------------------------------------------------------------------------


def plan_finish(ctx: Context, where: Where) -> StepPlan:
    spec, staging = where.spec, where.staging
    migrate.require_driver("finish", running_driver(ctx))
    folder = state_folder(ctx, spec)
    if folder.exists() and not (staging / migrate.IMPORTED).exists():
        raise MigrateRefused(
            f"the import into overlay2 has not been verified ({staging / migrate.IMPORTED} is missing)",
            fix="run --step import (Docker on overlay2) until it reports everything came over",
        )
    group, _ = backups.pool_lv(ctx, spec.vg, spec.pool)
    operations = [
        Operation(OpKind.REMOVE_DEVICE_LV, f"remove Docker's old thin device {spec.vg}/{name}", name)
        for name in _device_lvs(group, spec.pool)
    ]
    aside = where.data_root + migrate.ASIDE_SUFFIX
    if observe.under(ctx.root, aside).exists():
        operations.append(Operation(OpKind.REMOVE_ASIDE, f"remove {aside}", aside))
    if folder.exists() or any((staging / name).exists() for name in STAGED_NAMES):
        text = f"remove the staging's archives ({staging}) and {folder}"
        operations.append(Operation(OpKind.REMOVE_MIGRATION_FILES, text))
    return StepPlan(Step.FINISH, where, tuple(operations))


def _remove_device_lv(ctx: Context, plan: StepPlan, operation: Operation) -> None:
    ctx.runner.run(commands.lvremove(plan.where.spec.vg, operation.subject), timeout=600)


def _remove_aside(ctx: Context, _plan: StepPlan, operation: Operation) -> None:
    shutil.rmtree(observe.under(ctx.root, operation.subject))


def _remove_migration_files(ctx: Context, plan: StepPlan, _operation: Operation) -> None:
    for name in STAGED_NAMES:
        path = plan.where.staging / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    shutil.rmtree(state_folder(ctx, plan.where.spec), ignore_errors=True)


def plan_rollback(ctx: Context, where: Where) -> StepPlan:
    spec, data_root = where.spec, where.data_root
    migrate.require_driver("rollback", running_driver(ctx))
    folder = state_folder(ctx, spec)
    aside = data_root + migrate.ASIDE_SUFFIX
    if not (folder / LVM_BEFORE).exists() or not observe.under(ctx.root, aside).exists():
        raise MigrateRefused(
            "there is no switch to roll back (it never ran, or --finish removed the old data)",
            fix="nothing to do: Docker's data is where it is",
        )
    group, _ = backups.pool_lv(ctx, spec.vg, spec.pool)
    volume = docker_overlay2.store(spec).volume
    migrate.check_vg_unchanged(_shape_at_switch(folder), migrate.vg_shape(group, volume))
    operations = []
    if observe.mounted_source(data_root, ctx.root):
        operations.append(Operation(OpKind.UNMOUNT, f"unmount {data_root}", data_root))
    if any(lv.bare_name == volume and lv.pool_lv == spec.pool for lv in group.lvs):
        operations.append(Operation(OpKind.REMOVE_VOLUME_LV, f"remove {spec.vg}/{volume}", volume))
    if _device_lvs(group, spec.pool):
        text = "put back lvm's metadata from before the switch (Docker's devices unknown to lvm again)"
        operations.append(Operation(OpKind.RESTORE_LVM, text))
    operations += [
        Operation(OpKind.ACTIVATE_POOL, f"activate {spec.vg}/{spec.pool} (Docker's devicemapper opens it as it is)"),
        Operation(OpKind.RESTORE_FILES, "put back " + ", ".join(SAVED_FILES)),
        Operation(OpKind.MOVE_BACK, f"move {aside} back to {data_root}: start Docker (devicemapper)"),
    ]
    if _hold_path(ctx).exists():  # a switch was cut off while it held Docker
        operations.append(_release_docker_operation())
    return StepPlan(Step.ROLLBACK, where, tuple(operations))


def _unmount(ctx: Context, _plan: StepPlan, operation: Operation) -> None:
    ctx.runner.run(programs.umount(operation.subject))


def _remove_volume_lv(ctx: Context, plan: StepPlan, operation: Operation) -> None:
    ctx.runner.run(commands.lvremove(plan.where.spec.vg, operation.subject), timeout=600)  # its device goes too


def _restore_lvm(ctx: Context, plan: StepPlan, _operation: Operation) -> None:
    spec = plan.where.spec
    ctx.runner.run(commands.lvchange_activate(spec.vg, spec.pool, False))
    ctx.runner.run(commands.vgcfgrestore(spec.vg, str(state_folder(ctx, spec) / LVM_BEFORE)))


def _activate_pool(ctx: Context, plan: StepPlan, _operation: Operation) -> None:
    ctx.runner.run(commands.lvchange_activate(plan.where.spec.vg, plan.where.spec.pool, True))


def _restore_files(ctx: Context, plan: StepPlan, _operation: Operation) -> None:
    folder = state_folder(ctx, plan.where.spec)
    for path in SAVED_FILES:
        saved = folder / "files" / path.lstrip("/")
        target = observe.under(ctx.root, path)
        if saved.exists():
            files.write_atomically(target, saved.read_text())
        elif saved.with_name(saved.name + ABSENT).exists():
            target.unlink(missing_ok=True)


def _move_back(ctx: Context, plan: StepPlan, _operation: Operation) -> None:
    current = observe.under(ctx.root, plan.where.data_root)
    if current.exists():
        current.rmdir()  # the empty mount point; anything in it is refused by rmdir, never deleted
    files.rename_synced(observe.under(ctx.root, plan.where.data_root + migrate.ASIDE_SUFFIX), current)
    shutil.rmtree(state_folder(ctx, plan.where.spec))


# planning and running a step ------------------------------------------------------------------------

Execute = Callable[[Context, StepPlan, Operation], None]
EXECUTORS: dict[OpKind, Execute] = {
    OpKind.COMMIT_CONTAINER: _commit_container,
    OpKind.SAVE_IMAGE: _save_image,
    OpKind.SAVE_COMMITTED_IMAGE: _save_committed_image,
    OpKind.COPY_VOLUME: _copy_volume,
    OpKind.WRITE_INVENTORY: _write_inventory,
    OpKind.KEEP_FILES: _keep_files,
    OpKind.RECORD_DEVICES: _record_devices,
    OpKind.STRIP_DAEMON_JSON: _strip_daemon_json,
    OpKind.MOVE_DATA_ROOT: _move_data_root,
    OpKind.APPLY_ENGINE: _apply_engine,
    OpKind.RECORD_SHAPE: _record_shape,
    OpKind.HOLD_DOCKER: _hold_docker,
    OpKind.RELEASE_DOCKER: _release_docker,
    OpKind.LOAD_IMAGE: _load_image,
    OpKind.TAG_IMAGE: _tag_image,
    OpKind.RESTORE_VOLUME: _restore_volume,
    OpKind.REMOVE_DEVICE_LV: _remove_device_lv,
    OpKind.REMOVE_ASIDE: _remove_aside,
    OpKind.REMOVE_MIGRATION_FILES: _remove_migration_files,
    OpKind.UNMOUNT: _unmount,
    OpKind.REMOVE_VOLUME_LV: _remove_volume_lv,
    OpKind.RESTORE_LVM: _restore_lvm,
    OpKind.ACTIVATE_POOL: _activate_pool,
    OpKind.RESTORE_FILES: _restore_files,
    OpKind.MOVE_BACK: _move_back,
}
PLANNERS: dict[Step, Callable[[Context, Where], StepPlan]] = {
    Step.EXPORT: plan_export,
    Step.SWITCH: plan_switch,
    Step.IMPORT: plan_import,
    Step.FINISH: plan_finish,
    Step.ROLLBACK: plan_rollback,
}


def execute(ctx: Context, plan: StepPlan) -> StepResult:
    """Run the plan's operations in order, and nothing else; the import's check follows its operations."""
    result = StepResult(str(plan.step))
    if plan.step == Step.EXPORT:
        plan.where.staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    if plan.step == Step.SWITCH:
        state_folder(ctx, plan.where.spec).mkdir(mode=0o700, parents=True, exist_ok=True)
    for operation in plan.operations:
        EXECUTORS[operation.kind](ctx, plan, operation)
        result.ran.append(operation)
    if plan.step == Step.IMPORT:
        result.report = _check_import(ctx, plan)
    return result


def _require_systemd(ctx: Context, where: Where) -> None:
    if not observe.systemd_running(ctx.root):
        staging = where.staging
        raise MigrateRefused(
            "systemd does not run here, so thinpool cannot stop and start Docker between the steps",
            fix=f"run the steps yourself: thinpool migrate --to {migrate.TARGET} --step export --staging "
            f"{staging} --yes; stop Docker; ... --step switch --yes; start Docker; ... --step import --staging "
            f"{staging} --yes",
        )


def plan(ctx: Context, step: Step, where: Where) -> StepPlan:
    """What ``step`` would do on this host, read and changing nothing; refusals come now. ALL is export's plan,
    with the steps after it as notes: each of them is planned when the one before has run."""
    migrate.check_data_root(_daemon_settings(ctx).get("data-root"), where.data_root)
    if step != Step.ALL:
        return PLANNERS[step](ctx, where)
    _require_systemd(ctx, where)
    first = plan_export(ctx, where)
    later = (
        "then: systemctl stop docker; switch (planned once Docker has stopped); systemctl start docker; "
        "import (planned once Docker runs on overlay2); run --finish yourself once satisfied"
    )
    return replace(first, notes=(*first.notes, later))


def run(ctx: Context, step: Step, where: Where) -> list[StepResult]:
    """Plan ``step`` and execute that plan; ALL runs export, stops Docker, switches, starts Docker and imports,
    each step planned just before it runs."""
    if step != Step.ALL:
        return [execute(ctx, plan(ctx, step, where))]
    results = [execute(ctx, plan(ctx, Step.ALL, where))]
    ctx.runner.run(programs.systemctl_stop(DOCKER_UNITS), timeout=600)
    results.append(execute(ctx, plan(ctx, Step.SWITCH, where)))
    ctx.runner.run(programs.systemctl_start(DOCKER_UNITS), timeout=600)
    results.append(execute(ctx, plan(ctx, Step.IMPORT, where)))
    return results
