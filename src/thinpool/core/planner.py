"""Pure planning: (spec, observed state) -> Plan. No I/O; every refusal is a SpecError."""

from __future__ import annotations

from dataclasses import dataclass, replace

from thinpool.core import boot_check, crypt, names, recovery, safety, sizing
from thinpool.core import layouts as layouts_
from thinpool.core.lvm import commands
from thinpool.core.model import CryptState, Device, LogicalVolume, Observed, VolumeGroup
from thinpool.core.plan import Action, ActionKind, Plan, PlanLayout, Target, expect_of
from thinpool.core.programs import argv as programs
from thinpool.core.spec import PoolSpec
from thinpool.core.units import Percent, ceil_div, format_size, lvm_size_arg
from thinpool.errors import DoesNotFit, SpecError


@dataclass(frozen=True)
class Geometry:
    """The VG the pool will live in, as it will be once new devices are added."""

    extent_size: int
    total_extents: int
    free_extents: int
    spare_extents: int
    new_devices: tuple[str, ...]
    vg_exists: bool
    orphan_pvs: tuple[str, ...] = ()
    to_wipe: tuple[str, ...] = ()
    to_relabel: tuple[str, ...] = ()
    to_encrypt: tuple[str, ...] = ()  # devices to get a LUKS header, then be opened (their PVs: new_devices)
    encrypted: tuple[str, ...] = ()  # every new device under LUKS (each gets its crypttab line)
    pv_free: tuple[tuple[str, int], ...] = ()  # each PV the VG will have, with its free extents

    @property
    def pv_count(self) -> int:
        return len(self.pv_free)


MAX_EXTENTS = 2**32 - 1  # lvm's extent counts (pe_count, extent_count) are 32-bit


def plan(spec: PoolSpec, observed: Observed) -> Plan:
    """The pool's actions (an engine's are added by ``thinpool.app.planning.plan_host``)."""
    spec.validate()
    vg = observed.vgs.get(spec.vg)
    if vg is not None and spec.encryption is not None:
        entries = crypt.our_entries(observed.crypt.crypttab)
        crypt.check_vg_encrypted(spec.vg, vg.pv_names, entries)
        if spec.encryption.tpm2:
            crypt.check_tpm2_on_keyed_disks(vg.pv_names, entries)
    pool_plan = _plan_pool(spec, observed)
    stray = _stray_mappings(spec, observed)
    return replace(pool_plan, actions=stray + pool_plan.actions + boot_check_action(spec, observed))


def boot_check_action(spec: PoolSpec, observed: Observed) -> tuple[Action, ...]:
    """lvmlocal.conf as ``spec.boot_check`` wants it (nothing when it was not observed, or already is)."""
    if observed.lvm_local is None:
        return ()
    wanted = boot_check.wanted_text(observed.lvm_local, spec.boot_check)
    if wanted is None:
        return ()
    current = observed.lvm_local.text
    return (
        Action(
            "write",
            ActionKind.LVM_CONFIG,
            Target(path=boot_check.LVMLOCAL),
            boot_check.reason(spec.boot_check),
            path=boot_check.LVMLOCAL,
            content=wanted,
            expect=expect_of(current),
        ),
    )


def _stray_mappings(spec: PoolSpec, observed: Observed) -> tuple[Action, ...]:
    vg = observed.vgs.get(spec.vg)
    if vg is None:
        return ()
    reason = "an interrupted lvm command left this mapping of one of the VG's volumes half-made; nothing has it open"
    return tuple(
        Action(
            "destroy",
            ActionKind.STRAY_DM_MAPPING,
            Target(name=device.name),
            reason,
            commands.dmsetup_remove(device.name),
        )
        for device in recovery.stray_dm_devices(vg, observed.dm_devices)
    )


def _plan_pool(spec: PoolSpec, observed: Observed) -> Plan:
    vg = observed.vgs.get(spec.vg)
    if vg is not None:
        leftovers = recovery.find_leftovers(vg, spec.pool)
        if leftovers.tagged or leftovers.temporary:
            return _plan_over_leftovers(spec, observed, vg, leftovers)
        if vg.lv(spec.pool) is not None:
            return _converge_existing(spec, observed, vg)
    return _plan_new_pool(spec, observed, vg)


