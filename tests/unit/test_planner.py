import json
from dataclasses import replace

import pytest

from thinpool.core import planner, sizing
from thinpool.core.lvm import commands
from thinpool.core.model import DmDevice, LogicalVolume, Observed, PhysicalVolume, virtual_disks
from thinpool.core.plan import ActionKind, Plan, SavedPlanError, render_text
from thinpool.core.safety import UnsafeDevice
from thinpool.core.spec import PoolSpec
from thinpool.core.units import GiB, KiB, MiB, Percent
from thinpool.errors import DoesNotFit, SpecError

from .builders import disk, empty_vg, laid_out, observed_with_vg

CLASSIC_DISK = 762048 * MiB  # 744.19 GiB: 190511 extents of 4 MiB after pvcreate's 1 MiB


def classic_plan(**spec: object) -> Plan:
    observed = virtual_disks([CLASSIC_DISK])
    return planner.plan(PoolSpec(devices=("disk1",), **spec), observed)  # type: ignore[arg-type]


def test_classic_geometry_plan_fits_with_exact_extents() -> None:
    plan = classic_plan()
    layout = laid_out(plan)
    assert layout.free_extents == 190511
    used = layout.data_extents + layout.metadata_extents + layout.spare_extents + layout.headroom_extents
    assert used + layout.left_extents == 190511
    assert layout.left_extents >= 0
    assert layout.spare_extents == layout.metadata_extents
    assert layout.headroom_extents >= sizing.autoextend_step(layout.data_extents, 20)
    assert layout.chunk_size == 512 * KiB


def test_classic_plan_actions_and_argv() -> None:
    plan = classic_plan()
    kinds = [action.kind for action in plan.actions]
    assert kinds == ["physical-volume", "volume-group", "lvm-profile", "thin-pool", "monitoring"]
    create = plan.actions[3]
    assert create.argv[:4] == ("lvcreate", "--yes", "--type", "thin-pool")
    argv = list(create.argv)
    assert argv[argv.index("--extents") + 1] == str(laid_out(plan).data_extents)
    assert argv[argv.index("--chunksize") + 1] == "512k"
    assert argv[argv.index("--poolmetadatasize") + 1] == f"{laid_out(plan).metadata_size // MiB}m"
    assert argv[argv.index("--zero") + 1] == "n"
    assert all(action.reason for action in plan.actions)
    profile = plan.actions[2]
    assert profile.path == "/etc/lvm/profile/thinpool-docker-thinpool.profile"
    assert "thin_pool_autoextend_threshold = 80" in profile.content
    assert "thin_pool_autoextend_percent = 20" in profile.content


def test_plan_text_is_terraform_like() -> None:
    text = render_text(classic_plan())
    assert "+ create thin-pool docker/thinpool" in text
    assert "~ change monitoring docker/thinpool" in text
    assert text.rstrip().endswith("Plan: 4 to add, 1 to change, 0 to destroy.")
    assert "metadata spare" in text


def test_plan_json_round_trip() -> None:
    plan = classic_plan()
    data = json.loads(plan.to_json())
    assert data["schema_version"] == 2 and data["kind"] == "thinpool-plan"
    assert all(isinstance(value, int) for value in data["layout"].values())
    loaded = Plan.from_dict(data)
    assert (loaded.actions, loaded.layout, loaded.spec, loaded.fingerprint) == (
        plan.actions,
        plan.layout,
        plan.spec,
        plan.fingerprint,
    )
    assert loaded.reasons == {} and loaded.warnings == ()  # shown from the re-derived plan, never from the file


def test_plan_from_dict_refuses_other_documents() -> None:
    with pytest.raises(SavedPlanError, match=r"schema_version 99.*reads 2"):
        Plan.from_dict({"kind": "thinpool-plan", "schema_version": 99})
    with pytest.raises(SavedPlanError, match="schema_version 1") as refused:
        Plan.from_dict({**classic_plan().to_dict(), "schema_version": 1})
    assert "plan again" in refused.value.fix


