"""Pure argv builders for the lvm commands thinpool runs. No I/O, no shell strings."""

from __future__ import annotations

from thinpool.core.units import lvm_size_arg

Argv = tuple[str, ...]

REPORT_OPTIONS = ("--reportformat", "json", "--units", "b", "--nosuffix")
PROFILE_DIR = "/etc/lvm/profile"
# Set on the pool at creation, in lvm's first metadata commit: it proves a leftover of an
# interrupted lvcreate is thinpool's own.
MANAGED_TAG = "thinpool.managed"

LV_FIELDS = (
    "lv_name,vg_name,lv_attr,lv_size,lv_metadata_size,chunk_size,data_percent,metadata_percent,"
    "seg_monitor,lv_health_status,lv_profile,pool_lv,origin,segtype,lv_active,lv_tags,lv_uuid,"
    "lv_when_full,lv_kernel_major,lv_kernel_minor,transaction_id,thin_id"
)
VG_FIELDS = "vg_name,vg_uuid,vg_extent_size,vg_extent_count,vg_free_count,vg_seqno,pv_count,lv_count,vg_tags"
PV_FIELDS = "pv_name,vg_name,pv_attr,pv_mda_used_count,pv_size,pe_start,pv_pe_count,pv_pe_alloc_count,dev_size"
# lvm fullreport keeps an LV's own fields and its segments' apart (joined by lv_uuid).
SEG_FIELDS = "lv_uuid,segtype,chunk_size,seg_monitor,transaction_id,thin_id,stripes"
SEG_OWN_FIELDS = tuple(SEG_FIELDS.split(",")[1:])  # the segment's own; lv_uuid joins its rows to the LV's
LV_OWN_FIELDS = ",".join(field for field in LV_FIELDS.split(",") if field not in SEG_OWN_FIELDS)


def pvcreate(device: str) -> Argv:
    return ("pvcreate", device)


def pvcreate_relabel(device: str) -> Argv:
    """Label again a PV that lvm marks used but whose VG was never committed (needs -ff)."""
    return ("pvcreate", "-ff", "-y", device)


def vgcreate(vg: str, extent_size: int, devices: tuple[str, ...]) -> Argv:
    return ("vgcreate", "--physicalextentsize", lvm_size_arg(extent_size), vg, *devices)


def vgextend(vg: str, devices: tuple[str, ...]) -> Argv:
    return ("vgextend", vg, *devices)


def lvcreate_thin_pool(
    vg: str,
    pool: str,
    *,
    data_extents: int,
    chunk_size: int,
    metadata_size: int,
    zero: bool,
    profile: str,
) -> Argv:
    """Explicit extents, chunk and metadata: nothing left to lvm's defaults or %FREE maths."""
    return (
        "lvcreate",
        "--yes",
        "--type",
        "thin-pool",
        "--name",
        pool,
        "--extents",
        str(data_extents),
        "--chunksize",
        lvm_size_arg(chunk_size),
        "--poolmetadatasize",
        lvm_size_arg(metadata_size),
        "--poolmetadataspare",
        "y",
        "--zero",
        "y" if zero else "n",
        "--metadataprofile",
        profile,
        "--addtag",
        MANAGED_TAG,
        vg,
    )


def pool_metadata_name(pool: str) -> str:
    """The metadata LV of a pool made from its parts, until lvconvert makes it POOL_tmeta."""
    return f"{pool}_meta"


def lvcreate_pool_part(
    vg: str,
    name: str,
    *,
    extents: int,
    raid1: bool = False,
    stripes: int = 1,
    stripe_size: int = 0,
    pvs: tuple[str, ...] = (),
) -> Argv:
    """A pool's data or metadata LV before the conversion: linear, raid1 (two images), striped, or both (raid10:
    ``stripes`` mirrored pairs), on ``pvs`` (none: anywhere); tagged, so that one an interrupted run leaves is known
    as thinpool's."""
    layout: Argv = ("--type", "raid1", "--mirrors", "1") if raid1 else ()
    if stripes > 1:
        kind = ("--type", "raid10", "--mirrors", "1") if raid1 else ("--type", "striped")
        layout = (*kind, "--stripes", str(stripes), "--stripesize", lvm_size_arg(stripe_size))
    return (
        "lvcreate", "--yes", *layout, "--extents", str(extents), "--name", name, "--addtag", MANAGED_TAG, vg, *pvs,
    )  # fmt: skip


