"""Moving a Docker devicemapper host to overlay2 on a thin volume of the same pool: the rules (pure).

The move runs in steps, each of which can run alone and again:

* export: Docker running on devicemapper. Its images (``docker save``, every tag) and named
  volumes (tar) are written to a staging folder, with an inventory that says what was there.
* switch: Docker stopped. daemon.json loses devicemapper's settings, the data root is moved aside,
  and lvm is told about Docker's thin devices (see ``with_docker_devices``), so that lvm can make
  the overlay2 volume beside them. The volume is then made as ``--engine docker-overlay2-thin`` does.
* import: Docker running on overlay2. ``docker load``, tags, volumes, then a check against the
  inventory (image IDs, tags, the volumes' checksums).
* finish: Docker's old thin devices are removed through lvm, then the staging and the old data root.
* rollback (before finish): the overlay2 volume goes, lvm's metadata from before the switch comes
  back, and so do Docker's files: devicemapper again, with every image and container.

Why lvm must be told: Docker makes thin devices with dm messages, behind lvm's back. The kernel's
transaction id then runs ahead of lvm's, and lvm refuses thin operations on the pool. Setting lvm's
id to the kernel's is not enough: lvm gives a new thin volume the device id after the largest it
knows, which would be one of Docker's. So each of Docker's devices is written into lvm's metadata as
a thin LV (its id, its size, a tag, never activated); lvm and the kernel then agree, a new volume gets
a free id, and ``finish`` is an ``lvremove`` of the tagged LVs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from thinpool.core import repair
from thinpool.core.envelope import envelope
from thinpool.core.model import VolumeGroup
from thinpool.core.units import ceil_div, format_size
from thinpool.errors import ThinpoolError

TARGET = "docker-overlay2-thin"
STATE_ROOT = "/var/lib/thinpool/migrate"  # VG-POOL/ below: lvm's metadata and Docker's files as they were
DEVICE_TAG = "thinpool.devicemapper"  # on the LVs that stand for Docker's thin devices
DOCKER_METADATA = "devicemapper/metadata"  # under Docker's data root: one JSON file per thin device
DOCKER_BOOKKEEPING = ("deviceset-metadata", "transaction-metadata")  # the other files there
ASIDE_SUFFIX = ".devicemapper"  # the old data root is moved to DATA_ROOT + this
# While a switch runs, docker.service refuses to start: after a crash or a power cut mid-switch, a Docker
# started at boot would make a fresh store on the root filesystem where its data root was moved aside.
HOLD_DROP_IN = "/etc/systemd/system/docker.service.d/thinpool-switching.conf"
INVENTORY = "inventory.json"
IMPORTED = "imported.json"
STAGING_MARGIN_PERCENT = 10  # tar headers and docker save's manifests, over the images' own size
UUID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
UUID_GROUPS = (6, 4, 4, 4, 4, 4, 6)  # lvm's LV uuid shape


class Step(StrEnum):
    """What one ``thinpool migrate`` run does: one step, or ALL (export, switch and import in a row)."""

    ALL = "all"
    EXPORT = "export"
    SWITCH = "switch"
    IMPORT = "import"
    FINISH = "finish"
    ROLLBACK = "rollback"


class OpKind(StrEnum):
    """The changes a migrate step makes; each step's operations are computed before any of them runs."""

    COMMIT_CONTAINER = "commit-container"
    SAVE_IMAGE = "save-image"
    SAVE_COMMITTED_IMAGE = "save-committed-image"
    COPY_VOLUME = "copy-volume"
    WRITE_INVENTORY = "write-inventory"
    KEEP_FILES = "keep-files"
    RECORD_DEVICES = "record-devices"
    STRIP_DAEMON_JSON = "strip-daemon-json"
    MOVE_DATA_ROOT = "move-data-root"
    APPLY_ENGINE = "apply-engine"
    RECORD_SHAPE = "record-shape"
    HOLD_DOCKER = "hold-docker"
    RELEASE_DOCKER = "release-docker"
    STOP_DOCKER = "stop-docker"
    START_DOCKER = "start-docker"
    LOAD_IMAGE = "load-image"
    TAG_IMAGE = "tag-image"
    RESTORE_VOLUME = "restore-volume"
    REMOVE_DEVICE_LV = "remove-device-lv"
    REMOVE_ASIDE = "remove-aside"
    REMOVE_MIGRATION_FILES = "remove-migration-files"
    UNMOUNT = "unmount"
    REMOVE_VOLUME_LV = "remove-volume-lv"
    RESTORE_LVM = "restore-lvm"
    ACTIVATE_POOL = "activate-pool"
    RESTORE_FILES = "restore-files"
    MOVE_BACK = "move-back"