def test_metadata_term_is_explained() -> None:
    plan = classic_plan()
    assert "(workload)" in plan.reasons["metadata"]
    assert set(plan.candidates) == {"lvm2-estimate", "workload", "minimum"}


def test_explicit_data_size_that_does_not_fit_is_refused_with_the_largest_that_does() -> None:
    with pytest.raises(DoesNotFit) as caught:
        classic_plan(data_size=740 * GiB)
    assert "short by" in caught.value.problem
    assert "ask for at most" in caught.value.fix


def test_data_percent_of_vg() -> None:
    plan = classic_plan(data_size=Percent(__import__("fractions").Fraction(50), "VG"))
    assert laid_out(plan).data_extents == 190511 // 2


def test_explicit_data_size_rounds_up_to_extents() -> None:
    plan = classic_plan(data_size=100 * GiB + 1)
    assert laid_out(plan).data_extents == 100 * GiB // (4 * MiB) + 1


def test_headroom_request_raises_the_reserve() -> None:
    plan = classic_plan(headroom=200 * GiB)
    assert laid_out(plan).headroom_extents == 200 * GiB // (4 * MiB)
    assert laid_out(plan).left_extents >= 0


def test_autoextend_off_uses_all_the_room_and_warns() -> None:
    plan = classic_plan(autoextend=sizing.Autoextend(100, 20))
    assert laid_out(plan).headroom_extents == 0
    assert laid_out(plan).left_extents == 0
    assert any("autoextend is off" in warning for warning in plan.warnings)


def test_small_requested_metadata_warns() -> None:
    plan = classic_plan(metadata_size=8 * MiB)
    assert laid_out(plan).metadata_extents == 2
    assert any("below" in warning for warning in plan.warnings)


def test_disk_too_small_for_metadata() -> None:
    with pytest.raises(DoesNotFit, match="no room for pool data"):
        planner.plan(PoolSpec(devices=("disk1",)), virtual_disks([20 * MiB]))


def test_existing_vg_with_other_lvs_and_a_spare() -> None:
    other = LogicalVolume("root", "vg0", "-wi-ao----", 400 * 4 * MiB, "linear")
    vg = empty_vg("vg0", 2000, free=1500, spare_extents=5, lvs=(other,))
    plan = planner.plan(PoolSpec(vg="vg0"), observed_with_vg(vg))
    layout = laid_out(plan)
    assert layout.free_extents == 1500
    assert layout.spare_extents == max(0, layout.metadata_extents - 5)
    assert [action.kind for action in plan.actions] == ["lvm-profile", "thin-pool", "monitoring"]


def test_existing_vg_extended_with_a_new_disk() -> None:
    vg = empty_vg("docker", 500)
    observed = observed_with_vg(vg)
    observed.devices["/dev/sdc"] = disk("/dev/sdc", 8 * GiB)
    plan = planner.plan(PoolSpec(devices=("/dev/sdb", "/dev/sdc")), observed)
    assert plan.actions[0].argv == ("pvcreate", "/dev/sdc")
    assert plan.actions[1].argv == ("vgextend", "docker", "/dev/sdc")
    assert laid_out(plan).free_extents == 500 + (8 * GiB - MiB) // (4 * MiB)


def test_missing_vg_without_devices_is_refused() -> None:
    with pytest.raises(SpecError, match="does not exist"):
        planner.plan(PoolSpec(vg="nope"), Observed())


def test_orphan_pv_from_an_interrupted_run_is_reused_not_recreated() -> None:
    observed = Observed(
        devices={"/dev/sdb": disk("/dev/sdb", 8 * GiB, signatures=("LVM2_member",))},
        pvs={"/dev/sdb": PhysicalVolume("/dev/sdb", "", 8 * GiB - MiB, MiB, 2047, 0, 8 * GiB)},
    )
    plan = planner.plan(PoolSpec(devices=("/dev/sdb",)), observed)
    assert plan.actions[0].argv == commands.vgcreate("docker", 4 * MiB, ("/dev/sdb",))