def lvconvert_thin_pool(
    vg: str,
    pool: str,
    *,
    metadata_lv: str,
    chunk_size: int,
    zero: bool,
    profile: str,
    spare_pvs: tuple[str, ...] = (),
) -> Argv:
    """``pool`` (its data LV) becomes a thin pool with ``metadata_lv`` as its metadata; the spare on ``spare_pvs``."""
    return (
        "lvconvert", "--yes", "--type", "thin-pool", "--poolmetadata", f"{vg}/{metadata_lv}",
        "--chunksize", lvm_size_arg(chunk_size), "--poolmetadataspare", "y", "--zero", "y" if zero else "n",
        "--metadataprofile", profile, f"{vg}/{pool}", *spare_pvs,
    )  # fmt: skip


def lvcreate_thin(vg: str, pool: str, name: str, virtual_size: int) -> Argv:
    """A thin volume of the pool, tagged as thinpool's."""
    return (
        "lvcreate",
        "--yes",
        "--type",
        "thin",
        "--virtualsize",
        lvm_size_arg(virtual_size),
        "--thinpool",
        pool,
        "--name",
        name,
        "--addtag",
        MANAGED_TAG,
        vg,
    )


def lvremove(vg: str, lv: str) -> Argv:
    return ("lvremove", "--yes", f"{vg}/{lv}")


def vgremove(vg: str) -> Argv:
    return ("vgremove", "--yes", vg)


def pvremove(device: str) -> Argv:
    return ("pvremove", "--yes", device)


def lvextend_data(vg: str, pool: str, *, to_extents: int, pvs: tuple[str, ...] = ()) -> Argv:
    """Grow a pool's data to ``to_extents`` (a size, not a step: dmeventd's autoextend may grow it meanwhile),
    on ``pvs`` (none: anywhere)."""
    return ("lvextend", "--yes", "--extents", str(to_extents), f"{vg}/{pool}", *pvs)


def lvextend_metadata(vg: str, pool: str, *, to_size: int) -> Argv:
    """Grow a pool's metadata to ``to_size`` bytes (lvm grows the spare with it)."""
    return ("lvextend", "--yes", "--poolmetadatasize", f"{to_size // 1024}k", f"{vg}/{pool}")


def lvchange_activate(vg: str, pool: str, active: bool) -> Argv:
    return ("lvchange", "--activate", "y" if active else "n", f"{vg}/{pool}")


# thin_check's options for one activation: pass non-fatal errors. Leaked data blocks (what a power cut in the
# middle of a discard, an fstrim, leaves in dm-thin's space map) are one: thin-provisioning-tools 1.x's
# thin_check exits 64 on them, and with lvm's default options ("-q") the pool is refused at every boot.
PAST_NON_FATAL_CHECK = 'global { thin_check_options = [ "-q", "--ignore-non-fatal-errors" ] }'
POOL_CHECK_FAILED = "Check of pool"  # lvm's words when thin_check refuses a pool's metadata


def lvchange_activate_past_non_fatal(vg: str, pool: str) -> Argv:
    """Activate a pool whose metadata thin_check finds only non-fatal errors in (a fatal one still refuses it)."""
    return ("lvchange", "--activate", "y", "--config", PAST_NON_FATAL_CHECK, f"{vg}/{pool}")


def lvchange_deactivate_parts(vg: str, parts: tuple[str, ...]) -> Argv:
    """Deactivate a pool's hidden parts (``POOL_tmeta``, ``POOL_tdata``) on their own: lvm refuses to activate a
    pool while one is active as a component, and deactivating the inactive pool leaves them be."""
    return ("lvchange", "--activate", "n", *(f"{vg}/{part}" for part in parts))


def lvchange_error_when_full(vg: str, pool: str, error: bool) -> Argv:
    """Fail writes at once when the pool is full (y), or queue them for dm-thin's no_space_timeout (n)."""
    return ("lvchange", "--errorwhenfull", "y" if error else "n", f"{vg}/{pool}")


