"""Pure parsers of lvm's JSON reports (``--reportformat json --units b --nosuffix``).

Every value in lvm's JSON is a string; sizes are plain byte counts; percentages are ""
on an inactive pool. A data LV spanning several PVs appears once per segment.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from thinpool.core.health import PoolNotFound, PoolPart, PoolStatus, ThinVolume
from thinpool.core.lvm.commands import MANAGED_TAG
from thinpool.core.model import DmDevice, LogicalVolume, PhysicalVolume, VolumeGroup
from thinpool.core.units import scale_decimal
from thinpool.errors import ThinpoolError

P = ParamSpec("P")
R = TypeVar("R")


class ReportError(ThinpoolError):
    """lvm printed something that is not the report we asked for."""


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> Any:
    """One report's JSON, parsed once however many kinds of rows are read from it (``lvm fullreport`` has five)."""
    return json.loads(text)


def _unreadable(key: str, problem: object) -> ReportError:
    return ReportError(
        f"could not read lvm's {key} report: {problem}",
        fix="check that lvm2 >= 2.02.158 (JSON reports) is installed; run the lvm command by hand to see its output",
    )


def rows(text: str, key: str) -> list[dict[str, str]]:
    """The report's rows of ``key`` ("lv", "vg", "pv", "seg"): each a flat object of strings, as lvm prints
    them (``null``, numbers, nesting or a report of another shape are a ReportError, never a traceback)."""
    try:
        data: Any = _parsed(text)
        found: list[dict[str, str]] = []
        for section in data["report"]:
            found.extend(section.get(key, []))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise _unreadable(key, exc) from exc
    for row in found:
        if not isinstance(row, dict) or not all(isinstance(value, str) for value in row.values()):
            raise _unreadable(key, f"a row is not an object of strings ({str(row)[:80]})")
    return found