def _plan_new_pool(
    spec: PoolSpec, observed: Observed, vg: VolumeGroup | None, cleanup: tuple[Action, ...] = ()
) -> Plan:
    geometry = geometry_for(spec, observed, vg)
    sized = size_pool(spec, geometry)
    pool = _pool_actions(spec, observed, sized)
    actions = cleanup + device_actions(spec, geometry, observed) + pool
    return Plan(
        vg=spec.vg,
        pool=spec.pool,
        actions=actions,
        layout=PlanLayout.of(sized.layout),
        reasons=sized.reasons,
        warnings=tuple(sized.warnings),
        spec=spec,
        fingerprint=observed.fingerprint(),
        candidates=sized.candidates,
    )


def _plan_over_leftovers(spec: PoolSpec, observed: Observed, vg: VolumeGroup, leftovers: recovery.Leftovers) -> Plan:
    """Remove what an interrupted lvcreate left, then plan the pool as if it never ran."""
    removable = leftovers.tagged + leftovers.temporary
    trial = _plan_new_pool(spec, observed, recovery.without(vg, removable))
    assert trial.layout is not None
    metadata_size = trial.layout.metadata_size
    confirmed = leftovers.tagged + tuple(lv for lv in leftovers.temporary if lv.size == metadata_size)
    if not confirmed:
        return _plan_new_pool(spec, observed, vg)
    cleanup = tuple(
        Action(
            "destroy",
            ActionKind.INTERRUPTED_LEFTOVER,
            Target(vg=spec.vg, lv=lv.name),
            f"left by an interrupted lvcreate of this pool (linear, not open, {format_size(lv.size)})",
            commands.lvremove(spec.vg, lv.name),
        )
        for lv in confirmed
    )
    return _plan_new_pool(spec, observed, recovery.without(vg, confirmed), cleanup)


def pv_path(spec: PoolSpec, device: str) -> str:
    """Where the PV of ``device`` goes: the device, or with --encrypt its LUKS mapping."""
    return crypt.pv_path(device) if spec.encryption else device


def _usable(spec: PoolSpec, observed: Observed, device: str) -> Device:
    """The device lvm will see as the PV: with --encrypt the opened mapping (as observed, or as planned)."""
    raw = observed.devices[device]
    if spec.encryption is None:
        return raw
    return observed.devices.get(crypt.pv_path(device)) or replace(raw, size=crypt.mapping_size(raw.size))


def _check_new_device(spec: PoolSpec, observed: Observed, device: str) -> bool:
    """Refuse what must not be touched; True when the device is to be encrypted (formatted, then opened)."""
    raw = observed.devices.get(device)
    if spec.encryption is not None and crypt.is_luks(raw) and not spec.wipe:
        crypt.check_existing(device, observed.dm_devices, observed.crypt, spec.encryption.key_file)
        return False
    safety.check_device(raw, device, observed.pvs.get(device), wipe=spec.wipe)
    return spec.encryption is not None


def geometry_for(spec: PoolSpec, observed: Observed, vg: VolumeGroup | None) -> Geometry:
    in_vg = set(vg.pv_names) if vg else set()
    new_raw = tuple(path for path in spec.devices if pv_path(spec, path) not in in_vg)
    to_encrypt = tuple(path for path in new_raw if _check_new_device(spec, observed, path))
    new_devices = tuple(pv_path(spec, path) for path in new_raw)
    if vg is None and (spec.vg in observed.taken_dev_names or spec.vg in names.DEV_FOLDERS):
        raise SpecError(
            f"lvm refuses volume group name {spec.vg!r}: /dev/{spec.vg} already exists",
            fix="pick another --vg",
        )
    if vg is None and not new_devices:
        raise SpecError(
            f"volume group {spec.vg!r} does not exist and no device was given",
            fix=f"name the devices to build it from, e.g. thinpool plan /dev/sdb --vg {spec.vg}",
        )
    extent_size = vg.extent_size if vg else spec.extent_size
    usable = {path: _usable(spec, observed, path) for path in new_raw}
    added = sum(device.extents_as_pv(extent_size) for device in usable.values())
    for path, device in usable.items():
        if device.extents_as_pv(extent_size) == 0:
            raise SpecError(
                f"{path} ({format_size(observed.devices[path].size)}) is too small to hold one extent",
                fix="use a larger device",
            )
    counts = {path: device.extents_as_pv(extent_size) for path, device in usable.items()}
    _check_extent_counts(spec, counts, (vg.extent_count if vg else 0) + added, extent_size)
    return Geometry(
        extent_size=extent_size,
        total_extents=(vg.extent_count if vg else 0) + added,
        free_extents=(vg.free_count if vg else 0) + added,
        spare_extents=vg.spare_extents if vg else 0,
        new_devices=new_devices,
        vg_exists=vg is not None,
        orphan_pvs=tuple(
            path for path in new_devices if path in observed.pvs and not observed.pvs[path].marked_used_without_vg
        ),
        to_relabel=tuple(
            path for path in new_devices if path in observed.pvs and observed.pvs[path].left_by_interrupted_vgcreate
        ),
        to_wipe=tuple(
            path
            for path in new_raw
            if path not in observed.pvs
            and (observed.devices[path].signatures or observed.devices[path].partitions)
            and (spec.encryption is None or path in to_encrypt)  # a LUKS header in use is never wiped
        ),
        to_encrypt=to_encrypt,
        encrypted=new_raw if spec.encryption else (),
        pv_free=_pv_free(observed, vg) + tuple((pv_path(spec, path), count) for path, count in counts.items()),
    )