def lvchange_refresh(vg: str, lv: str) -> Argv:
    """Reload ``lv``'s mappings: a RAID whose disk came back takes it again and resyncs it."""
    return ("lvchange", "--refresh", f"{vg}/{lv}")


def lvchange_syncaction_repair(vg: str, lv: str) -> Argv:
    """Scrub a RAID LV: read every region of each image, and rewrite what differs."""
    return ("lvchange", "--syncaction", "repair", f"{vg}/{lv}")


def lvconvert_repair_raid(vg: str, lv: str) -> Argv:
    """Replace a RAID LV's failed image with one allocated on a PV that has room (not one of its others)."""
    return ("lvconvert", "--repair", "--yes", f"{vg}/{lv}")


def vgreduce_removemissing(vg: str) -> Argv:
    """Forget the PVs the VG lists but no longer finds (after their images were rebuilt elsewhere)."""
    return ("vgreduce", "--removemissing", vg)


def lvchange_addtags(vg: str, lv: str, tags: tuple[str, ...]) -> Argv:
    """Add ``tags`` to the LV in one metadata commit (lvm keeps a tag once: adding it again changes nothing)."""
    return ("lvchange", *(word for tag in tags for word in ("--addtag", tag)), f"{vg}/{lv}")


def lvchange_profile(vg: str, pool: str, profile: str) -> Argv:
    return ("lvchange", "--metadataprofile", profile, f"{vg}/{pool}")


def lvchange_monitor(vg: str, pool: str) -> Argv:
    return ("lvchange", "--monitor", "y", f"{vg}/{pool}")


def profile_path(profile: str) -> str:
    return f"{PROFILE_DIR}/{profile}.profile"


def profile_content(vg: str, pool: str, threshold: int, percent: int) -> str:
    return (
        f"# thinpool: autoextend policy of {vg}/{pool}, read by dmeventd.\n"
        "activation {\n"
        f"\tthin_pool_autoextend_threshold = {threshold}\n"
        f"\tthin_pool_autoextend_percent = {percent}\n"
        "}\n"
    )


def lvm_report() -> Argv:
    """Every VG, PV (orphans too) and LV (hidden ones too) in one lvm run: what ``pvs``, ``lvs -a`` and ``vgs``
    report in three (each lvm run scans the devices again; ~0.3 s each under emulation). lvm adds a PV
    segment subreport that cannot be left out: it is asked for one short field."""
    return (
        "lvm",
        "fullreport",
        "-a",
        *REPORT_OPTIONS,
        "--configreport",
        "vg",
        "-o",
        VG_FIELDS,
        "--configreport",
        "pv",
        "-o",
        PV_FIELDS,
        "--configreport",
        "lv",
        "-o",
        LV_OWN_FIELDS,
        "--configreport",
        "seg",
        "-o",
        SEG_FIELDS,
        "--configreport",
        "pvseg",
        "-o",
        "pvseg_start",
    )


def lvs_report(vg: str | None = None) -> Argv:
    return ("lvs", "-a", *REPORT_OPTIONS, "-o", LV_FIELDS, *((vg,) if vg else ()))


STATUS_FIELDS = LV_FIELDS + ",thin_count,devices,copy_percent,vg_extent_size,vg_extent_count,vg_free_count,vg_tags"


def status_report(vg: str) -> Argv:
    """One call for a pool's status: every LV of the VG with the VG's extents and the PVs used."""
    return ("lvs", "-a", *REPORT_OPTIONS, "-o", STATUS_FIELDS, vg)


def lvs_table(vg: str, columns: str) -> Argv:
    """lvm's own text table, for people to read (never parsed)."""
    return ("lvs", "-a", "-o", columns, vg)


def vgs_report(vg: str | None = None) -> Argv:
    return ("vgs", *REPORT_OPTIONS, "-o", VG_FIELDS, *((vg,) if vg else ()))


def dmsetup_info() -> Argv:
    """Every device-mapper device: name, UUID, open count and table state (dmsetup has no JSON report).

    ``attr`` is four characters: L (live table) or -, I (inactive table) or -, s (suspended) or -,
    r or w.
    """
    return ("dmsetup", "info", "-c", "--noheadings", "--separator", ";", "-o", "name,uuid,open,attr")


def dmsetup_status(name: str) -> Argv:
    return ("dmsetup", "status", name)