def _marked_used_without_vg(mda_used_count: int) -> Observed:
    pv = PhysicalVolume("/dev/sdb", "[unknown]", 8 * GiB, MiB, 0, 0, 8 * GiB, "u--", mda_used_count)
    return Observed(devices={"/dev/sdb": disk("/dev/sdb", 8 * GiB, signatures=("LVM2_member",))}, pvs={"/dev/sdb": pv})


def test_pv_left_marked_used_by_an_interrupted_vgcreate_is_labelled_again() -> None:
    plan = planner.plan(PoolSpec(devices=("/dev/sdb",)), _marked_used_without_vg(mda_used_count=1))
    assert [action.argv for action in plan.actions[:2]] == [
        ("pvcreate", "-ff", "-y", "/dev/sdb"),
        commands.vgcreate("docker", 4 * MiB, ("/dev/sdb",)),
    ]
    assert "interrupted vgcreate" in plan.actions[0].reason


def test_pv_marked_used_whose_vg_may_be_on_absent_disks_is_never_taken() -> None:
    with pytest.raises(UnsafeDevice, match="cannot find") as caught:
        planner.plan(PoolSpec(devices=("/dev/sdb",), wipe=True), _marked_used_without_vg(mda_used_count=0))
    assert "other disks" in caught.value.fix


def test_signatures_need_wipe_and_wipe_is_planned_first() -> None:
    observed = Observed(devices={"/dev/sdb": disk("/dev/sdb", 8 * GiB, signatures=("ext4",))})
    with pytest.raises(UnsafeDevice, match="ext4") as caught:
        planner.plan(PoolSpec(devices=("/dev/sdb",)), observed)
    assert "--wipe" in caught.value.fix
    plan = planner.plan(PoolSpec(devices=("/dev/sdb",), wipe=True), observed)
    assert plan.actions[0].op == "destroy" and plan.actions[0].argv == ("wipefs", "--all", "/dev/sdb")
    assert plan.counts()["destroy"] == 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"mountpoints": ("/srv",)}, "mounted at /srv"),
        ({"holders": ("dm-0",)}, "held by dm-0"),
        ({"swap": True}, "swap"),
        ({"read_only": True}, "read-only"),
        ({"type": "rom"}, "not a disk"),
    ],
)
def test_devices_in_use_are_never_taken_even_with_wipe(fields: dict[str, object], reason: str) -> None:
    observed = Observed(devices={"/dev/sdb": disk("/dev/sdb", 8 * GiB, **fields)})
    with pytest.raises(UnsafeDevice, match=reason):
        planner.plan(PoolSpec(devices=("/dev/sdb",), wipe=True), observed)


def test_partitioned_disk_needs_wipe() -> None:
    observed = Observed(devices={"/dev/sdb": disk("/dev/sdb", 8 * GiB, partitions=("/dev/sdb1",))})
    with pytest.raises(UnsafeDevice, match="partitions"):
        planner.plan(PoolSpec(devices=("/dev/sdb",)), observed)


def test_missing_device_and_pv_of_another_vg() -> None:
    with pytest.raises(UnsafeDevice, match="no such block device"):
        planner.plan(PoolSpec(devices=("/dev/sdz",)), Observed())
    other = empty_vg("other", 100)
    observed = observed_with_vg(other)
    observed.devices["/dev/sdb"] = disk("/dev/sdb", 8 * GiB, signatures=("LVM2_member",))
    with pytest.raises(UnsafeDevice, match="volume group 'other'") as caught:
        planner.plan(PoolSpec(devices=("/dev/sdb",), wipe=True), observed)
    assert "--vg other" in caught.value.fix


def test_tiny_device_refused() -> None:
    with pytest.raises(UnsafeDevice, match="too small"):
        planner.plan(PoolSpec(devices=("/dev/sdb",)), Observed(devices={"/dev/sdb": disk("/dev/sdb", MiB)}))


