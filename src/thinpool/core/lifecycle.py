"""Pure plans for an existing pool's later life: grow it onto new devices, or destroy it."""

from __future__ import annotations

from dataclasses import replace

from thinpool.core import crypt, layouts, planner, sizing
from thinpool.core.lvm import commands
from thinpool.core.model import CryptState, LogicalVolume, Observed, VolumeGroup
from thinpool.core.plan import Action, ActionKind, Plan, PlanLayout, Target, expect_of
from thinpool.core.programs import argv as programs
from thinpool.core.spec import PoolSpec
from thinpool.core.units import ceil_div, format_size
from thinpool.errors import SpecError


def _existing_pool(spec: PoolSpec, observed: Observed) -> tuple[VolumeGroup, LogicalVolume]:
    vg = observed.vgs.get(spec.vg)
    pool = vg.lv(spec.pool) if vg else None
    if vg is None or pool is None or not pool.is_thin_pool:
        raise SpecError(
            f"there is no thin pool {spec.vg}/{spec.pool}",
            fix="check --vg and --pool (see 'lvs -a'); 'thinpool apply' creates one",
        )
    return vg, pool


def plan_destroy(
    spec: PoolSpec, observed: Observed, engine_users: tuple[str, ...] = (), *, erase_encryption: bool = False
) -> Plan:
    """Remove the pool; then the VG and its PV labels too when nothing else lives there, and the LUKS mappings
    of thinpool's under them (closed, their crypttab lines removed; their headers erased only when asked).

    ``engine_users`` names the engine configuration files that still point at the pool
    (the engine adapters read them); destroy is refused while there is one.
    """
    vg, pool = _existing_pool(spec, observed)
    target = f"{spec.vg}/{spec.pool}"
    busy = [lv.name for lv in vg.thin_volumes(pool.bare_name) if lv.active]
    if busy:
        raise SpecError(
            f"{target} has active thin volumes: {', '.join(busy)}",
            fix="stop the engine using it and deactivate them (lvchange -an) before destroying the pool",
        )
    if engine_users:
        paths, verb = ", ".join(engine_users), "points" if len(engine_users) == 1 else "point"
        raise SpecError(
            f"{paths} still {verb} at {target} ({commands.dm_name(spec.vg, spec.pool)})",
            fix=f"reconfigure or stop the engine, remove the pool from {paths}, then destroy",
        )
    ours = {pool.bare_name, f"{pool.bare_name}_tdata", f"{pool.bare_name}_tmeta"}
    ours |= {lv.bare_name for lv in vg.thin_volumes(pool.bare_name)}
    parts = (f"{pool.bare_name}_tdata_", f"{pool.bare_name}_tmeta_")  # a RAID part's images and rmeta
    ours |= {lv.bare_name for lv in vg.lvs if lv.hidden and lv.bare_name.startswith(parts)}
    others = [lv.bare_name for lv in vg.lvs if lv.bare_name not in ours and not lv.is_spare]
    pool_target = Target(vg=spec.vg, lv=spec.pool)
    actions = [
        Action(
            "destroy",
            ActionKind.THIN_POOL,
            pool_target,
            "remove the pool and every thin volume in it",
            commands.lvremove(spec.vg, spec.pool),
        )
    ]
    if not others:
        actions.append(
            Action(
                "destroy",
                ActionKind.VOLUME_GROUP,
                Target(vg=spec.vg),
                "it held only this pool",
                commands.vgremove(spec.vg),
            )
        )
        actions += [
            Action("destroy", ActionKind.PHYSICAL_VOLUME, Target(path=pv), "clear the lvm label", commands.pvremove(pv))
            for pv in vg.pv_names
        ]
        recovery_key = crypt.default_key_file(spec.vg)  # where a disk the TPM2 opens had its key
        actions += _encryption_removed(vg.pv_names, observed.crypt, erase=erase_encryption, recovery_key=recovery_key)
    profile = commands.profile_path(spec.profile_name)
    actions.append(
        Action(
            "destroy",
            ActionKind.LVM_PROFILE,
            Target(name=spec.profile_name),
            "the pool's autoextend policy",
            path=profile,
        )
    )
    reasons = {"volume group": f"kept: it also holds {', '.join(others)}"} if others else {}
    return Plan(
        vg=spec.vg,
        pool=spec.pool,
        actions=tuple(actions),
        layout=None,
        reasons=reasons,
        spec=spec,
        fingerprint=observed.fingerprint(),
    )