def _pv_free(observed: Observed, vg: VolumeGroup | None) -> tuple[tuple[str, int], ...]:
    if vg is None:
        return ()
    found = (observed.pvs.get(name) for name in vg.pv_names)
    return tuple((pv.name, pv.pe_count - pv.pe_alloc_count) for pv in found if pv is not None)


def _check_extent_counts(spec: PoolSpec, counts: dict[str, int], total: int, extent_size: int) -> None:
    """lvm counts a PV's and a VG's extents in 32 bits: more is refused by pvcreate and vgcreate."""
    largest = max([*counts.values(), total])
    if largest <= MAX_EXTENTS:
        return
    where = next((path for path, count in counts.items() if count == largest), f"volume group {spec.vg}")
    enough = next(extent_size << shift for shift in range(1, 64) if largest >> shift < MAX_EXTENTS)
    raise SpecError(
        f"{where} would hold {largest} extents of {format_size(extent_size)}, more than lvm's {MAX_EXTENTS}",
        fix=f"pick a larger --extent-size, e.g. {lvm_size_arg(enough)}",
    )


@dataclass(frozen=True)
class Sized:
    """A new pool's sizes, with why, and (for a layout that is not all linear) where each part goes."""

    layout: sizing.Layout
    reasons: dict[str, str]
    candidates: dict[str, int]
    warnings: list[str]
    layouts: layouts_.Layouts
    placement: layouts_.Placement | None = None


def layouts_for(spec: PoolSpec, geometry: Geometry) -> layouts_.Layouts:
    return layouts_.choose_layouts(
        spec.layout, spec.metadata_layout, spec.stripes, spec.stripe_size, geometry.pv_count or 1
    )


def size_pool(spec: PoolSpec, geometry: Geometry) -> Sized:
    """Chunk, metadata, spare, data and headroom for ``spec`` in ``geometry``."""
    layouts = layouts_for(spec, geometry)
    if not layouts.all_linear:
        return _size_laid_out(spec, geometry, layouts)
    extent = geometry.extent_size
    max_data = _max_data(spec, geometry)
    chunk = sizing.choose_chunk(spec.chunk_size, max_data, spec.engine, spec.workload)
    metadata = sizing.choose_metadata(spec.metadata_size, max_data, chunk.size, spec.workload)
    metadata_extents = sizing.metadata_extents(metadata, extent)
    spare = sizing.spare_needed(metadata_extents, geometry.spare_extents)
    room = geometry.free_extents - metadata_extents - spare
    requested_headroom = _requested_headroom(spec, geometry)
    data = _data_extents(spec, geometry, room, metadata_extents, chunk.size, requested_headroom)
    headroom = max(
        requested_headroom,
        sizing.minimum_headroom(data, metadata_extents, extent, chunk.size, spec.autoextend),
    )
    layout = sizing.Layout(
        extent_size=extent,
        chunk_size=chunk.size,
        data_extents=data,
        metadata_extents=metadata_extents,
        spare_extents=spare,
        headroom_extents=headroom,
        free_extents=geometry.free_extents,
    )
    if not layout.fits or data <= 0:
        raise _no_fit(layout, room, metadata_extents, chunk.size, spec)
    return _sized(spec, geometry, layout, (chunk, metadata), requested_headroom, max_data, layouts)


def _max_data(spec: PoolSpec, geometry: Geometry) -> int:
    return max(spec.max_pool_size or 0, geometry.total_extents * geometry.extent_size)


