"""Pure plans for an existing pool's later life: grow it onto new devices, or destroy it."""

from __future__ import annotations

from dataclasses import replace

from thinpool.core import planner, sizing
from thinpool.core.model import LogicalVolume, Observed, VolumeGroup
from thinpool.core.plan import Action, Plan
from thinpool.core.spec import PoolSpec
from thinpool.core.units import ceil_div, format_size
from thinpool.errors import SpecError
from thinpool.lvm import commands

# Engine configuration files that may name a pool; destroy refuses while one does.
ENGINE_CONFIGS = ("/etc/docker/daemon.json", "/etc/containerd/config.toml")


def _existing_pool(spec: PoolSpec, observed: Observed) -> tuple[VolumeGroup, LogicalVolume]:
    vg = observed.vgs.get(spec.vg)
    pool = vg.lv(spec.pool) if vg else None
    if vg is None or pool is None or not pool.is_thin_pool:
        raise SpecError(
            f"there is no thin pool {spec.vg}/{spec.pool}",
            fix="check --vg and --pool (see 'lvs -a'); 'thinpool apply' creates one",
        )
    return vg, pool


def plan_destroy(spec: PoolSpec, observed: Observed, engine_configs: dict[str, str]) -> Plan:
    """Remove the pool; then the VG and its PV labels too when nothing else lives there."""
    vg, pool = _existing_pool(spec, observed)
    target = f"{spec.vg}/{spec.pool}"
    busy = [lv.name for lv in vg.thin_volumes(pool.bare_name) if lv.active]
    if busy:
        raise SpecError(
            f"{target} has active thin volumes: {', '.join(busy)}",
            fix="stop the engine using it and deactivate them (lvchange -an) before destroying the pool",
        )
    dm_name = commands.dm_name(spec.vg, spec.pool)
    for path, text in engine_configs.items():
        if dm_name in text or target in text:
            raise SpecError(
                f"{path} still points at {target} ({dm_name})",
                fix=f"reconfigure or stop the engine, remove the pool from {path}, then destroy",
            )
    ours = {pool.bare_name, f"{pool.bare_name}_tdata", f"{pool.bare_name}_tmeta"}
    ours |= {lv.bare_name for lv in vg.thin_volumes(pool.bare_name)}
    others = [lv.bare_name for lv in vg.lvs if lv.bare_name not in ours and not lv.is_spare]
    actions = [Action("destroy", "thin-pool", target, "remove the pool and every thin volume in it",
                      commands.lvremove(spec.vg, spec.pool))]  # fmt: skip
    if not others:
        actions.append(Action("destroy", "volume-group", spec.vg, "it held only this pool",
                              ("vgremove", "--yes", spec.vg)))  # fmt: skip
        actions += [
            Action("destroy", "physical-volume", pv, "clear the lvm label", ("pvremove", "--yes", pv))
            for pv in vg.pv_names
        ]
    profile = commands.profile_path(spec.profile_name)
    actions.append(Action("destroy", "lvm-profile", spec.profile_name, "the pool's autoextend policy", path=profile))
    reasons = {"volume group": f"kept: it also holds {', '.join(others)}"} if others else {}
    return Plan(vg=spec.vg, pool=spec.pool, actions=tuple(actions), layout={}, reasons=reasons,
                spec=spec.to_dict(), fingerprint=observed.fingerprint())  # fmt: skip


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
    room = free - 2 * growth  # the spare grows with the metadata
    grown = sizing.largest_fitting_data(room + data_now, metadata, extent, pool.chunk_size, spec.autoextend)
    if grown <= data_now and not new_devices:
        return Plan(vg=spec.vg, pool=spec.pool, actions=(), layout={}, reasons={"pool": "no room to grow into"},
                    spec=spec.to_dict(), fingerprint=observed.fingerprint())  # fmt: skip
    target = f"{spec.vg}/{spec.pool}"
    actions = list(planner.device_actions(spec, geometry))
    if growth > 0:
        argv = ("lvextend", "--yes", "--poolmetadatasize", f"+{growth * extent // 1024}k", target)
        actions.append(Action("change", "pool-metadata", target, f"grow metadata by {growth} extents "
                              "for the larger pool (the spare follows)", argv))  # fmt: skip
    if grown > data_now:
        argv = ("lvextend", "--yes", "--extents", f"+{grown - data_now}", target)
        actions.append(Action("change", "pool-data", target, f"grow data by {grown - data_now} extents, "
                              "keeping one autoextend step free", argv))  # fmt: skip
    layout = {"extent_size": extent, "chunk_size": pool.chunk_size, "free_extents": free, "data_extents": grown,
              "metadata_extents": metadata, "spare_extents": growth, "left_extents": room - grown + data_now,
              "headroom_extents": 0, "data_size": grown * extent, "metadata_size": metadata * extent}  # fmt: skip
    return Plan(vg=spec.vg, pool=spec.pool, actions=tuple(actions), layout=layout, reasons={},
                spec=replace(spec, devices=tuple(vg.pv_names) + new_devices).to_dict(),
                fingerprint=observed.fingerprint())  # fmt: skip
