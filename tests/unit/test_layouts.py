"""Layouts over several disks: the choice, lvm's raid metadata size, and placements checked against lvm's rules."""

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thinpool.app import metrics
from thinpool.core import doctor, layouts, lifecycle, owners, planner, sizing
from thinpool.core.health import PoolStatus
from thinpool.core.layouts import DataLayout, Layouts, MetadataLayout, Parts
from thinpool.core.model import LogicalVolume, Observed, PhysicalVolume, virtual_disks
from thinpool.core.plan import Plan
from thinpool.core.spec import PoolSpec
from thinpool.core.units import GiB, KiB, MiB, TiB, ceil_div
from thinpool.errors import DoesNotFit, SpecError

from .builders import codes, disk, empty_vg, laid_out, observed_with_vg, pool_status

EXTENT = 4 * MiB


def test_rmeta_is_one_extent_until_the_bitmap_outgrows_it() -> None:
    assert layouts.rmeta_extents(1, EXTENT) == 1  # lvmthin(7)'s example: an 8 MiB raid1 has 4 MiB rmeta
    assert layouts.rmeta_extents(60 * TiB // EXTENT, EXTENT) == 1
    # 64 TiB in 2 MiB regions: a 4 MiB bitmap plus dm-raid's two 4 KiB superblocks no longer fit one extent
    assert layouts.rmeta_extents(64 * TiB // EXTENT, EXTENT) == 2
    assert layouts.rmeta_extents(64 * TiB // MiB, MiB) == 5  # 1 MiB extents: 4 MiB + 8 KiB takes five


@given(st.integers(1, 2**32 - 1), st.sampled_from([MiB, 4 * MiB, 32 * MiB]))
def test_rmeta_holds_the_superblocks_and_one_bit_per_region(image_extents: int, extent_size: int) -> None:
    extents = layouts.rmeta_extents(image_extents, extent_size)
    regions = image_extents * extent_size // layouts.RAID_REGION_SIZE
    needed = layouts.RAID_SUPERBLOCKS + ceil_div(regions, 8)
    assert (extents - 1) * extent_size < needed <= extents * extent_size


def test_defaults_by_the_number_of_disks() -> None:
    one = layouts.choose_layouts(None, None, None, None, 1)
    assert (one.data, one.metadata, one.all_linear) == (DataLayout.LINEAR, MetadataLayout.LINEAR, True)
    two = layouts.choose_layouts(None, None, None, None, 2)
    assert (two.data, two.metadata) == (DataLayout.LINEAR, MetadataLayout.RAID1)
    assert "the default with 2 disks" in two.reason
    striped = layouts.choose_layouts(DataLayout.STRIPED, None, None, None, 3)
    assert (striped.stripes, striped.stripe_size) == (3, 64 * KiB)


@pytest.mark.parametrize(
    ("args", "pvs", "problem"),
    [
        ((DataLayout.RAID1, None, None, None), 1, "--layout raid1 keeps two copies on two disks"),
        ((None, MetadataLayout.RAID1, None, None), 1, "--metadata-layout raid1 keeps two copies"),
        ((DataLayout.STRIPED, None, None, None), 1, "a disk per stripe, 2 at the least; the volume group will have 1"),
        ((DataLayout.STRIPED, None, 3, None), 2, "with 3 stripes needs a disk per stripe"),
        ((DataLayout.RAID10, None, None, None), 3, "raid10 with 1 stripes needs two disks per stripe, 4 at the least"),
        ((DataLayout.RAID10, None, 3, None), 5, "raid10 with 3 stripes needs two disks per stripe"),
        ((DataLayout.STRIPED, None, None, 96 * KiB), 2, "is not a power of two"),
        ((DataLayout.RAID1, None, 2, None), 2, "--stripes and --stripe-size are for striped or raid10 data"),
    ],
)
def test_layouts_that_cannot_be_are_refused_with_the_fix(
    args: tuple[DataLayout | None, MetadataLayout | None, int | None, int | None], pvs: int, problem: str
) -> None:
    data, metadata, stripes, stripe_size = args
    with pytest.raises(SpecError, match=problem) as error:
        layouts.choose_layouts(data, metadata, stripes, stripe_size, pvs)
    assert error.value.fix


def test_the_chunk_is_whole_stripes() -> None:
    striped = layouts.choose_layouts(DataLayout.STRIPED, None, 2, 256 * KiB, 2)
    assert layouts.check_chunk(striped, 128 * KiB, requested=False) == 256 * KiB
    assert layouts.check_chunk(striped, 512 * KiB, requested=True) == 512 * KiB
    with pytest.raises(SpecError, match="not a multiple of the 256 KiB stripe"):
        layouts.check_chunk(striped, 128 * KiB, requested=True)


LAYOUTS = [
    Layouts(DataLayout.LINEAR, MetadataLayout.RAID1),
    Layouts(DataLayout.RAID1, MetadataLayout.RAID1),
    Layouts(DataLayout.RAID1, MetadataLayout.LINEAR),
    Layouts(DataLayout.STRIPED, MetadataLayout.RAID1, 2, 64 * KiB),
    Layouts(DataLayout.STRIPED, MetadataLayout.LINEAR, 3, 64 * KiB),
    Layouts(DataLayout.RAID10, MetadataLayout.RAID1, 2, 64 * KiB),
]


def _parts(data: int, metadata: int = 30) -> Parts:
    return Parts(data, metadata, metadata, sizing.autoextend_step(data, 20), 0)


def _lvm_rules_hold(chosen: Layouts, parts: Parts, free: dict[str, int], placement: layouts.Placement) -> None:
    """What lvm checks, counted again from the pins alone: images of one LV on distinct PVs, each PV holding what
    is pinned to it with the autoextend step of each image or stripe on it, and the VG holding it all."""
    assert len(set(placement.metadata_pvs)) == len(placement.metadata_pvs) == chosen.metadata_images
    on = dict.fromkeys(free, 0)
    meta_rmeta = layouts.rmeta_extents(parts.metadata, EXTENT) if chosen.metadata_images == 2 else 0
    for pv in placement.metadata_pvs:
        on[pv] += parts.metadata + meta_rmeta
    if chosen.data == DataLayout.RAID1:
        assert len(set(placement.data_pvs)) == 2
        for pv in placement.data_pvs:
            on[pv] += parts.data + parts.step + layouts.rmeta_extents(parts.data + parts.step, EXTENT)
    elif chosen.data == DataLayout.RAID10:  # each of 2 x stripes images: its share of the data and step, its rmeta
        assert len(set(placement.data_pvs)) == 2 * chosen.stripes
        image = ceil_div(parts.data, chosen.stripes) + ceil_div(parts.step, chosen.stripes)
        for pv in placement.data_pvs:
            on[pv] += image + layouts.rmeta_extents(image, EXTENT)
    elif chosen.data == DataLayout.STRIPED:
        assert len(set(placement.data_pvs)) == chosen.stripes
        for pv in placement.data_pvs:
            on[pv] += ceil_div(parts.data, chosen.stripes) + ceil_div(parts.step, chosen.stripes)
    assert all(on[pv] <= free[pv] for pv in free), (on, free)
    if placement.spare_pvs:  # linear: it may span the PVs it is pinned to
        assert sum(free[pv] - on[pv] for pv in placement.spare_pvs) >= parts.spare
        on[placement.spare_pvs[0]] += parts.spare
    anywhere = parts.data + parts.step + parts.spare if chosen.data == DataLayout.LINEAR else 0
    assert sum(on.values()) + anywhere <= sum(free.values())


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(LAYOUTS),
    st.lists(st.integers(100, 200_000), min_size=4, max_size=6),
)
def test_the_most_data_placed_keeps_lvms_rules_and_one_extent_more_does_not_fit(
    chosen: Layouts, sizes: list[int]
) -> None:
    free = {f"/dev/vd{chr(ord('a') + index)}": size for index, size in enumerate(sizes)}
    align = layouts.data_alignment(chosen, 1)
    data = layouts.largest_data(chosen, _parts, free, EXTENT, align)
    if data == 0:
        assert layouts.place(chosen, _parts(align), free, EXTENT) is None
        return
    placement = layouts.place(chosen, _parts(data), free, EXTENT)
    assert placement is not None and data % chosen.stripes == 0
    _lvm_rules_hold(chosen, _parts(data), free, placement)
    assert layouts.place(chosen, _parts(data + align), free, EXTENT) is None


TWO_DISKS = [100 * GiB, 100 * GiB]


def _plan(sizes: list[int], **spec: object) -> Plan:
    observed = virtual_disks(sizes)
    devices = tuple(f"disk{index + 1}" for index in range(len(sizes)))
    return planner.plan(PoolSpec(devices=devices, **spec), observed)  # type: ignore[arg-type]


def test_one_disk_keeps_the_single_lvcreate() -> None:
    plan = _plan([100 * GiB])
    assert [action.kind for action in plan.actions] == ["physical-volume", "volume-group", "lvm-profile",
                                                        "thin-pool", "monitoring"]  # fmt: skip
    assert laid_out(plan).redundancy_extents == 0


def test_two_disks_get_raid1_metadata_made_from_parts_pinned_to_both() -> None:
    plan = _plan(TWO_DISKS)
    kinds = [action.kind for action in plan.actions]
    assert kinds[-4:] == ["pool-part", "pool-part", "thin-pool", "monitoring"]
    meta, data, convert = (action.argv for action in plan.actions[-4:-1])
    layout = laid_out(plan)
    assert meta == ("lvcreate", "--yes", "--type", "raid1", "--mirrors", "1", "--extents",
                    str(layout.metadata_extents), "--name", "thinpool_meta", "--addtag", "thinpool.managed",
                    "docker", "disk1", "disk2")  # fmt: skip
    assert data[-3:] == ("--addtag", "thinpool.managed", "docker")  # linear: lvm places it
    assert convert[:6] == ("lvconvert", "--yes", "--type", "thin-pool", "--poolmetadata", "docker/thinpool_meta")
    assert convert[-1] == "docker/thinpool"
    # the second metadata image, and one rmeta extent for each image
    assert layout.redundancy_extents == layout.metadata_extents + 2
    used = layout.data_extents + layout.metadata_extents + layout.spare_extents + layout.headroom_extents
    assert used + layout.redundancy_extents + layout.left_extents == layout.free_extents
    assert "metadata raid1 (the default with 2 disks" in plan.reasons["layout"]


def test_raid1_data_is_half_the_space_with_its_step_on_both_disks() -> None:
    plan = _plan(TWO_DISKS, layout=DataLayout.RAID1)
    layout = laid_out(plan)
    data = plan.actions[-3].argv
    assert data[:6] == ("lvcreate", "--yes", "--type", "raid1", "--mirrors", "1")
    assert data[-2:] == ("disk1", "disk2")
    per_disk = layout.free_extents // 2
    step = sizing.autoextend_step(layout.data_extents, 20)
    # each disk: a data image with its step, a metadata image, an rmeta each; the spare in what both have left
    image = layout.data_extents + step + 1 + layout.metadata_extents + 1
    assert 2 * image + layout.spare_extents <= 2 * per_disk
    assert plan.actions[-2].argv[-2:] == ("disk1", "disk2")  # the spare spans the two disks' last extents
    assert layout.headroom_extents == 2 * step
    assert not plan.warnings


def test_striped_data_pins_its_stripes_and_keeps_whole_stripes() -> None:
    plan = _plan([100 * GiB] * 3, layout=DataLayout.STRIPED)
    data = plan.actions[-3].argv
    assert data[2:8] == ("--type", "striped", "--stripes", "3", "--stripesize", "64k")
    assert data[-3:] == ("disk1", "disk2", "disk3")
    assert laid_out(plan).data_extents % 3 == 0
    assert any("one disk's death loses" in warning for warning in plan.warnings)


def test_a_data_size_the_layout_cannot_hold_is_refused_with_the_most_it_can() -> None:
    with pytest.raises(DoesNotFit, match="do not fit") as error:
        _plan(TWO_DISKS, layout=DataLayout.RAID1, data_size=150 * GiB)
    assert "ask for at most" in error.value.fix


def test_metadata_layout_linear_on_two_disks_keeps_the_single_lvcreate() -> None:
    plan = _plan(TWO_DISKS, metadata_layout=MetadataLayout.LINEAR)
    assert "thin-pool" in [action.kind for action in plan.actions]
    assert "pool-part" not in [action.kind for action in plan.actions]


def _raid1_pool_observed(segtype: str = "raid1", stripes: int = 2) -> Observed:
    pool = LogicalVolume("thinpool", "docker", "twi-a-t---", 832 * EXTENT, "thin-pool", 48 * MiB, 512 * KiB,
                         active=True)  # fmt: skip
    tdata = LogicalVolume("[thinpool_tdata]", "docker", "rwi-aor---", 832 * EXTENT, segtype, stripes=stripes)
    return observed_with_vg(empty_vg("docker", 1023, free=167, lvs=(pool, tdata)))


def test_grow_of_raid1_data_puts_each_copy_on_a_new_disk_of_its_own() -> None:
    observed = _raid1_pool_observed()
    observed.devices.update({"/dev/sdc": disk("/dev/sdc", 8 * GiB), "/dev/sdd": disk("/dev/sdd", 4 * GiB)})
    plan = lifecycle.plan_grow(PoolSpec(devices=("/dev/sdc", "/dev/sdd")), observed)
    grow = plan.actions[-1].argv
    assert grow[-2:] == ("/dev/sdc", "/dev/sdd")
    layout = laid_out(plan)
    added = layout.data_extents - 832
    smaller = (4 * GiB - MiB) // EXTENT  # each copy grows within the smaller new disk, with its step and rmeta
    assert added > 0 and added + sizing.autoextend_step(layout.data_extents, 20) <= smaller
    assert layout.redundancy_extents == added  # the second copy


def test_grow_of_raid1_data_onto_one_disk_is_refused_with_the_reason() -> None:
    observed = _raid1_pool_observed()
    observed.devices["/dev/sdc"] = disk("/dev/sdc", 8 * GiB)
    with pytest.raises(SpecError, match="grows by 2 disks at a time") as error:
        lifecycle.plan_grow(PoolSpec(devices=("/dev/sdc",)), observed)
    assert "name 2 new devices" in error.value.fix


def test_grow_of_striped_data_keeps_its_stripes_on_as_many_new_disks() -> None:
    observed = _raid1_pool_observed("striped", 3)
    observed.devices.update({f"/dev/sd{name}": disk(f"/dev/sd{name}", 4 * GiB) for name in "cde"})
    plan = lifecycle.plan_grow(PoolSpec(devices=("/dev/sdc", "/dev/sdd", "/dev/sde")), observed)
    assert plan.actions[-1].argv[-3:] == ("/dev/sdc", "/dev/sdd", "/dev/sde")
    assert (laid_out(plan).data_extents - 832) % 3 == 0 and laid_out(plan).redundancy_extents == 0


def _two_pv_vg(lvs: tuple[LogicalVolume, ...]) -> Observed:
    """docker on /dev/sdb and /dev/sdc, 25,598 extents each, with ``lvs`` taking 6,000 of each."""
    vg = replace(empty_vg("docker", 2 * 25598, free=2 * 19598, lvs=lvs), pv_names=("/dev/sdb", "/dev/sdc"))
    pvs = {name: PhysicalVolume(name, "docker", 25598 * EXTENT, MiB, 25598, 6000, 100 * GiB) for name in vg.pv_names}
    return Observed(pvs=pvs, vgs={"docker": vg})


def test_parts_an_interrupted_apply_left_are_removed_before_the_pool_is_made_again() -> None:
    """Killed after the metadata LV (or after the data LV too): both are tagged thinpool's, unused, and of a
    layout thinpool makes, so the next apply removes them first and makes the pool from its parts again."""
    observed = virtual_disks(TWO_DISKS)
    plan = planner.plan(PoolSpec(devices=("disk1", "disk2"), layout=DataLayout.RAID1), observed)
    meta = LogicalVolume("thinpool_meta", "docker", "rwi-a-r---", 49 * EXTENT, "raid1", tags=("thinpool.managed",))
    data = LogicalVolume("thinpool", "docker", "rwi-a-r---", 4202 * EXTENT, "raid1", tags=("thinpool.managed",))
    for left in ((meta,), (meta, data)):
        again = planner.plan(PoolSpec(devices=(), layout=DataLayout.RAID1), _two_pv_vg(left))
        removed = [action.target.lv for action in again.actions if action.kind == "interrupted-leftover"]
        assert sorted(removed) == sorted(lv.name for lv in left)
        assert [action.kind for action in again.actions][-4:] == [action.kind for action in plan.actions][-4:]
    foreign = LogicalVolume("thinpool_meta", "docker", "rwi-a-r---", 49 * EXTENT, "raid1")  # not tagged: not ours
    again = planner.plan(PoolSpec(devices=(), layout=DataLayout.RAID1), _two_pv_vg((foreign,)))
    assert not [action for action in again.actions if action.kind == "interrupted-leftover"]


def test_a_layout_the_existing_pool_does_not_have_is_refused_not_reported_as_done() -> None:
    pool = LogicalVolume("thinpool", "docker", "twi-a-t---", 832 * EXTENT, "thin-pool", 48 * MiB, 512 * KiB)
    tdata = LogicalVolume("[thinpool_tdata]", "docker", "Twi-ao----", 832 * EXTENT, "linear")
    tmeta = LogicalVolume("[thinpool_tmeta]", "docker", "ewi-ao----", 48 * MiB, "raid1")
    observed = _two_pv_vg((pool, tdata, tmeta))
    with pytest.raises(SpecError, match=r"data linear \(wanted raid1\)"):
        planner.plan(PoolSpec(layout=DataLayout.RAID1), observed)
    assert planner.plan(PoolSpec(metadata_layout=MetadataLayout.RAID1), observed) is not None  # it has that
    assert planner.plan(PoolSpec(), observed) is not None  # the defaults never refuse a pool already made


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/lvm-2.03.31"


def _status(name: str) -> PoolStatus:
    return pool_status((FIXTURES / f"status-{name}.json").read_text(), "docker", "thinpool", {})


def test_status_reads_each_parts_layout_and_the_disks_under_its_images() -> None:
    status = _status("raid1-in-sync")
    assert status.layout == {"data": "raid1", "metadata": "raid1"}
    assert status.devices == ("/dev/vda", "/dev/vdb")  # read through the raid images
    assert all(part.devices == ("/dev/vda", "/dev/vdb") and part.in_sync for part in status.parts)
    assert not status.raid_degraded and status.raid_in_sync and status.images("data") == 2
    assert "raid-degraded" not in codes(doctor.diagnose(status))


def test_a_lost_disk_is_raid_degraded_with_its_repair_never_a_metadata_repair() -> None:
    status = _status("raid1-degraded")
    assert status.raid_degraded and [part.problem for part in status.parts] == ["partial", "partial"]
    assert status.health_problems == ()  # lvm's "partial" on the pool is the RAID's, not the metadata's
    found = {finding.code: finding for finding in doctor.diagnose(status)}
    assert "metadata-needs-repair" not in found
    degraded = found["raid-degraded"]
    assert degraded.severity == "critical" and "a missing disk" in degraded.problem
    assert degraded.fix.startswith("put in a disk for the one lost (NEW below), then: vgextend docker /dev/NEW; ")
    assert (
        "lvconvert --repair --yes docker/thinpool_tdata; lvconvert --repair --yes docker/thinpool_tmeta" in degraded.fix
    )
    assert "vgreduce --removemissing docker" in degraded.fix
    gauges = {name: value(status) for name, _, value in metrics.GAUGES}
    assert gauges["raid_degraded"] == 1 and gauges["raid_in_sync"] == 1


def test_destroy_counts_a_raid_parts_images_as_the_pools_and_removes_the_vg() -> None:
    pool = LogicalVolume("thinpool", "docker", "twi-a-t---", 832 * EXTENT, "thin-pool", 48 * MiB, 512 * KiB)
    hidden = [LogicalVolume(f"[thinpool_t{part}_r{kind}_{index}]", "docker", "iwi-aor---", EXTENT, "linear")
              for part in ("data", "meta") for kind in ("image", "meta") for index in (0, 1)]  # fmt: skip
    plan = lifecycle.plan_destroy(PoolSpec(), _two_pv_vg((pool, *hidden)))
    assert "volume-group" in [action.kind for action in plan.actions]


def test_a_raid1_pools_grow_fix_counts_both_copies_and_names_two_new_disks() -> None:
    room = replace(_status("raid1-in-sync"), vg_free_extents=100).room
    assert (room.data_images, room.grow_disks) == (2, 2)
    ownership = _status("raid1-in-sync").ownership
    assert owners.grow_data_fix(ownership, room, 50) == "lvextend -l +50 docker/thinpool"  # 2 x 50 fit in 100
    assert owners.grow_data_fix(ownership, room, 51) == "thinpool grow /dev/sdX /dev/sdY --vg docker --pool thinpool"


def test_raid10_pins_two_copies_of_each_stripe_to_four_disks() -> None:
    plan = _plan([100 * GiB] * 4, layout=DataLayout.RAID10)
    data = plan.actions[-3].argv
    assert data[2:10] == ("--type", "raid10", "--mirrors", "1", "--stripes", "2", "--stripesize", "64k")
    assert data[-4:] == ("disk1", "disk2", "disk3", "disk4")
    layout = laid_out(plan)
    assert layout.data_extents % 2 == 0 and not plan.warnings
    # the second copy, an rmeta for each of the 4 data images and the 2 metadata images, the metadata's second copy
    assert layout.redundancy_extents == layout.data_extents + 4 + layout.metadata_extents + 2


def test_grow_of_raid10_data_takes_as_many_new_disks_as_it_has_images() -> None:
    observed = _raid1_pool_observed("raid10", 4)
    observed.devices.update({f"/dev/sd{name}": disk(f"/dev/sd{name}", 4 * GiB) for name in "cdef"})
    plan = lifecycle.plan_grow(PoolSpec(devices=("/dev/sdc", "/dev/sdd", "/dev/sde", "/dev/sdf")), observed)
    assert plan.actions[-1].argv[-4:] == ("/dev/sdc", "/dev/sdd", "/dev/sde", "/dev/sdf")
    added = laid_out(plan).data_extents - 832
    assert added > 0 and added % 2 == 0 and laid_out(plan).redundancy_extents == added
    with pytest.raises(SpecError, match="grows by 4 disks at a time"):
        lifecycle.plan_grow(PoolSpec(devices=("/dev/sdc", "/dev/sdd")), observed)


def test_grow_by_one_disk_keeps_raid1_metadata_as_it_is_and_says_why() -> None:
    """lvm extends each metadata image on a disk the other does not use: found in the VM, where one new disk
    made lvextend fail ("is not redundant ... Insufficient suitable allocatable extents")."""
    pool = LogicalVolume("thinpool", "docker", "twi-a-t---", 832 * EXTENT, "thin-pool", 8 * MiB, 512 * KiB)
    tmeta = LogicalVolume("[thinpool_tmeta]", "docker", "ewi-ao----", 8 * MiB, "raid1")
    observed = _two_pv_vg((pool, tmeta))
    observed.devices["/dev/sdd"] = disk("/dev/sdd", 400 * GiB)
    plan = lifecycle.plan_grow(PoolSpec(devices=("/dev/sdd",)), observed)
    assert "pool-metadata" not in [action.kind for action in plan.actions]
    assert "pool-data" in [action.kind for action in plan.actions]
    assert any("raid1 metadata stays 8 MiB" in warning for warning in plan.warnings)