def _encryption_removed(
    pv_names: tuple[str, ...], state: CryptState, *, erase: bool, recovery_key: str
) -> list[Action]:
    """Each of thinpool's LUKS mappings under the VG closed and its crypttab line removed; with ``erase``, its
    header's key slots wiped (the data can never be opened again) with the header's copy apply kept."""
    mapped = crypt.by_mapping(crypt.our_entries(state.crypttab))
    ours = [pv for pv in pv_names if pv in mapped]
    if not ours:
        return []
    actions = []
    for pv in ours:
        entry, disk = mapped[pv], state.parents.get(pv, "")
        why = "the VG on it is gone" + ("" if erase else "; the LUKS header stays (--erase-encryption wipes it)")
        actions.append(Action("destroy", ActionKind.LUKS_MAPPING, Target(name=entry.name), why,
                              programs.luks_close(entry.name)))  # fmt: skip
        if erase and disk:
            why = "--erase-encryption: every key slot wiped; no key opens this data again"
            actions.append(Action("destroy", ActionKind.LUKS_HEADER, Target(path=disk), why, programs.luks_erase(disk)))
            backup = crypt.header_backup(entry.key_file or recovery_key, crypt.uuid_in(entry))
            why = "the header's copy would open the data again with the key"
            actions.append(Action("destroy", ActionKind.LUKS_HEADER_BACKUP, Target(path=backup), why, path=backup))
    kept = crypt.without_entries(state.crypttab, {mapped[pv].name for pv in ours})
    why = "no boot opens these disks any more"
    actions.append(Action("write", ActionKind.CRYPTTAB, Target(path=crypt.CRYPTTAB), why, path=crypt.CRYPTTAB,
                          content=kept, expect=expect_of(state.crypttab or "")))  # fmt: skip
    return actions


def _mirrored_metadata(vg: VolumeGroup, pool: str) -> bool:
    tmeta = vg.lv(f"{pool}_tmeta")
    return tmeta is not None and tmeta.segtype == "raid1"


def _metadata_kept(now: int, wanted: int, extent: int) -> str:
    """raid1 metadata grows each image on a disk the other does not use: one new disk cannot take both."""
    return (
        f"the raid1 metadata stays {format_size(now * extent)} ({format_size(wanted * extent)} would suit the grown "
        "pool): each of its copies grows on a disk of its own, and one new disk cannot hold both; grow with two "
        "disks, or watch doctor's metadata findings"
    )


def _grow_laid_out(
    spec: PoolSpec, geometry: planner.Geometry, tdata: LogicalVolume, data_now: int, growth: int, chunk: int
) -> layouts.Growth | None:
    """RAID or striped data grows onto new disks only, in the number its layout needs (None: linear data)."""
    if tdata.segtype not in ("raid1", "raid10", "striped") or (tdata.segtype == "striped" and tdata.stripes < 2):
        return None
    new = dict(geometry.pv_free)
    new_free = {pv: new[pv] for pv in geometry.new_devices if pv in new}
    extent = geometry.extent_size
    reserve = 2 * growth + 1 if growth else 0  # metadata (each image) and spare growth may land on them

    def step_of(data: int) -> int:
        return sizing.autoextend_step(data, spec.autoextend.percent) if spec.autoextend.enabled else 0

    align = sizing.alignment_extents(extent, chunk)
    return layouts.grow_data(tdata.segtype, tdata.stripes, new_free, data_now, reserve, step_of, align, extent)


