import pytest

from thinpool.core import sizing
from thinpool.core.units import GiB, KiB, MiB, TiB
from thinpool.errors import SpecError

from .builders import laid_out

CLASSIC_EXTENTS = 190511  # a 744.18 GiB disk as one PV with 4 MiB extents
EXTENT = 4 * MiB


def test_classic_recipe_does_not_fit_by_the_spare() -> None:
    """metadata 20%VG, data = all the rest: the same accounting shows the spare is missing."""
    metadata = CLASSIC_EXTENTS * 20 // 100
    assert metadata == 38102
    recipe = sizing.Layout(
        extent_size=EXTENT,
        chunk_size=512 * KiB,
        data_extents=CLASSIC_EXTENTS - metadata,
        metadata_extents=metadata,
        spare_extents=sizing.spare_needed(metadata, existing_spare_extents=0),
        headroom_extents=0,
        free_extents=CLASSIC_EXTENTS,
    )
    assert not recipe.fits
    assert recipe.shortfall_extents == 38102  # lvm: "insufficient free space (0 extents): 38102 required"
    error = sizing.explain_shortfall(recipe)
    assert "spare 38102" in error.problem and "short by 38102" in error.problem


def test_spare_counts_only_what_the_existing_spare_lacks() -> None:
    assert sizing.spare_needed(179, 0) == 179
    assert sizing.spare_needed(179, 100) == 79
    assert sizing.spare_needed(179, 500) == 0


def test_lvm_estimate_is_64_bytes_per_chunk() -> None:
    assert sizing.lvm_metadata_estimate(744 * GiB, 512 * KiB) == 744 * GiB // (512 * KiB) * 64
    assert sizing.lvm_metadata_estimate(1, 64 * KiB) == 64