def _size_laid_out(spec: PoolSpec, geometry: Geometry, layouts: layouts_.Layouts) -> Sized:
    """As ``size_pool``, for RAID or striped parts: each placed on the PVs lvm will be told to use."""
    extent, max_data = geometry.extent_size, _max_data(spec, geometry)
    if layouts.data_images > 1 and spec.max_pool_size is None:  # two copies: the pool reaches half the VG
        max_data //= layouts.data_images
    chunk = _whole_stripes_chunk(spec, layouts, max_data)
    metadata = sizing.choose_metadata(spec.metadata_size, max_data, chunk.size, spec.workload)
    metadata_extents = sizing.metadata_extents(metadata, extent)
    spare = sizing.spare_needed(metadata_extents, geometry.spare_extents)
    align = layouts_.data_alignment(layouts, sizing.alignment_extents(extent, chunk.size))
    requested_headroom = _requested_headroom(spec, geometry)
    free = dict(geometry.pv_free)

    def parts_for(data: int) -> layouts_.Parts:
        if not spec.autoextend.enabled:
            return layouts_.Parts(data, metadata_extents, spare, 0, 0)
        step = sizing.autoextend_step(data, spec.autoextend.percent)
        growth = sizing.metadata_growth_on_step(data, metadata_extents, step, extent, chunk.size)
        return layouts_.Parts(data, metadata_extents, spare, step, growth)

    best = layouts_.largest_data(layouts, parts_for, free, extent, align, reserve=requested_headroom)
    data = best if spec.data_size is None else _requested_data(spec, geometry, chunk.size, align)
    parts = parts_for(data)
    placement = layouts_.place(layouts, parts, free, extent) if data > 0 else None
    if placement is None:
        raise layouts_.no_room(layouts, parts, free, best, extent)
    footprint = sizing.step_extents(parts.step, parts.metadata_growth, layouts.data_images, layouts.metadata_images)
    headroom = max(requested_headroom, footprint)
    layout = sizing.Layout(
        extent_size=extent,
        chunk_size=chunk.size,
        data_extents=data,
        metadata_extents=metadata_extents,
        spare_extents=spare,
        headroom_extents=headroom,
        free_extents=geometry.free_extents,
        redundancy_extents=placement.redundancy_extents,
    )
    if not layout.fits:
        raise layouts_.no_room(layouts, parts, free, best, extent)
    return _sized(spec, geometry, layout, (chunk, metadata), requested_headroom, max_data, layouts, placement)


def _sized(
    spec: PoolSpec,
    geometry: Geometry,
    layout: sizing.Layout,
    choices: tuple[sizing.ChunkChoice, sizing.MetadataChoice],
    requested_headroom: int,
    max_data: int,
    layouts: layouts_.Layouts,
    placement: layouts_.Placement | None = None,
) -> Sized:
    """The sizes with the reason for each, and the warnings they call for."""
    (chunk, metadata), extent = choices, layout.extent_size
    reasons = {
        "data": _data_reason(spec, layout.data_extents, extent),
        "chunk": chunk.reason,
        "metadata": f"{format_size(layout.metadata_extents * extent)} ({metadata.term}): {metadata.reason}",
        "spare": _spare_reason(layout.spare_extents, geometry.spare_extents, layout.metadata_extents),
        "headroom": _headroom_reason(spec, layout.data_extents, layout.headroom_extents, requested_headroom),
        "layout": layouts.reason,
    }
    warnings = _warnings(spec, metadata, max_data, chunk.size)
    if placement is not None:
        reasons["placement"] = _placement_reason(placement)
        warnings += _layout_warnings(layouts)
    return Sized(layout, reasons, metadata.candidates, warnings, layouts, placement)


def _whole_stripes_chunk(spec: PoolSpec, layouts: layouts_.Layouts, max_data: int) -> sizing.ChunkChoice:
    chunk = sizing.choose_chunk(spec.chunk_size, max_data, spec.engine, spec.workload)
    size = layouts_.check_chunk(layouts, chunk.size, spec.chunk_size is not None)
    if size == chunk.size:
        return chunk
    return sizing.ChunkChoice(size, f"raised to the {format_size(size)} stripe: a chunk is whole stripes")


def _requested_data(spec: PoolSpec, geometry: Geometry, chunk: int, align: int) -> int:
    """--data-size in extents, rounded up to whole chunks and stripes (whether it fits is placement's to say)."""
    data = _data_extents(spec, geometry, geometry.free_extents, 0, chunk, 0)
    return ceil_div(data, align) * align


def _placement_reason(placement: layouts_.Placement) -> str:
    def named(pvs: tuple[str, ...]) -> str:
        return " and ".join(pvs) if pvs else "any disk (lvm places it)"

    return (
        f"metadata on {named(placement.metadata_pvs)}, data on {named(placement.data_pvs)}, spare on "
        f"{named(placement.spare_pvs)}; {placement.redundancy_extents} extents hold the second copies and "
        "the RAID metadata subvolumes"
    )