def plan_grow(spec: PoolSpec, observed: Observed) -> Plan:
    """Add ``spec.devices`` to the pool's VG and grow data (and metadata) into the new room."""
    vg, pool = _existing_pool(spec, observed)
    geometry = planner.geometry_for(spec, observed, vg)  # safety checks, wipe, extents the devices add
    new_devices = geometry.new_devices
    extent, total, free = vg.extent_size, geometry.total_extents, geometry.free_extents
    max_data = max(spec.max_pool_size or 0, total * extent)
    if sizing.max_addressable_data(pool.chunk_size) < max_data:
        raise SpecError(
            f"{spec.vg}/{spec.pool}'s {format_size(pool.chunk_size)} chunks can address at most "
            f"{format_size(sizing.max_addressable_data(pool.chunk_size))}, less than the grown VG",
            fix="put the new devices into a second pool, or set --max-pool-size to what it may really reach",
        )
    data_now, metadata_now = pool.size // extent, pool.metadata_size // extent
    wanted = sizing.choose_metadata(None, max_data, pool.chunk_size, spec.workload).size
    metadata = max(metadata_now, min(ceil_div(wanted, extent), sizing.METADATA_MAX // extent))
    growth = metadata - metadata_now
    warnings = []
    if growth > 0 and _mirrored_metadata(vg, spec.pool) and len(new_devices) < 2:
        warnings.append(_metadata_kept(metadata_now, metadata, extent))
        metadata, growth = metadata_now, 0
    room = free - 2 * growth  # the spare grows with the metadata
    tdata = vg.lv(f"{spec.pool}_tdata")
    laid_out = _grow_laid_out(spec, geometry, tdata, data_now, growth, pool.chunk_size) if tdata else None
    if laid_out is not None:
        grown, data_pvs, redundancy = data_now + laid_out.data, laid_out.pvs, laid_out.used - laid_out.data
    else:
        grown = sizing.largest_fitting_data(room + data_now, metadata, extent, pool.chunk_size, spec.autoextend)
        data_pvs, redundancy = (), 0
    if grown <= data_now and not new_devices:
        return Plan(
            vg=spec.vg,
            pool=spec.pool,
            actions=(),
            layout=None,
            reasons={"pool": "no room to grow into"},
            spec=spec,
            fingerprint=observed.fingerprint(),
        )
    target = Target(vg=spec.vg, lv=spec.pool)
    actions = list(planner.device_actions(spec, geometry, observed))
    if growth > 0:
        argv = commands.lvextend_metadata(spec.vg, spec.pool, to_size=metadata * extent)
        actions.append(
            Action(
                "change",
                ActionKind.POOL_METADATA,
                target,
                f"grow metadata by {growth} extents for the larger pool (the spare follows)",
                argv,
            )
        )
    if grown > data_now:
        argv = commands.lvextend_data(spec.vg, spec.pool, to_extents=grown, pvs=data_pvs)
        where = f" ({tdata.segtype if tdata else 'data'} onto {' and '.join(data_pvs)})" if data_pvs else ""
        actions.append(
            Action(
                "change",
                ActionKind.POOL_DATA,
                target,
                f"grow data by {grown - data_now} extents{where}, keeping one autoextend step free",
                argv,
            )
        )
    layout = PlanLayout(
        extent_size=extent,
        chunk_size=pool.chunk_size,
        free_extents=free,
        data_extents=grown,
        metadata_extents=metadata,
        spare_extents=growth,
        headroom_extents=0,
        left_extents=room - grown + data_now - redundancy,
        redundancy_extents=redundancy,
    )
    return Plan(
        vg=spec.vg,
        pool=spec.pool,
        actions=tuple(actions),
        layout=layout,
        reasons={},
        warnings=tuple(warnings),
        spec=replace(spec, devices=tuple(vg.pv_names) + (geometry.encrypted or new_devices)),
        fingerprint=observed.fingerprint(),
    )