def _existing_pool(**fields: object) -> Observed:
    pool = LogicalVolume(
        **{  # type: ignore[arg-type]
            "name": "thinpool",
            "vg_name": "docker",
            "attr": "twi-a-t---",
            "size": 832 * 4 * MiB,
            "segtype": "thin-pool",
            "metadata_size": 48 * MiB,
            "chunk_size": 512 * KiB,
            "seg_monitor": "monitored",
            "profile": "thinpool-docker-thinpool",
            "active": True,
            **fields,
        }
    )
    vg = empty_vg("docker", 1023, free=167, lvs=(pool,))
    content = commands.profile_content("docker", "thinpool", 80, 20)
    return observed_with_vg(vg, profiles={"thinpool-docker-thinpool": content})


def test_existing_pool_matching_the_spec_means_no_changes() -> None:
    plan = planner.plan(PoolSpec(devices=("/dev/sdb",)), _existing_pool())
    assert not plan.has_changes
    assert "No changes" in render_text(plan)


def test_existing_pool_is_converged_to_monitoring_and_profile() -> None:
    observed = _existing_pool(seg_monitor="not monitored", profile="")
    plan = planner.plan(PoolSpec(), observed)
    assert [action.kind for action in plan.actions] == ["pool-profile", "monitoring"]


def test_changed_autoextend_rewrites_the_profile() -> None:
    plan = planner.plan(PoolSpec(autoextend=sizing.Autoextend(70, 50)), _existing_pool())
    assert [action.kind for action in plan.actions] == ["lvm-profile"]
    assert "threshold = 70" in plan.actions[0].content


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ({"chunk_size": 64 * KiB}, "chunk 512 KiB (wanted 64 KiB)"),
        ({"data_size": 10 * GiB}, "data 3.25 GiB (wanted 10 GiB)"),
        ({"metadata_size": GiB}, "metadata 48 MiB (wanted 1 GiB)"),
        ({"devices": ("/dev/sdc",)}, "/dev/sdc are not in docker"),
    ],
)
def test_conflicting_spec_is_refused_with_the_difference(spec: dict[str, object], shown: str) -> None:
    with pytest.raises(SpecError) as caught:
        planner.plan(PoolSpec(**spec), _existing_pool())  # type: ignore[arg-type]
    assert shown in caught.value.problem
    assert "grow" in caught.value.fix


def test_existing_non_pool_lv_is_never_converted() -> None:
    lv = LogicalVolume("thinpool", "docker", "-wi-a-----", 4 * MiB, "linear")
    with pytest.raises(SpecError, match="not a thin pool"):
        planner.plan(PoolSpec(), observed_with_vg(empty_vg("docker", 100, lvs=(lv,))))


@pytest.mark.parametrize(
    ("vg", "pool"), [("-bad", "thinpool"), ("docker", "pool_tmeta"), ("docker", "snapshot1"), ("a/b", "p"), ("..", "p")]
)
def test_invalid_names(vg: str, pool: str) -> None:
    with pytest.raises(SpecError, match="name"):
        planner.plan(PoolSpec(devices=("disk1",), vg=vg, pool=pool), virtual_disks([GiB]))


def test_names_with_dashes_are_fine_and_dm_name_doubles_them() -> None:
    plan = planner.plan(PoolSpec(devices=("disk1",), vg="my-vg", pool="docker-pool"), virtual_disks([8 * GiB]))
    assert plan.actions[-1].argv == ("lvchange", "--monitor", "y", "my-vg/docker-pool")
    assert commands.dm_name("docker", "docker-pool-data") == "docker-docker--pool--data"


def test_two_disks_make_one_vg() -> None:
    plan = planner.plan(PoolSpec(devices=("disk1", "disk2")), virtual_disks([4 * GiB, 4 * GiB]))
    assert laid_out(plan).free_extents == 2 * 1023
    assert plan.actions[2].argv == ("vgcreate", "--physicalextentsize", "4m", "docker", "disk1", "disk2")