def _read_as(key: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A parser whose rows lack a field lvm always prints, or hold a value that is not a number where one
    must be (a size with a unit: the report was not asked for with ``--units b --nosuffix``), raises ReportError."""

    def decorate(parse: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(parse)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return parse(*args, **kwargs)
            except KeyError as exc:
                raise _unreadable(key, f"a row has no {exc} field") from exc
            except ValueError as exc:
                raise _unreadable(key, exc) from exc

        return checked

    return decorate


def _int(value: str) -> int:
    return int(value) if value.strip() else 0


def _optional_int(value: str) -> int | None:
    return int(value) if value.strip().isdigit() else None


def kernel_device(row: dict[str, str]) -> str:
    """ "MAJOR:MINOR" of an active LV's device ("" when inactive: lvm reports -1)."""
    major, minor = row.get("lv_kernel_major", "-1"), row.get("lv_kernel_minor", "-1")
    return f"{major}:{minor}" if major.isdigit() and minor.isdigit() else ""


def _first_segments(text: str) -> dict[str, dict[str, str]]:
    """``lvm fullreport``'s segment rows by lv_uuid, the first segment of each LV (``lvs`` has none)."""
    found: dict[str, dict[str, str]] = {}
    for row in rows(text, "seg"):
        found.setdefault(row.get("lv_uuid", ""), row)
    return found


@_read_as("lv")
def parse_lvs(text: str, vg: str = "") -> list[LogicalVolume]:
    """LVs of an ``lvs`` report or of ``lvm fullreport`` (its segment fields joined in by lv_uuid);
    ``vg`` names their VG when the report has no vg_name column."""
    seen: dict[tuple[str, str], LogicalVolume] = {}
    own_rows = rows(text, "lv")
    segments = _first_segments(text)
    for own in own_rows:
        row = {**own, **segments.get(own.get("lv_uuid", ""), {})}
        lv = LogicalVolume(
            name=row["lv_name"],
            vg_name=row.get("vg_name", vg),
            attr=row.get("lv_attr", ""),
            size=_int(row.get("lv_size", "")),
            segtype=row.get("segtype", ""),
            metadata_size=_int(row.get("lv_metadata_size", "")),
            chunk_size=_int(row.get("chunk_size", "")),
            data_percent=row.get("data_percent", ""),
            metadata_percent=row.get("metadata_percent", ""),
            seg_monitor=row.get("seg_monitor", ""),
            health=row.get("lv_health_status", ""),
            profile=row.get("lv_profile", ""),
            pool_lv=row.get("pool_lv", ""),
            origin=row.get("origin", ""),
            active=row.get("lv_active", "") == "active",
            tags=_tags(row.get("lv_tags", "")),
            uuid=row.get("lv_uuid", ""),
            when_full=row.get("lv_when_full", ""),
            kernel_device=kernel_device(row),
            transaction_id=_optional_int(row.get("transaction_id", "")),
            thin_id=_optional_int(row.get("thin_id", "")),
            stripes=_int(row.get("stripes", "")),
        )
        # One row per segment: keep the first, the LV-level fields are the same.
        seen.setdefault((lv.vg_name, lv.name), lv)
    return list(seen.values())


@_read_as("vg")
def parse_vgs(text: str) -> list[dict[str, int | str]]:
    return [
        {
            "name": row["vg_name"],
            "extent_size": _int(row["vg_extent_size"]),
            "extent_count": _int(row["vg_extent_count"]),
            "free_count": _int(row["vg_free_count"]),
            "seqno": _int(row["vg_seqno"]),
            "uuid": row.get("vg_uuid", ""),
            "tags": row.get("vg_tags", ""),
        }
        for row in rows(text, "vg")
    ]


@_read_as("pv")
def parse_pvs(text: str) -> list[PhysicalVolume]:
    return [
        PhysicalVolume(
            name=row["pv_name"],
            vg_name=row.get("vg_name", ""),
            size=_int(row.get("pv_size", "")),
            pe_start=_int(row.get("pe_start", "")),
            pe_count=_int(row.get("pv_pe_count", "")),
            pe_alloc_count=_int(row.get("pv_pe_alloc_count", "")),
            dev_size=_int(row.get("dev_size", "")),
            attr=row.get("pv_attr", ""),
            mda_used_count=_int(row.get("pv_mda_used_count", "")),
        )
        for row in rows(text, "pv")
    ]


def assemble_vgs(vgs_text: str, pvs: list[PhysicalVolume], lvs: list[LogicalVolume]) -> dict[str, VolumeGroup]:
    groups: dict[str, VolumeGroup] = {}
    pv_names: dict[str, list[str]] = {}
    for pv in pvs:
        pv_names.setdefault(pv.vg_name, []).append(pv.name)
    by_vg: dict[str, list[LogicalVolume]] = {}
    for lv in lvs:
        by_vg.setdefault(lv.vg_name, []).append(lv)
    for row in parse_vgs(vgs_text):
        name = str(row["name"])
        groups[name] = VolumeGroup(
            name=name,
            extent_size=int(row["extent_size"]),
            extent_count=int(row["extent_count"]),
            free_count=int(row["free_count"]),
            seqno=int(row["seqno"]),
            uuid=str(row["uuid"]),
            tags=_tags(str(row["tags"])),
            pv_names=tuple(pv_names.get(name, ())),
            lvs=tuple(by_vg.get(name, ())),
        )
    return groups


def parse_dmsetup_info(text: str) -> list[DmDevice]:
    """Lines of ``name;uuid;open;attr`` (dmsetup prints "No devices found" when there are none)."""
    found = []
    for line in text.splitlines():
        fields = line.strip().split(";")
        if len(fields) == 4 and fields[2].strip().isdigit():
            live = fields[3].strip().startswith("L")
            found.append(DmDevice(fields[0], fields[1], int(fields[2]), live_table=live))
    return found


@dataclass(frozen=True)
class ThinPoolTarget:
    """The kernel's view of a pool (``dmsetup status`` of its thin-pool target)."""

    transaction_id: int
    held_metadata_root: bool  # a metadata snapshot is reserved
    mode: str  # "rw", "ro", "out_of_data_space", or "Fail" / "Error"
    needs_check: bool
    data_blocks: int = 0  # the pool's size in chunks

    @property
    def failed(self) -> bool:
        return self.mode in ("Fail", "Error")


def parse_thin_pool_status(text: str) -> ThinPoolTarget | None:
    """``0 LEN thin-pool TID META/META DATA/DATA HELD MODE DISCARD NOSPACE NEEDS_CHECK ...``; None for
    another target. See the kernel's Documentation/admin-guide/device-mapper/thin-provisioning.rst."""
    fields = text.split()
    if len(fields) < 4 or fields[2] != "thin-pool":
        return None
    if fields[3] in ("Fail", "Error"):
        return ThinPoolTarget(-1, False, fields[3], True, 0)
    try:
        return ThinPoolTarget(
            transaction_id=int(fields[3]),
            held_metadata_root=len(fields) > 6 and fields[6] != "-",
            mode=fields[7] if len(fields) > 7 else "",
            needs_check=len(fields) > 10 and fields[10] == "needs_check",
            data_blocks=int(fields[5].partition("/")[2]) if len(fields) > 5 else 0,
        )
    except ValueError as error:
        raise ReportError(f"could not read the pool's status {text.strip()!r}", fix="check 'dmsetup status'") from error


def _used(size: int, percent: str) -> int:
    """Bytes in use from lvm's two-decimal percent (exact integer arithmetic)."""
    return scale_decimal(percent or "0", size, 100)


def _thin_volumes(lv_rows: list[dict[str, str]], pool: str) -> tuple[ThinVolume, ...]:
    found = []
    for row in lv_rows:
        if row.get("pool_lv") != pool or row.get("segtype") != "thin":
            continue
        size = int(row["lv_size"])
        mapped = _used(size, row.get("data_percent", ""))
        managed = MANAGED_TAG in _tags(row.get("lv_tags", ""))
        found.append(ThinVolume(row["lv_name"], size, mapped, managed, kernel_device(row)))
    return tuple(found)


def _pool_row(lv_rows: list[dict[str, str]], vg: str, pool: str) -> dict[str, str]:
    for row in lv_rows:
        if row["lv_name"] == pool and row.get("segtype") == "thin-pool":
            return row
    pools = sorted({row["lv_name"] for row in lv_rows if row.get("segtype") == "thin-pool"})
    raise PoolNotFound(
        f"{vg}/{pool} is not a thin pool" + (f" (thin pools in {vg}: {', '.join(pools)})" if pools else ""),
        fix="name it as VG/POOL, e.g. thinpool status docker/thinpool",
    )


def _devices_of(lv_rows: list[dict[str, str]], name: str, depth: int = 0) -> set[str]:
    """The PVs under LV ``name`` (brackets or not): a RAID's images are LVs (lvs names them in ``devices``
    without their brackets), read in turn."""
    found: set[str] = set()
    names = {row["lv_name"].strip("[]") for row in lv_rows}
    for row in lv_rows:
        if row["lv_name"].strip("[]") != name.strip("[]"):
            continue
        for entry in row.get("devices", "").split(","):
            device = entry.split("(")[0]
            if device.strip("[]") in names and depth < 4:
                found |= _devices_of(lv_rows, device, depth + 1)
            elif device:
                found.add(device)
    return found


def _data_devices(lv_rows: list[dict[str, str]], pool: str) -> tuple[str, ...]:
    return tuple(sorted(_devices_of(lv_rows, f"[{pool}_tdata]")))


def _parts(lv_rows: list[dict[str, str]], pool: str) -> tuple[PoolPart, ...]:
    found = []
    for role, suffix in (("data", "_tdata"), ("metadata", "_tmeta")):
        name = f"[{pool}{suffix}]"
        row = next((row for row in lv_rows if row["lv_name"] == name), None)
        if row is None:
            continue
        devices = tuple(sorted(_devices_of(lv_rows, name)))
        found.append(
            PoolPart(
                role,
                row.get("segtype", ""),
                attr=row.get("lv_attr", ""),
                health=row.get("lv_health_status", ""),
                sync_percent=row.get("copy_percent", ""),
                devices=devices,
            )
        )
    return tuple(found)


@_read_as("lv")
def pool_status(text: str, vg: str, pool: str) -> PoolStatus:
    """``vg/pool`` as one ``lvs`` report (commands.status_report) shows it; its profile is read apart
    (``health.with_profile``), since the report names it but does not hold it."""
    lv_rows = rows(text, "lv")
    row = _pool_row(lv_rows, vg, pool)
    size, metadata_size = int(row["lv_size"]), int(row["lv_metadata_size"] or 0)
    volumes = _thin_volumes(lv_rows, pool)
    return PoolStatus(
        vg=vg,
        pool=pool,
        attr=row["lv_attr"],
        data_size=size,
        data_used=_used(size, row.get("data_percent", "")),
        metadata_size=metadata_size,
        metadata_used=_used(metadata_size, row.get("metadata_percent", "")),
        chunk_size=int(row["chunk_size"]),
        thin_count=len(volumes),
        virtual_size=sum(volume.size for volume in volumes),
        extent_size=int(row["vg_extent_size"]),
        vg_free_extents=int(row["vg_free_count"]),
        monitor=row.get("seg_monitor", ""),
        health=row.get("lv_health_status", ""),
        profile=row.get("lv_profile", ""),
        devices=_data_devices(lv_rows, pool),
        parts=_parts(lv_rows, pool),
        when_full=row.get("lv_when_full", ""),
        volumes=volumes,
        transaction_id=_optional_int(row.get("transaction_id", "")),
        tags=_tags(row.get("lv_tags", "")),
        vg_tags=_tags(row.get("vg_tags", "")),
    )


def _tags(text: str) -> tuple[str, ...]:
    return tuple(tag for tag in text.split(",") if tag)
