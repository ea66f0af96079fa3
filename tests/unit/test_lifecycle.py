import pytest

from thinpool.core import lifecycle, sizing
from thinpool.core.model import LogicalVolume, Observed
from thinpool.core.spec import PoolSpec
from thinpool.core.units import GiB, KiB, MiB
from thinpool.errors import SpecError

from .builders import disk, empty_vg, laid_out, observed_with_vg


def _pool(**fields: object) -> LogicalVolume:
    values = {
        "name": "thinpool",
        "vg_name": "docker",
        "attr": "twi-a-t---",
        "size": 832 * 4 * MiB,
        "segtype": "thin-pool",
        "metadata_size": 48 * MiB,
        "chunk_size": 512 * KiB,
        "active": True,
        **fields,
    }
    return LogicalVolume(**values)  # type: ignore[arg-type]


def _observed(*extra: LogicalVolume, free: int = 167) -> Observed:
    return observed_with_vg(empty_vg("docker", 1023, free=free, lvs=(_pool(), *extra)))


def test_destroy_removes_pool_vg_labels_and_profile() -> None:
    plan = lifecycle.plan_destroy(PoolSpec(), _observed())
    assert [action.argv for action in plan.actions[:3]] == [
        ("lvremove", "--yes", "docker/thinpool"),
        ("vgremove", "--yes", "docker"),
        ("pvremove", "--yes", "/dev/sdb"),
    ]
    assert plan.actions[-1].path == "/etc/lvm/profile/thinpool-docker-thinpool.profile"
    assert plan.counts()["destroy"] == 4


def test_destroy_keeps_a_vg_that_holds_other_volumes() -> None:
    other = LogicalVolume("root", "docker", "-wi-ao----", 40 * MiB, "linear")
    plan = lifecycle.plan_destroy(PoolSpec(), _observed(other))
    assert [action.kind for action in plan.actions] == ["thin-pool", "lvm-profile"]
    assert "root" in plan.reasons["volume group"]


def test_destroy_refused_while_thin_volumes_are_active() -> None:
    thin = LogicalVolume("vol", "docker", "Vwi-aot---", GiB, "thin", pool_lv="thinpool", active=True)
    with pytest.raises(SpecError, match="active thin volumes: vol"):
        lifecycle.plan_destroy(PoolSpec(), _observed(thin))


def test_destroy_refused_while_an_engine_points_at_the_pool() -> None:
    with pytest.raises(SpecError, match=r"daemon\.json still points at docker/thinpool") as caught:
        lifecycle.plan_destroy(PoolSpec(), _observed(), ("/etc/docker/daemon.json",))
    assert "reconfigure" in caught.value.fix


def test_destroy_of_a_missing_pool_says_so() -> None:
    with pytest.raises(SpecError, match="no thin pool docker/other"):
        lifecycle.plan_destroy(PoolSpec(pool="other"), _observed())


def test_grow_onto_a_new_disk_keeps_one_autoextend_step_free() -> None:
    observed = _observed()
    observed.devices["/dev/sdc"] = disk("/dev/sdc", 4 * GiB)
    plan = lifecycle.plan_grow(PoolSpec(devices=("/dev/sdc",)), observed)
    kinds = [action.kind for action in plan.actions]
    assert kinds[:2] == ["physical-volume", "volume-group"] and kinds[-1] == "pool-data"
    layout = laid_out(plan)
    free = 167 + 1023
    growth = layout.metadata_extents - 12
    assert layout.left_extents == free - 2 * growth - (layout.data_extents - 832)
    assert layout.left_extents >= sizing.autoextend_step(layout.data_extents, 20)
    grow_data = plan.actions[-1].argv
    assert grow_data == ("lvextend", "--yes", "--extents", str(layout.data_extents), "docker/thinpool")  # a size


def test_grow_refuses_a_chunk_that_cannot_address_the_grown_vg() -> None:
    observed = _observed()
    observed.devices["/dev/sdc"] = disk("/dev/sdc", 20 * 1024 * GiB)
    small = observed_with_vg(empty_vg("docker", 1023, free=167, lvs=(_pool(chunk_size=64 * KiB),)))
    small.devices["/dev/sdc"] = disk("/dev/sdc", 20 * 1024 * GiB)
    with pytest.raises(SpecError, match="can address at most"):
        lifecycle.plan_grow(PoolSpec(devices=("/dev/sdc",)), small)


def test_grow_with_nothing_to_grow_into_changes_nothing() -> None:
    assert not lifecycle.plan_grow(PoolSpec(), _observed(free=0)).has_changes


def test_grow_onto_a_disk_with_a_filesystem_needs_wipe_and_then_wipes_first() -> None:
    from thinpool.core.safety import UnsafeDevice

    observed = _observed()
    observed.devices["/dev/sdc"] = disk("/dev/sdc", 4 * GiB, signatures=("ext4",))
    with pytest.raises(UnsafeDevice, match="ext4"):
        lifecycle.plan_grow(PoolSpec(devices=("/dev/sdc",)), observed)
    plan = lifecycle.plan_grow(PoolSpec(devices=("/dev/sdc",), wipe=True), observed)
    assert [action.argv[0] for action in plan.actions[:3]] == ["wipefs", "pvcreate", "vgextend"]


def test_a_grown_pool_that_dmeventd_also_extended_is_not_a_failed_step() -> None:
    """vgextend gives a full, monitored pool room, and dmeventd autoextends it before thinpool's lvextend +N:
    the pool ends larger than planned, which is no failure; smaller than planned is."""
    from dataclasses import replace

    from thinpool.core.plan import problem_after

    observed = _observed()
    observed.devices["/dev/sdc"] = disk("/dev/sdc", 4 * GiB)
    plan = lifecycle.plan_grow(PoolSpec(devices=("/dev/sdc",)), observed)
    grow_data = plan.actions[-1]
    planned = laid_out(plan).data_size

    def after(size: int) -> str:
        return problem_after(grow_data, plan, _observed_with(replace(_pool(), size=size)))

    assert after(planned) == "" and after(planned + 32 * 4 * MiB) == ""
    assert after(planned - 4 * MiB) == f"data is {planned - 4 * MiB} bytes, planned {planned}"


def _observed_with(pool: LogicalVolume) -> Observed:
    return observed_with_vg(empty_vg("docker", 2047, free=100, lvs=(pool,)))