@pytest.mark.parametrize(("chunk", "limit"), [(64 * KiB, 16978542592 // 64 * 64 * KiB), (512 * KiB, None)])
def test_max_addressable_data(chunk: int, limit: int | None) -> None:
    addressable = sizing.max_addressable_data(chunk)
    if limit is not None:
        assert addressable == limit
    # lvm prints "chunk size 512 KiB can address at most 127.00 TiB" with its larger kernel cap;
    # thinpool uses the 15.81 GiB cap, so it is a little more careful, never less.
    assert addressable <= sizing.max_addressable_data(chunk * 2) // 2 + 1
    assert sizing.max_addressable_data(512 * KiB) < 127 * TiB


@pytest.mark.parametrize("bad", [32 * KiB, 96 * KiB + 1, 2 * GiB, 0])
def test_chunk_validation(bad: int) -> None:
    with pytest.raises(SpecError, match="multiple of 64 KiB"):
        sizing.validate_chunk(bad)


@pytest.mark.parametrize(
    ("engine", "chunk", "figure"),
    [
        ("docker-devicemapper", 128 * KiB, "30x their size (103x at 512 KiB)"),
        ("containerd-devmapper", 128 * KiB, "780 against 380 a second"),
        ("docker-overlay2-thin", 128 * KiB, "gave back 41% of them (1% at 512 KiB)"),
        ("none", 512 * KiB, "metadata small"),
    ],
)
def test_each_engine_gets_the_chunk_its_measurements_chose(engine: str, chunk: int, figure: str) -> None:
    choice = sizing.choose_chunk(None, 744 * GiB, engine)
    assert choice.size == chunk and figure in choice.reason
    assert "docs/benchmarks" in choice.reason or engine == "none"


def test_an_engines_chunk_is_raised_when_it_cannot_address_the_pool() -> None:
    choice = sizing.choose_chunk(None, 40 * TiB, "docker-overlay2-thin")
    assert choice.size == 256 * KiB and choice.reason.startswith("raised from 128 KiB")


def test_default_chunk_rises_to_address_a_huge_pool() -> None:
    choice = sizing.choose_chunk(None, 600 * TiB)
    assert choice.size > 512 * KiB
    assert sizing.max_addressable_data(choice.size) >= 600 * TiB
    assert sizing.max_addressable_data(choice.size // 2) < 600 * TiB
    assert "raised" in choice.reason


def test_user_chunk_that_cannot_address_is_refused_with_the_smallest_that_can() -> None:
    with pytest.raises(SpecError) as caught:
        sizing.choose_chunk(64 * KiB, 100 * TiB)
    needed = sizing.smallest_chunk_addressing(100 * TiB)
    assert needed == 512 * KiB
    assert "--chunk-size 512k" in caught.value.fix


def test_user_chunk_is_kept_when_it_addresses() -> None:
    assert sizing.choose_chunk(128 * KiB, 1 * TiB).size == 128 * KiB


def test_metadata_takes_the_largest_term_and_says_which() -> None:
    workload = sizing.Workload(max_thin_devices=1000, thin_device_size=10 * GiB)
    choice = sizing.choose_metadata(None, 744 * GiB, 512 * KiB, workload)
    assert choice.term == "workload"
    assert choice.size == max(choice.candidates.values())
    assert choice.candidates["workload"] > choice.candidates["lvm2-estimate"]


def test_metadata_lvm_estimate_wins_with_few_devices_and_small_chunks() -> None:
    workload = sizing.Workload(max_thin_devices=1, thin_device_size=1 * GiB)
    choice = sizing.choose_metadata(None, 1 * TiB, 64 * KiB, workload)
    assert choice.term == "lvm2-estimate"
    assert choice.size == 1 * TiB // (64 * KiB) * 64


def test_metadata_minimum_for_tiny_pools() -> None:
    workload = sizing.Workload(max_thin_devices=1, thin_device_size=MiB)
    choice = sizing.choose_metadata(None, 16 * MiB, 1 * MiB, workload)
    assert choice.size == sizing.METADATA_MIN
    assert choice.term == "minimum"


def test_metadata_cap_binds_and_is_reported() -> None:
    workload = sizing.Workload(max_thin_devices=100000, thin_device_size=100 * GiB)
    choice = sizing.choose_metadata(None, 500 * TiB, 64 * KiB * 64, workload)
    assert choice.capped
    assert choice.size == sizing.METADATA_MAX
    larger = sizing.chunk_fitting_metadata_cap(500 * TiB, 64 * KiB * 64, workload)
    assert larger is not None and larger > 64 * KiB * 64


def test_requested_metadata_outside_range_is_refused() -> None:
    with pytest.raises(SpecError, match=r"2 MiB \.\. 15\.81 GiB"):
        sizing.choose_metadata(MiB, GiB, 512 * KiB, sizing.Workload())
    with pytest.raises(SpecError):
        sizing.choose_metadata(16 * GiB, GiB, 512 * KiB, sizing.Workload())


def test_workload_model_grows_with_devices_and_is_bounded_by_the_pool() -> None:
    few = sizing.workload_metadata_estimate(100 * GiB, 512 * KiB, sizing.Workload(10, 10 * GiB))
    many = sizing.workload_metadata_estimate(100 * GiB, 512 * KiB, sizing.Workload(1000, 10 * GiB))
    absurd = sizing.workload_metadata_estimate(100 * GiB, 512 * KiB, sizing.Workload(10**6, 10 * GiB))
    assert few < many < absurd
    # diverged leaves can never outnumber the pool's chunks (each costs a written chunk)
    chunks = 100 * GiB // (512 * KiB)
    assert absurd < (2 * chunks + 3 * 10**6) * sizing.METADATA_BLOCK + 20 * MiB


def test_workload_model_covers_the_test_vm_measurement() -> None:
    """Seen on real dm-thin: 4 GiB pool, 64 KiB chunks, 2 GiB volume + 4 snapshots: ~3.3 MiB used."""
    need = sizing.workload_metadata_estimate(4 * GiB, 64 * KiB, sizing.Workload(5, 2 * GiB))
    assert need >= 3_300_000


def test_kernel_reserve() -> None:
    assert sizing._with_kernel_reserve(9 * MiB) == 10 * MiB
    assert sizing._with_kernel_reserve(1000 * MiB) == 1016 * MiB


def test_autoextend_step_rounds_up() -> None:
    assert sizing.autoextend_step(832, 20) == 167
    assert sizing.autoextend_step(1000, 20) == 200


def test_headroom_includes_metadata_and_spare_growth() -> None:
    auto = sizing.Autoextend(80, 50)
    # metadata far below lvm's estimate after the step: lvm grows it, and the spare with it
    data, metadata = 100_000, 1
    step = sizing.autoextend_step(data, 50)
    growth = sizing.metadata_growth_on_step(data, metadata, step, 4 * MiB, 64 * KiB)
    assert growth > 0
    assert sizing.minimum_headroom(data, metadata, 4 * MiB, 64 * KiB, auto) == step + 2 * growth


def test_no_headroom_when_autoextend_is_off() -> None:
    assert sizing.minimum_headroom(1000, 10, 4 * MiB, 512 * KiB, sizing.Autoextend(100, 20)) == 0


@pytest.mark.parametrize(("threshold", "percent"), [(49, 20), (101, 20), (80, 0), (80, 101)])
def test_autoextend_validation(threshold: int, percent: int) -> None:
    with pytest.raises(SpecError):
        sizing.Autoextend(threshold, percent).validate()


def test_largest_fitting_data_leaves_exactly_one_step() -> None:
    auto = sizing.Autoextend()
    data = sizing.largest_fitting_data(1000, 12, 4 * MiB, 512 * KiB, auto)
    headroom = sizing.minimum_headroom(data, 12, 4 * MiB, 512 * KiB, auto)
    assert data + headroom <= 1000
    assert data + 1 + sizing.minimum_headroom(data + 1, 12, 4 * MiB, 512 * KiB, auto) > 1000


def test_alignment_when_chunk_exceeds_extent() -> None:
    assert sizing.alignment_extents(4 * MiB, 512 * KiB) == 1
    assert sizing.alignment_extents(1 * MiB, 4 * MiB) == 4
    assert sizing.alignment_extents(4 * MiB, 192 * KiB) == 3  # lcm is 12 MiB


@pytest.mark.parametrize(("disk", "chunk"), [(20 * GiB, 512 * KiB), (100 * GiB, 256 * KiB), (744 * GiB, 128 * KiB)])
def test_a_small_pool_doubles_the_engines_chunk_until_metadata_takes_at_most_its_share(disk: int, chunk: int) -> None:
    engine = sizing.choose_chunk(None, disk, "docker-devicemapper")
    choice = sizing.choose_chunk(None, disk, "docker-devicemapper", sizing.Workload())
    assert choice.size == chunk
    kept = 2 * sizing.choose_metadata(None, disk, chunk, sizing.Workload()).size
    assert kept * 100 <= sizing.METADATA_SHARE_PERCENT * disk
    if chunk > 128 * KiB:
        half = 2 * sizing.choose_metadata(None, disk, chunk // 2, sizing.Workload()).size
        assert half * 100 > sizing.METADATA_SHARE_PERCENT * disk  # the smallest that stays within the share
        assert "the engine's measured choice" in choice.reason and "more than 2%" in choice.reason
    else:
        assert choice == engine


def test_a_requested_chunk_is_never_raised_for_metadata_share() -> None:
    from thinpool.core import planner
    from thinpool.core.model import virtual_disks
    from thinpool.core.spec import PoolSpec

    spec = PoolSpec(devices=("disk1",), engine="docker-devicemapper", chunk_size=128 * KiB)
    plan = planner.plan(spec, virtual_disks([20 * GiB]))
    assert laid_out(plan).chunk_size == 128 * KiB
    default = planner.plan(PoolSpec(devices=("disk1",), engine="docker-devicemapper"), virtual_disks([20 * GiB]))
    assert laid_out(default).chunk_size == 512 * KiB and "7." in default.reasons["chunk"]