def dmsetup_message(name: str, message: str) -> Argv:
    """A message to a thin-pool target (sector 0), such as ``reserve_metadata_snap``."""
    return ("dmsetup", "message", name, "0", message)


def thin_pool_devices(vg: str, pool: str) -> tuple[str, str]:
    """Where an active pool's thin-pool target is: ``VG-POOL-tpool`` while thin volumes are active
    (``VG-POOL`` is then a linear layer over it), else ``VG-POOL`` itself."""
    return (dm_name(vg, pool) + "-tpool", dm_name(vg, pool))


def metadata_device(vg: str, pool: str) -> str:
    """The pool's metadata LV as device-mapper maps it (while the pool, or the component, is active)."""
    return "/dev/mapper/" + dm_name(vg, pool + "_tmeta")


def lvchange_component(vg: str, lv: str, active: bool) -> Argv:
    """Activate a pool's hidden component (``POOL_tmeta``) read-only, or deactivate it (lvm >= 2.03).
    lvm asks before activating a component: ``-y`` answers."""
    return ("lvchange", "-y", "-ay" if active else "-an", f"{vg}/{lv}")


def thin_dump(device: str, output: str, *, metadata_snap: bool) -> Argv:
    """The metadata as XML into ``output``; ``metadata_snap``: from the snapshot the kernel holds."""
    return ("thin_dump", *(("--metadata-snap",) if metadata_snap else ()), "-o", output, device)


def thin_check(device: str, *, metadata_snap: bool = False) -> Argv:
    """``metadata_snap``: the snapshot the kernel holds of a live pool's metadata (the full check, no boot)."""
    return ("thin_check", *(("--metadata-snap",) if metadata_snap else ()), device)


def thin_check_version() -> Argv:
    return ("thin_check", "-V")


def lvmconfig_thin_check_options() -> Argv:
    """The options lvm passes thin_check at activation, after lvm.conf, lvmlocal.conf and the defaults."""
    return ("lvmconfig", "--typeconfig", "full", "global/thin_check_options")


def thin_restore(source: str, device: str, *, transaction_id: int, data_blocks: int) -> Argv:
    """Metadata from a thin_dump XML onto ``device``, with lvm's transaction id and the pool's size now.
    Not ``-q``: 1.x then says nothing of why it failed (every failure is exit 64)."""
    return (
        "thin_restore",
        "-i",
        source,
        "-o",
        device,
        "--transaction-id",
        str(transaction_id),
        "--nr-data-blocks",
        str(data_blocks),
    )


def lvconvert_repair(vg: str, pool: str) -> Argv:
    """thin_repair from the pool's metadata into the spare, swapped in; the original stays as POOL_metaN."""
    return ("lvconvert", "-y", "--repair", f"{vg}/{pool}")


def lvconvert_swap_metadata(vg: str, pool: str, lv: str) -> Argv:
    """Exchange the inactive pool's metadata LV with ``lv`` (which then holds the old metadata)."""
    return ("lvconvert", "-y", "--thinpool", f"{vg}/{pool}", "--poolmetadata", f"{vg}/{lv}")


def lvcreate_linear(vg: str, name: str, size: int, *, tag: str) -> Argv:
    return ("lvcreate", "-q", "-y", "-Wn", "-L", lvm_size_arg(size), "-n", name, "--addtag", tag, vg)


def lvrename(vg: str, old: str, new: str) -> Argv:
    return ("lvrename", vg, old, new)


def lvdeltag(vg: str, lv: str, tag: str) -> Argv:
    return ("lvchange", "--deltag", tag, f"{vg}/{lv}")


def vgcfgrestore(vg: str, source: str) -> Argv:
    """lvm's VG metadata from ``source``; ``--force``: the VG holds thin pools (lvm refuses without it)."""
    return ("vgcfgrestore", "--force", "-f", source, vg)


def thin_dump_version() -> Argv:
    return ("thin_dump", "-V")


def vgcfgbackup(vg: str, output: str) -> Argv:
    return ("vgcfgbackup", "-f", output, vg)


def dmsetup_remove(name: str) -> Argv:
    return ("dmsetup", "remove", name)


def dm_name(vg: str, lv: str) -> str:
    """The device-mapper name: every '-' inside the VG and LV names doubled."""
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"