def _layout_warnings(layouts: layouts_.Layouts) -> list[str]:
    if layouts.data_images > 1:
        return []
    return [
        f"data is {layouts.data}: one disk's death loses every thin volume's data on it "
        "(--layout raid1 keeps two copies)"
    ]


def _requested_headroom(spec: PoolSpec, geometry: Geometry) -> int:
    if spec.headroom is None:
        return 0
    if isinstance(spec.headroom, Percent):
        return spec.headroom.of_extents(geometry.total_extents)
    return ceil_div(spec.headroom, geometry.extent_size)


def _data_extents(
    spec: PoolSpec, geometry: Geometry, room: int, metadata_extents: int, chunk: int, requested_headroom: int
) -> int:
    extent = geometry.extent_size
    align = sizing.alignment_extents(extent, chunk)
    wanted = spec.data_size
    if wanted is None:
        fitting = sizing.largest_fitting_data(room, metadata_extents, extent, chunk, spec.autoextend)
        if requested_headroom and fitting + requested_headroom > room:
            fitting = max(0, room - requested_headroom) // align * align
        return fitting
    if isinstance(wanted, Percent):
        base = geometry.total_extents if wanted.of == "VG" else geometry.free_extents
        return wanted.of_extents(base) // align * align
    return ceil_div(ceil_div(wanted, extent), align) * align


def _no_fit(layout: sizing.Layout, room: int, metadata_extents: int, chunk: int, spec: PoolSpec) -> DoesNotFit:
    if layout.data_extents <= 0 and spec.data_size is not None:
        align = sizing.alignment_extents(layout.extent_size, chunk)
        return DoesNotFit(
            f"--data-size {spec.data_size} is less than the smallest pool here: data is whole extents and whole "
            f"chunks, {align} extent(s) ({format_size(align * layout.extent_size)}) at the least",
            fix=f"ask for at least {lvm_size_arg(align * layout.extent_size)}, or leave --data-size out",
        )
    if layout.data_extents <= 0:
        return DoesNotFit(
            f"no room for pool data: {layout.free_extents} free extents hold only the metadata "
            f"({metadata_extents}), its spare ({layout.spare_extents}) and the autoextend room",
            fix="add a larger device, or lower --max-thin-devices / --metadata-size",
        )
    error = sizing.explain_shortfall(layout)
    best = sizing.largest_fitting_data(room, metadata_extents, layout.extent_size, chunk, spec.autoextend)
    if best > 0:
        error.fix = (
            f"ask for at most {best} extents ({lvm_size_arg(best * layout.extent_size)}) of data, "
            "add a device, or leave --data-size out to use all that fits"
        )
    return error


def _data_reason(spec: PoolSpec, data: int, extent: int) -> str:
    if spec.data_size is None:
        return "all that fits once metadata, its spare and the autoextend room are counted"
    shown = str(spec.data_size) if isinstance(spec.data_size, Percent) else format_size(spec.data_size)
    return f"--data-size {shown}, rounded to {data} whole extents ({format_size(data * extent)}) and chunks"


def _spare_reason(spare: int, existing: int, metadata: int) -> str:
    if spare == 0:
        return f"the existing spare ({existing} extents) already covers {metadata} extents of metadata"
    return (
        f"lvm adds a hidden pool-metadata spare as large as the metadata: {spare} extents "
        "(the hand recipe forgot it and lvconvert failed)"
    )


def _headroom_reason(spec: PoolSpec, data: int, headroom: int, requested: int) -> str:
    if not spec.autoextend.enabled:
        return "autoextend is off (threshold 100): no room kept for it"
    step = sizing.autoextend_step(data, spec.autoextend.percent)
    text = (
        f"kept free so dmeventd's first autoextend ({spec.autoextend.percent}% = {step} extents at "
        f"{spec.autoextend.threshold}% full, plus metadata and spare growth) can always run"
    )
    if requested and requested == headroom:
        text += "; raised to --headroom"
    return text


def _warnings(spec: PoolSpec, metadata: sizing.MetadataChoice, max_data: int, chunk: int) -> list[str]:
    warnings: list[str] = []
    if metadata.capped:
        larger = sizing.chunk_fitting_metadata_cap(max_data, chunk, spec.workload)
        hint = f"; --chunk-size {lvm_size_arg(larger)} would fit" if larger else ""
        warnings.append(
            f"the metadata model wants {format_size(metadata.candidates[metadata.term])}, above lvm's "
            f"15.81 GiB cap: metadata is capped{hint}"
        )
    workload_need = metadata.candidates["workload"]
    if metadata.term == "requested" and metadata.size < workload_need:
        warnings.append(
            f"--metadata-size {format_size(metadata.size)} is below the {format_size(workload_need)} "
            "the workload model wants: metadata may run out under many snapshots (the pool goes read-only)"
        )
    if not spec.autoextend.enabled:
        warnings.append("autoextend is off: the pool fills up and stops writes unless someone grows it")
    return warnings