def test_planning_is_pure_and_deterministic() -> None:
    assert classic_plan() == classic_plan()


def _vg_with(*lvs: LogicalVolume) -> Observed:
    return observed_with_vg(empty_vg("docker", 1023, free=1023 - sum(lv.size for lv in lvs) // (4 * MiB), lvs=lvs))


def _linear(name: str, size: int, *, tags: tuple[str, ...] = (), attr: str = "-wi-------") -> LogicalVolume:
    return LogicalVolume(name, "docker", attr, size, "linear", tags=tags)


def test_tagged_half_made_pool_is_removed_then_planned_afresh() -> None:
    spare = LogicalVolume("[lvol0_pmspare]", "docker", "ewi-------", 48 * MiB, "linear")
    plan = planner.plan(PoolSpec(), _vg_with(_linear("thinpool", 48 * MiB, tags=(commands.MANAGED_TAG,)), spare))
    assert plan.actions[0].op == "destroy" and plan.actions[0].argv == ("lvremove", "--yes", "docker/thinpool")
    assert [action.kind for action in plan.actions[1:]] == ["lvm-profile", "thin-pool", "monitoring"]
    assert laid_out(plan).free_extents == 1023 - 12  # the leftover's extents are free again; the spare stays
    assert laid_out(plan).spare_extents == 0
    assert "--addtag" in plan.actions[2].argv


def test_lvm_temporary_leftover_is_removed_only_at_the_planned_metadata_size() -> None:
    metadata = laid_out(planner.plan(PoolSpec(), _vg_with())).metadata_size
    plan = planner.plan(PoolSpec(), _vg_with(_linear("lvol0", metadata)))
    assert plan.actions[0].argv == ("lvremove", "--yes", "docker/lvol0")
    zeroing = planner.plan(PoolSpec(), _vg_with(_linear("lvol0", metadata, attr="-wi-a-----")))
    assert zeroing.actions[0].argv == ("lvremove", "--yes", "docker/lvol0")  # active from lvm's zeroing, not open
    other = planner.plan(PoolSpec(), _vg_with(_linear("lvol0", metadata + 4 * MiB)))
    assert all(action.op != "destroy" for action in other.actions)  # not ours: left alone


@pytest.mark.parametrize(
    "lv",
    [
        _linear("thinpool", 48 * MiB),  # not tagged: someone else's volume
        _linear("thinpool", 48 * MiB, tags=(commands.MANAGED_TAG,), attr="-wi-ao----"),  # open: in use
    ],
)
def test_volumes_thinpool_cannot_prove_are_its_own_are_never_removed(lv: LogicalVolume) -> None:
    with pytest.raises(SpecError, match="not a thin pool"):
        planner.plan(PoolSpec(), _vg_with(lv))


def test_pool_without_a_clean_activation_is_reactivated() -> None:
    observed = _existing_pool(attr="twi-d-t---", active=True)
    kinds = [action.kind for action in planner.plan(PoolSpec(), observed).actions]
    assert kinds[:2] == ["deactivation", "activation"]
    idle = _existing_pool(attr="twi---t---", active=False, seg_monitor="")
    assert [action.kind for action in planner.plan(PoolSpec(), idle).actions] == [
        "deactivation",
        "activation",
        "monitoring",
    ]


def test_a_part_active_on_its_own_is_deactivated_before_the_pool_is_activated() -> None:
    """The pool inactive, its metadata active as a component (what a kill late in lvcreate left in the VM, and what
    ``lvchange -ay POOL_tmeta`` leaves): lvm refuses the pool while it is, and deactivating the pool leaves it."""
    observed = _existing_pool(attr="twi---t---", active=False)
    vg = observed.vgs["docker"]
    tmeta = LogicalVolume("[thinpool_tmeta]", "docker", "eRi-a-----", 48 * MiB, "linear", active=True)
    tdata = LogicalVolume("[thinpool_tdata]", "docker", "Twi-------", 832 * 4 * MiB, "linear")
    with_parts = replace(observed, vgs={"docker": replace(vg, lvs=(*vg.lvs, tmeta, tdata))})
    actions = planner.plan(PoolSpec(), with_parts).actions
    assert [action.argv for action in actions[:3]] == [
        ("lvchange", "--activate", "n", "docker/thinpool"),
        ("lvchange", "--activate", "n", "docker/thinpool_tmeta"),
        ("lvchange", "--activate", "y", "docker/thinpool"),
    ]
    assert "thinpool_tmeta active on its own" in actions[1].reason
    cleanly_active = _existing_pool()
    parts = replace(
        cleanly_active.vgs["docker"], lvs=(*cleanly_active.vgs["docker"].lvs, replace(tmeta, attr="ewi-ao----"))
    )
    assert not planner.plan(PoolSpec(), replace(cleanly_active, vgs={"docker": parts})).has_changes


def test_parts_active_beside_a_pool_mapped_without_a_table_are_deactivated_after_it() -> None:
    """What a kill 0.4 s into lvcreate left in CI: the pool's mapping present without a table (state 'd') and both
    parts active, not open; ``lvchange -an POOL`` left them active and lvm refused to activate the pool."""
    observed = _existing_pool(attr="twi-d-t---", active=True)
    vg = observed.vgs["docker"]
    tmeta = LogicalVolume("[thinpool_tmeta]", "docker", "ewi-a-----", 48 * MiB, "linear", active=True)
    tdata = LogicalVolume("[thinpool_tdata]", "docker", "Twi-a-----", 832 * 4 * MiB, "linear", active=True)
    with_parts = replace(observed, vgs={"docker": replace(vg, lvs=(*vg.lvs, tmeta, tdata))})
    assert [action.argv for action in planner.plan(PoolSpec(), with_parts).actions[:3]] == [
        ("lvchange", "--activate", "n", "docker/thinpool"),
        ("lvchange", "--activate", "n", "docker/thinpool_tmeta", "docker/thinpool_tdata"),
        ("lvchange", "--activate", "y", "docker/thinpool"),
    ]


def test_a_stray_mapping_holding_the_pools_metadata_is_removed_before_reactivation() -> None:
    """The shape a kill late in lvcreate left in CI: lvm's temporary docker-lvol0 still maps POOL_tmeta."""
    from thinpool.core.lvm import report
    from thinpool.core.model import VolumeGroup

    vg_uuid, tmeta_uuid = "Vg0000-aaaa-bbbb-cccc-dddd-eeee-ffffff", "Lv1111-aaaa-bbbb-cccc-dddd-eeee-ffffff"
    owner = "LVM-" + vg_uuid.replace("-", "") + tmeta_uuid.replace("-", "")
    listing = f"docker-lvol0;{owner};0;L--w\ndocker-other;LVM-{'x' * 64};0;L--w\nsda2_crypt;CRYPT-LUKS2-abc;1;L--w\n"
    devices = tuple(report.parse_dmsetup_info(listing))
    assert [device.name for device in devices] == ["docker-lvol0", "docker-other", "sda2_crypt"]
    pool = LogicalVolume(
        "thinpool",
        "docker",
        "twi---t---",
        GiB,
        segtype="thin-pool",
        chunk_size=512 * KiB,
        metadata_size=4 * MiB,
        tags=("thinpool.managed",),
        profile="thinpool-docker-thinpool",
    )
    tmeta = LogicalVolume("[thinpool_tmeta]", "docker", "ewi-XX----", 4 * MiB, uuid=tmeta_uuid)
    vg = VolumeGroup("docker", 4 * MiB, 1023, 700, 5, ("/dev/sdb",), (pool, tmeta), uuid=vg_uuid)
    observed = Observed(vgs={"docker": vg}, dm_devices=devices)
    plan = planner.plan(PoolSpec(vg="docker"), observed)
    assert plan.actions[0].argv == ("dmsetup", "remove", "docker-lvol0")  # only the stray one
    kinds = [action.kind for action in plan.actions]
    assert kinds.count(ActionKind.STRAY_DM_MAPPING) == 1 and kinds.index(ActionKind.DEACTIVATION) < kinds.index(
        ActionKind.ACTIVATION
    )
    in_place = Observed(vgs={"docker": vg}, dm_devices=(DmDevice("docker-thinpool_tmeta", owner, 0),))
    assert all(action.kind != "stray-dm-mapping" for action in planner.plan(PoolSpec(vg="docker"), in_place).actions)
    pool_uuid = "Lv2222-aaaa-bbbb-cccc-dddd-eeee-ffffff"
    vg = VolumeGroup(
        "docker", 4 * MiB, 1023, 700, 5, ("/dev/sdb",), (replace(pool, uuid=pool_uuid), tmeta), uuid=vg_uuid
    )
    tpool = "LVM-" + vg_uuid.replace("-", "") + pool_uuid.replace("-", "") + "-tpool"
    active = Observed(vgs={"docker": vg}, dm_devices=(DmDevice("docker-thinpool", tpool, 0),))
    assert all(action.kind != "stray-dm-mapping" for action in planner.plan(PoolSpec(vg="docker"), active).actions)
    held = Observed(vgs={"docker": vg}, dm_devices=(DmDevice("docker-lvol0", owner, 1),))
    assert all(action.kind != "stray-dm-mapping" for action in planner.plan(PoolSpec(vg="docker"), held).actions)


def test_a_half_made_mapping_under_the_lvs_own_name_is_removed_before_reactivation() -> None:
    """Seen in CI after a kill 0.3 s into lvcreate: VG-POOL_tmeta existed with only an inactive
    table (lvs state 'i'), and activating the pool was "prohibited while ... _tmeta is active"."""
    from thinpool.core.lvm import report
    from thinpool.core.model import VolumeGroup

    vg_uuid, tmeta_uuid = "Vg0000-aaaa-bbbb-cccc-dddd-eeee-ffffff", "Lv1111-aaaa-bbbb-cccc-dddd-eeee-ffffff"
    owner = "LVM-" + vg_uuid.replace("-", "") + tmeta_uuid.replace("-", "")
    pool = LogicalVolume(
        "thinpool",
        "docker",
        "twi---t---",
        GiB,
        segtype="thin-pool",
        chunk_size=512 * KiB,
        metadata_size=4 * MiB,
        tags=("thinpool.managed",),
        profile="thinpool-docker-thinpool",
    )
    tmeta = LogicalVolume("[thinpool_tmeta]", "docker", "ewi-i-----", 4 * MiB, uuid=tmeta_uuid)
    vg = VolumeGroup("docker", 4 * MiB, 1023, 700, 5, ("/dev/sdb",), (pool, tmeta), uuid=vg_uuid)

    def planned_with(attr: str, open_count: int = 0) -> list[tuple[str, ...]]:
        devices = tuple(report.parse_dmsetup_info(f"docker-thinpool_tmeta;{owner};{open_count};{attr}\n"))
        observed = Observed(vgs={"docker": vg}, dm_devices=devices)
        return [action.argv for action in planner.plan(PoolSpec(vg="docker"), observed).actions]

    half_made = planned_with("-I-w")
    assert half_made[0] == ("dmsetup", "remove", "docker-thinpool_tmeta")
    deactivate, activate = (
        ("lvchange", "--activate", "n", "docker/thinpool"),
        ("lvchange", "--activate", "y", "docker/thinpool"),
    )
    assert half_made.index(deactivate) < half_made.index(activate)
    assert planned_with("----")[0] == ("dmsetup", "remove", "docker-thinpool_tmeta")  # no table at all
    assert ("dmsetup", "remove", "docker-thinpool_tmeta") not in planned_with(
        "L--r"
    )  # a component activated on purpose
    assert ("dmsetup", "remove", "docker-thinpool_tmeta") not in planned_with("-I-w", open_count=1)