@dataclass(frozen=True)
class Operation:
    """One change of a step: what the preview shows and what the run does and reports, from the same value."""

    kind: OpKind
    text: str  # what it does, in the words the preview and the result both print
    subject: str = ""  # what it acts on: an image's id, a tag, a volume's or an LV's name, a path
    names: tuple[str, ...] = ()  # more of it: an image's tags, a container's id and its image

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "text": self.text, "subject": self.subject, "names": list(self.names)}


class MigrateRefused(ThinpoolError):
    """A step asked for in a state it cannot run from; the message says what to do first."""


# Docker's devicemapper records ---------------------------------------------------------------


@dataclass(frozen=True)
class DockerDevice:
    """One of Docker's thin devices, as its devicemapper driver records it."""

    name: str  # the record's file name: an image layer or container id, or "base"
    device_id: int
    size: int  # virtual bytes
    transaction_id: int
    deleted: bool


def parse_docker_devices(records: Mapping[str, str]) -> dict[int, DockerDevice]:
    """Docker's per-device records (file name -> JSON text) by device id; a broken one is refused."""
    devices: dict[int, DockerDevice] = {}
    for name, text in sorted(records.items()):
        if name in DOCKER_BOOKKEEPING or name.startswith("."):
            continue
        try:
            data = json.loads(text)
            device = DockerDevice(
                name,
                int(data["device_id"]),
                int(data["size"]),
                int(data.get("transaction_id", 0)),
                bool(data.get("deleted", False)),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise MigrateRefused(
                f"Docker's devicemapper record {name!r} is unreadable ({error})",
                fix="start Docker on devicemapper once (it rewrites its records), then run this step again",
            ) from error
        devices[device.device_id] = device
    return devices


def kept_devices(kernel_ids: Iterable[int], docker: Mapping[int, DockerDevice]) -> dict[int, DockerDevice]:
    """The kernel's thin devices, each with Docker's record; a device Docker does not know is refused
    (something else uses this pool, and lvm would not know what to make of it)."""
    ids = sorted(kernel_ids)
    unknown = [device_id for device_id in ids if device_id not in docker]
    if unknown:
        raise MigrateRefused(
            f"the pool holds thin devices {unknown} that neither lvm nor Docker's devicemapper records know",
            fix="find what made them (another engine on this pool?) and remove or record them first",
        )
    return {device_id: docker[device_id] for device_id in ids}


def device_lv_name(device_id: int) -> str:
    return f"devicemapper-{device_id}"


def lv_uuid(vg_uuid: str, device_id: int) -> str:
    """A stable lvm-shaped uuid for the LV of Docker's device ``device_id`` (the same on every run)."""
    digest = hashlib.sha256(f"{vg_uuid}/{device_id}".encode()).digest()
    letters = "".join(UUID_ALPHABET[byte % len(UUID_ALPHABET)] for byte in digest)
    groups, start = [], 0
    for width in UUID_GROUPS:
        groups.append(letters[start : start + width])
        start += width
    return "-".join(groups)


def _lv_block(vg_uuid: str, pool: str, device: DockerDevice, extent_size: int, created: int) -> str:
    extents = max(1, ceil_div(device.size, extent_size))
    return f"""
		{device_lv_name(device.device_id)} {{
			id = "{lv_uuid(vg_uuid, device.device_id)}"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = ["ACTIVATION_SKIP"]
			tags = ["{DEVICE_TAG}"]
			creation_time = {created}
			creation_host = "thinpool-migrate"
			segment_count = 1

			segment1 {{
				start_extent = 0
				extent_count = {extents}

				type = "thin"
				thin_pool = "{pool}"
				transaction_id = {device.transaction_id}
				device_id = {device.device_id}
			}}
		}}
"""


def _logical_volumes_line(lines: list[str]) -> int:
    """The index of the VG's ``logical_volumes {`` line (depth 1), refused when there is none."""
    depth = 0
    for index, line in enumerate(lines):
        text = line.strip()
        if text.startswith("#"):
            continue
        if text.endswith("{"):
            if depth == 1 and text[:-1].strip() == "logical_volumes":
                return index
            depth += 1
        elif text == "}":
            depth -= 1
    raise MigrateRefused("lvm's metadata has no logical_volumes section", fix="check 'vgcfgbackup -f FILE VG' by hand")


def with_docker_devices(
    vg_text: str,
    pool: str,
    *,
    lvm_transaction_id: int,
    kernel_transaction_id: int,
    devices: Mapping[int, DockerDevice],
    extent_size: int,
    vg_uuid: str,
    created: int,
) -> str:
    """lvm's VG metadata text (vgcfgbackup) with the pool's transaction id set to the kernel's and
    one thin LV per device of Docker's, tagged, never activated; every other byte kept."""
    text = vg_text
    if lvm_transaction_id != kernel_transaction_id:
        text = repair.set_transaction_id(text, pool, lvm_transaction_id, kernel_transaction_id)
    lines = text.splitlines(keepends=True)
    at = _logical_volumes_line(lines) + 1
    blocks = [_lv_block(vg_uuid, pool, device, extent_size, created) for _, device in sorted(devices.items())]
    return "".join(lines[:at] + blocks + lines[at:])


# daemon.json ------------------------------------------------------------------------------------


HOLD_MESSAGE = (
    "thinpool: a migrate switch has not finished: run thinpool migrate --step switch again (or --rollback), "
    "then start Docker"
)


def hold_drop_in() -> str:
    """docker.service's drop-in while a switch runs: every start fails, saying why and what to run (a fixed
    text: no path in it, so nothing for systemd's % specifiers or $ variables)."""
    return (
        "# Written by thinpool migrate --step switch, removed when it ends: Docker must not start on a data\n"
        "# root moved aside or half-made.\n"
        "[Service]\n"
        f"ExecStartPre=/bin/sh -c 'echo \"{HOLD_MESSAGE}\" >&2; exit 1'\n"
    )


def without_devicemapper(settings: Mapping[str, Any]) -> dict[str, Any]:
    """daemon.json's settings without the storage driver and devicemapper's options; the rest kept."""
    kept = {key: value for key, value in settings.items() if key != "storage-driver"}
    options = [str(option) for option in settings.get("storage-opts", [])]
    others = [option for option in options if not option.strip().startswith("dm.")]
    kept.pop("storage-opts", None)
    if others:
        kept["storage-opts"] = others
    return kept


def uses_devicemapper(settings: Mapping[str, Any]) -> bool:
    options = [str(option) for option in settings.get("storage-opts", [])]
    return settings.get("storage-driver") == "devicemapper" or any(o.strip().startswith("dm.") for o in options)


def check_dockers_pool(thinpooldev: str, pool_device: str) -> None:
    """Refuse a switch of a pool that daemon.json (its dm.thinpooldev) does not point Docker's devicemapper at."""
    if thinpooldev and thinpooldev != pool_device:
        raise MigrateRefused(
            f"Docker's devicemapper uses {thinpooldev}, not {pool_device}",
            fix="name Docker's pool with --vg and --pool",
        )


# The inventory ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    id: str  # sha256:... (the config digest, kept by docker save / load)
    tags: tuple[str, ...]
    size: int

    @property
    def archive(self) -> str:
        return "images/" + self.id.removeprefix("sha256:")[:24] + ".tar"


@dataclass(frozen=True)
class Volume:
    name: str
    mountpoint: str
    digest: str = ""  # sha256 over the tree (paths, kinds, modes, contents); set once exported
    size: int = 0

    @property
    def archive(self) -> str:
        return f"volumes/{self.name}.tar"


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image: str
    state: str
    committed_as: str = ""  # the image its writable layer was committed to (--commit-containers)


@dataclass(frozen=True)
class Inventory:
    images: tuple[Image, ...]
    volumes: tuple[Volume, ...]
    containers: tuple[Container, ...]
    skipped_volumes: tuple[str, ...] = ()  # not on the local driver: their data is not under Docker's root

    @property
    def image_bytes(self) -> int:
        return sum(image.size for image in self.images)

    @property
    def volume_bytes(self) -> int:
        return sum(volume.size for volume in self.volumes)

    def to_dict(self) -> dict[str, Any]:
        return envelope("thinpool-migrate-inventory", asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Inventory:
        try:
            return cls(
                images=tuple(Image(i["id"], tuple(i["tags"]), int(i["size"])) for i in data["images"]),
                volumes=tuple(Volume(v["name"], v["mountpoint"], v["digest"], int(v["size"])) for v in data["volumes"]),
                containers=tuple(Container(**c) for c in data["containers"]),
                skipped_volumes=tuple(data.get("skipped_volumes", ())),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MigrateRefused(
                f"the staging's {INVENTORY} is not one thinpool wrote ({error})",
                fix="run --step export again into an empty --staging folder",
            ) from error


def parse_images(inspected: str) -> tuple[Image, ...]:
    """``docker image inspect`` JSON -> images (dangling ones have no tag and are kept by id)."""
    return tuple(
        Image(str(item["Id"]), tuple(sorted(item.get("RepoTags") or ())), int(item.get("Size", 0)))
        for item in json.loads(inspected or "[]")
    )


def parse_volumes(inspected: str) -> tuple[tuple[Volume, ...], tuple[str, ...]]:
    """``docker volume inspect`` JSON -> local volumes, and the names of the others (not copied)."""
    local, others = [], []
    for item in json.loads(inspected or "[]"):
        if item.get("Driver", "local") == "local" and not (item.get("Options") or {}).get("device"):
            local.append(Volume(str(item["Name"]), str(item["Mountpoint"])))
        else:
            others.append(str(item["Name"]))
    return tuple(local), tuple(others)


def parse_containers(lines: str) -> tuple[Container, ...]:
    """``docker ps -a --no-trunc --format '{{json .}}'`` (one JSON object a line) -> containers."""
    found = []
    for line in lines.splitlines():
        if line.strip():
            item = json.loads(line)
            found.append(Container(str(item["ID"]), str(item["Names"]), str(item["Image"]), str(item["State"])))
    return tuple(found)


def commit_name(container: Container) -> str:
    """The image a container's writable layer is committed to (a valid repository name)."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in container.name.lower()).strip(".-_")
    return f"thinpool-migrate/{safe or container.id[:12]}:committed"


def staging_needed(inventory: Inventory) -> int:
    """Bytes the staging must have free: every image's size and every volume's, plus a margin."""
    raw = inventory.image_bytes + inventory.volume_bytes
    return raw + raw * STAGING_MARGIN_PERCENT // 100


def check_data_root(configured: object, given: str) -> None:
    """Every step reads and moves Docker's data root: refuse one that is not where daemon.json puts it
    (``configured``: its ``data-root``, None when it sets none and Docker uses /var/lib/docker)."""
    if configured is not None and configured != given:
        raise MigrateRefused(
            f"daemon.json puts Docker's data root at {configured}, not at {given}",
            fix=f"pass --data-root {configured}",
        )


def check_staging_place(staging: str, data_root: str) -> None:
    """The staging must outlive the switch, which moves Docker's data root aside and mounts a new one."""
    inside = staging.rstrip("/") + "/"
    if inside.startswith(data_root.rstrip("/") + "/"):
        raise MigrateRefused(
            f"the staging {staging} is under Docker's data root {data_root}, which the switch moves aside",
            fix="pass --staging DIR outside it (and outside the pool)",
        )


def check_staging_room(where: str, needed: int, free: int) -> None:
    if free < needed:
        raise MigrateRefused(
            f"the staging {where} has {format_size(free)} ({free} bytes) free; the images and volumes need "
            f"{format_size(needed)} ({needed} bytes, {STAGING_MARGIN_PERCENT}% margin included)",
            fix="pass --staging DIR on a filesystem with that much room (not in the pool, not under Docker's "
            "data root)",
        )


# Where each step may run from -------------------------------------------------------------------


def require_driver(step: str, driver: str | None) -> None:
    """Refuse ``step`` unless Docker is in the state it needs (``driver``: the running Docker's storage
    driver, None when Docker is not running)."""
    wanted = {"export": "devicemapper", "import": "overlay2"}.get(step)
    if wanted is not None and driver != wanted:
        now = f"Docker runs on {driver}" if driver else "Docker is not running"
        raise MigrateRefused(
            f"--step {step} needs Docker running on {wanted}; {now}",
            fix=f"start Docker ({wanted} is what the previous step leaves), then run --step {step} again"
            if driver is None
            else f"this host is not at that step: see 'thinpool migrate --to {TARGET}' for the order",
        )
    if step in ("switch", "rollback") and driver is not None:
        raise MigrateRefused(
            f"--{'step switch' if step == 'switch' else 'rollback'} needs Docker stopped; it runs on {driver}",
            fix="stop it (systemctl stop docker docker.socket), then run this again",
        )
    if step == "finish" and driver == "devicemapper":
        raise MigrateRefused(
            "--finish would delete the devices Docker runs on (it still uses devicemapper)",
            fix="run --step switch and --step import first",
        )


def vg_shape(group: VolumeGroup, volume: str) -> tuple[str, ...]:
    """What a restore of lvm's metadata from before the switch would put back as it was then: the VG's PVs and
    extents, and every LV's name and sizes, but for the overlay2 volume and Docker's devices (a rollback removes
    them itself)."""
    lvs = (
        f"LV {lv.name} {lv.size} B" + (f", metadata {lv.metadata_size} B" if lv.metadata_size else "")
        for lv in group.lvs
        if lv.bare_name != volume and DEVICE_TAG not in lv.tags
    )
    return (f"{group.extent_count} extents", *(f"PV {name}" for name in sorted(group.pv_names)), *sorted(lvs))


def check_vg_unchanged(at_switch: Iterable[str] | None, now: Iterable[str]) -> None:
    """Refuse a rollback when the VG is not shaped as the switch left it (``at_switch``; None when no switch
    finished): putting back lvm's metadata from before the switch would undo a grow, a vgextend or an LV made."""
    if at_switch is None:
        return
    then, current = set(at_switch), set(now)
    if then != current:
        changes = [f"was {item}" for item in sorted(then - current)] + [
            f"now {item}" for item in sorted(current - then)
        ]
        raise MigrateRefused(
            "the volume group changed since the switch (" + "; ".join(changes) + "): putting back lvm's metadata "
            "from before the switch would undo that",
            fix="undo that change and run --rollback again, or go forward with --step import and --finish",
        )


# After the import -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportReport:
    images_matched: tuple[str, ...]
    images_missing: tuple[str, ...]  # id, or id:tag for a tag that did not come back
    volumes_matched: tuple[str, ...]
    volumes_differ: tuple[str, ...]
    containers_not_carried: tuple[str, ...]  # name (state), with the image they were committed to
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.images_missing and not self.volumes_differ

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def compare(inventory: Inventory, images_now: Iterable[Image], volume_digests: Mapping[str, str]) -> ImportReport:
    """What came over: each image by ID with every tag, each volume by its tree's checksum."""
    now = {image.id: set(image.tags) for image in images_now}
    matched, missing = [], []
    for image in inventory.images:
        tags = now.get(image.id)
        lost = [image.id] if tags is None else [f"{image.id} {tag}" for tag in image.tags if tag not in tags]
        (missing.extend(lost) if lost else matched.append(image.id))
    same = tuple(v.name for v in inventory.volumes if volume_digests.get(v.name) == v.digest)
    differ = tuple(v.name for v in inventory.volumes if volume_digests.get(v.name) != v.digest)
    containers = tuple(
        f"{c.name} ({c.state}"
        + (
            f"; its writable layer is image {c.committed_as})"
            if c.committed_as
            else "; its writable layer was not kept)"
        )
        for c in inventory.containers
    )
    notes = tuple(f"volume {name}: not on the local driver; not copied" for name in inventory.skipped_volumes)
    return ImportReport(tuple(matched), tuple(missing), same, differ, containers, notes)