def encryption_actions(spec: PoolSpec, geometry: Geometry, observed: Observed) -> list[Action]:
    """With --encrypt: the key file (when missing), each new device's LUKS header and mapping, crypttab."""
    if spec.encryption is None or not geometry.encrypted:
        return []
    key, tpm2, state = spec.encryption.key_file, spec.encryption.tpm2, observed.crypt
    if tpm2:
        crypt.check_tpm2(state)
    actions = []
    if not state.key_present:
        why = f"{crypt.KEY_BYTES} random bytes from the kernel, mode 0400; keep a copy off this host"
        actions.append(Action("create", ActionKind.KEY_FILE, Target(path=key), why, path=key))
    for device in geometry.to_encrypt:
        actions += _luks_actions(device, key, crypt.uuid_of(state, device), tpm2=tpm2)
    reused = [device for device in geometry.encrypted if device not in geometry.to_encrypt]
    actions += [_tpm2_action(device, key) for device in reused if tpm2 and device not in state.tpm2_enrolled]
    return actions + _crypttab_action(geometry.encrypted, key, state, tpm2=tpm2)


def _luks_actions(device: str, key: str, uuid: str, *, tpm2: bool) -> list[Action]:
    name = crypt.mapping_name(device)
    header_why = f"LUKS2, its data {format_size(crypt.LUKS_OFFSET)} in: the PV's size is known before it exists"
    header = programs.luks_format(device, key, uuid=uuid, offset=crypt.LUKS_OFFSET)
    backup = crypt.header_backup(key, uuid)
    backup_why = "the key slots' only other copy: cryptsetup luksHeaderRestore brings back a header overwritten"
    return [
        Action("create", ActionKind.LUKS_HEADER, Target(path=device), header_why, header),
        *([_tpm2_action(device, key)] if tpm2 else []),
        Action("create", ActionKind.LUKS_HEADER_BACKUP, Target(path=backup), backup_why,
               programs.luks_header_backup(device, backup)),
        Action("create", ActionKind.LUKS_MAPPING, Target(name=name), f"the PV goes on /dev/mapper/{name}",
               programs.luks_open(device, key, name)),
    ]  # fmt: skip


def _tpm2_action(device: str, key: str) -> Action:
    why = (
        f"a key slot this machine's TPM2 opens at boot, sealed to PCR {programs.TPM2_PCRS} (the Secure Boot state); "
        f"{key} becomes the recovery key: keep it off this host"
    )
    return Action("create", ActionKind.LUKS_TPM2, Target(path=device), why, programs.tpm2_enroll(device, key))


def _crypttab_action(devices: tuple[str, ...], key: str, state: CryptState, *, tpm2: bool) -> list[Action]:
    lines = {
        crypt.mapping_name(device): crypt.crypttab_line(device, crypt.uuid_of(state, device), key, tpm2=tpm2)
        for device in devices
    }
    merged = crypt.merged_crypttab(state.crypttab, lines)
    if merged is None:
        return []
    if tpm2:
        why = "opened at every boot by the TPM2, before lvm activates the pool; no key file is read at boot"
    else:
        why = "opened at every boot with the key, before lvm activates the pool; a missing key leaves it down"
    expect = expect_of(state.crypttab)
    target = Target(path=crypt.CRYPTTAB)
    return [Action("write", ActionKind.CRYPTTAB, target, why, path=crypt.CRYPTTAB, content=merged, expect=expect)]


def device_actions(spec: PoolSpec, geometry: Geometry, observed: Observed) -> tuple[Action, ...]:
    if not geometry.new_devices:
        return ()
    actions = [
        Action(
            "destroy",
            ActionKind.SIGNATURES,
            Target(path=path),
            "--wipe: erase what wipefs lists on it",
            programs.wipefs_all(path),
        )
        for path in geometry.to_wipe
    ]
    actions += encryption_actions(spec, geometry, observed)
    relabel_reason = "an interrupted vgcreate left it marked used, with no VG ever written to it"
    actions += [
        Action("create", ActionKind.PHYSICAL_VOLUME, Target(path=path), relabel_reason, commands.pvcreate_relabel(path))
        if path in geometry.to_relabel
        else Action(
            "create", ActionKind.PHYSICAL_VOLUME, Target(path=path), "label the device for lvm", commands.pvcreate(path)
        )
        for path in geometry.new_devices
        if path not in geometry.orphan_pvs
    ]
    if geometry.vg_exists:
        argv = commands.vgextend(spec.vg, geometry.new_devices)
        actions.append(Action("change", ActionKind.VOLUME_GROUP, Target(vg=spec.vg), "add the new devices to it", argv))
    else:
        argv = commands.vgcreate(spec.vg, geometry.extent_size, geometry.new_devices)
        reason = f"extents of {format_size(geometry.extent_size)}; the pool is sized in them"
        actions.append(Action("create", ActionKind.VOLUME_GROUP, Target(vg=spec.vg), reason, argv))
    return tuple(actions)


def profile_action(spec: PoolSpec, observed: Observed) -> tuple[Action, ...]:
    content = commands.profile_content(spec.vg, spec.pool, spec.autoextend.threshold, spec.autoextend.percent)
    if observed.profiles.get(spec.profile_name) == content:
        return ()
    reason = (
        f"dmeventd grows the pool by {spec.autoextend.percent}% at {spec.autoextend.threshold}% full"
        if spec.autoextend.enabled
        else "records that autoextend is off (threshold 100)"
    )
    path = commands.profile_path(spec.profile_name)
    target = Target(name=spec.profile_name)
    return (Action("write", ActionKind.LVM_PROFILE, target, reason, path=path, content=content),)


def _pool_actions(spec: PoolSpec, observed: Observed, sized: Sized) -> tuple[Action, ...]:
    layout = sized.layout
    monitor = Action(
        "change",
        ActionKind.MONITORING,
        Target(vg=spec.vg, lv=spec.pool),
        "dmeventd only autoextends a monitored pool",
        commands.lvchange_monitor(spec.vg, spec.pool),
    )
    if sized.placement is not None:
        return (*profile_action(spec, observed), *_laid_out_pool_actions(spec, sized, sized.placement), monitor)
    argv = commands.lvcreate_thin_pool(
        spec.vg,
        spec.pool,
        data_extents=layout.data_extents,
        chunk_size=layout.chunk_size,
        metadata_size=layout.metadata_extents * layout.extent_size,
        zero=spec.zero,
        profile=spec.profile_name,
    )
    create = Action(
        "create",
        ActionKind.THIN_POOL,
        Target(vg=spec.vg, lv=spec.pool),
        "explicit extents, chunk and metadata: what lvm creates is exactly what was planned",
        argv,
    )
    return (*profile_action(spec, observed), create, monitor)


def _laid_out_pool_actions(spec: PoolSpec, sized: Sized, placement: layouts_.Placement) -> tuple[Action, ...]:
    """lvmthin(7)'s recipe for a pool on RAID or stripes: the metadata LV, the data LV, then one converted
    into the pool with the other as its metadata; each pinned to the PVs its extents were counted on."""
    layout, layouts = sized.layout, sized.layouts
    meta_name = commands.pool_metadata_name(spec.pool)
    metadata = commands.lvcreate_pool_part(
        spec.vg,
        meta_name,
        extents=layout.metadata_extents,
        raid1=layouts.metadata == layouts_.MetadataLayout.RAID1,
        pvs=placement.metadata_pvs,
    )
    data = commands.lvcreate_pool_part(
        spec.vg,
        spec.pool,
        extents=layout.data_extents,
        raid1=layouts.data_images > 1,
        stripes=layouts.stripes,
        stripe_size=layouts.stripe_size,
        pvs=placement.data_pvs,
    )
    convert = commands.lvconvert_thin_pool(
        spec.vg,
        spec.pool,
        metadata_lv=meta_name,
        chunk_size=layout.chunk_size,
        zero=spec.zero,
        profile=spec.profile_name,
        spare_pvs=placement.spare_pvs,
    )
    meta_why = f"the pool's metadata, {layouts.metadata}, on {' and '.join(placement.metadata_pvs)}"
    data_where = " and ".join(placement.data_pvs) or "the VG's disks"
    return (
        Action("create", ActionKind.POOL_PART, Target(vg=spec.vg, lv=meta_name), meta_why, metadata),
        Action("create", ActionKind.POOL_PART, Target(vg=spec.vg, lv=spec.pool),
               f"the pool's data, {layouts.describe_data()}, on {data_where}", data),
        Action("create", ActionKind.THIN_POOL, Target(vg=spec.vg, lv=spec.pool),
               f"the data becomes the pool, {meta_name} its metadata; explicit chunk, spare and profile", convert),
    )  # fmt: skip


def _converge_existing(spec: PoolSpec, observed: Observed, vg: VolumeGroup) -> Plan:
    lv = vg.lv(spec.pool)
    assert lv is not None
    _refuse_conflicts(spec, vg, lv)
    actions: list[Action] = list(profile_action(spec, observed))
    target = Target(vg=spec.vg, lv=spec.pool)
    if recovery.needs_reactivation(lv, vg):
        why = f"the pool is not cleanly active (state {lv.attr[4:5] or '?'}): deactivate it and its parts"
        deactivate = commands.lvchange_activate(spec.vg, spec.pool, False)
        actions.append(Action("change", ActionKind.DEACTIVATION, target, why, deactivate))
        if parts := recovery.active_parts(lv, vg):
            names = tuple(part.bare_name for part in parts)
            argv = commands.lvchange_deactivate_parts(spec.vg, names)
            part_why = f"{', '.join(names)} active on its own (the pool's deactivation leaves it): lvm refuses the pool"
            actions.append(Action("change", ActionKind.DEACTIVATION, target, part_why, argv))
        activate = commands.lvchange_activate(spec.vg, spec.pool, True)
        actions.append(Action("change", ActionKind.ACTIVATION, target, "activate the pool again", activate))
    if lv.profile != spec.profile_name:
        argv = commands.lvchange_profile(spec.vg, spec.pool, spec.profile_name)
        actions.append(Action("change", ActionKind.POOL_PROFILE, target, "attach the autoextend policy", argv))
    if lv.seg_monitor != "monitored":
        argv = commands.lvchange_monitor(spec.vg, spec.pool)
        why = "dmeventd only autoextends a monitored pool"
        actions.append(Action("change", ActionKind.MONITORING, target, why, argv))
    layout = PlanLayout(
        extent_size=vg.extent_size,
        chunk_size=lv.chunk_size,
        free_extents=vg.free_count,
        data_extents=lv.size // vg.extent_size,
        metadata_extents=lv.metadata_size // vg.extent_size,
        spare_extents=0,
        headroom_extents=0,
        left_extents=vg.free_count,
    )
    return Plan(
        vg=spec.vg,
        pool=spec.pool,
        actions=tuple(actions),
        layout=layout,
        reasons={"pool": f"{target} exists; only its policy and monitoring are checked"},
        spec=spec,
        fingerprint=observed.fingerprint(),
    )


def _layout_differences(spec: PoolSpec, vg: VolumeGroup) -> list[str]:
    """A layout asked for that the pool does not have: thinpool never converts a pool's parts."""
    found = []
    for role, wanted in (("data", spec.layout), ("metadata", spec.metadata_layout)):
        part = vg.lv(f"{spec.pool}_t{'data' if role == 'data' else 'meta'}")
        if wanted is not None and part is not None and part.segtype and part.segtype != wanted:
            found.append(f"{role} {part.segtype} (wanted {wanted})")
    return found


def _refuse_conflicts(spec: PoolSpec, vg: VolumeGroup, lv: LogicalVolume) -> None:
    target = f"{spec.vg}/{spec.pool}"
    if not lv.is_thin_pool:
        raise SpecError(
            f"{target} exists and is a {lv.segtype or 'non-thin'} volume, not a thin pool",
            fix="pick another --pool name; thinpool never converts or removes an existing volume",
        )
    differences = []
    if spec.chunk_size is not None and spec.chunk_size != lv.chunk_size:
        differences.append(f"chunk {format_size(lv.chunk_size)} (wanted {format_size(spec.chunk_size)})")
    if isinstance(spec.data_size, int) and spec.data_size > lv.size:
        differences.append(f"data {format_size(lv.size)} (wanted {format_size(spec.data_size)})")
    if spec.metadata_size is not None and spec.metadata_size > lv.metadata_size:
        differences.append(f"metadata {format_size(lv.metadata_size)} (wanted {format_size(spec.metadata_size)})")
    differences += _layout_differences(spec, vg)
    new_devices = [path for path in spec.devices if pv_path(spec, path) not in vg.pv_names]
    if new_devices:
        differences.append(f"devices {', '.join(new_devices)} are not in {spec.vg}")
    if differences:
        raise SpecError(
            f"{target} already exists and differs from the spec: " + "; ".join(differences),
            fix="thinpool never recreates a pool: use 'thinpool grow' to add space, or change the spec",
        )
