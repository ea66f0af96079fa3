"""Properties of every plan, over VG geometries and every sizing option."""

from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thinpool.core import planner, sizing
from thinpool.core.spec import PoolSpec
from thinpool.core.units import KiB, MiB, Percent
from thinpool.errors import DoesNotFit, SpecError

from .builders import empty_vg, laid_out, observed_with_vg

extent_sizes = st.sampled_from([MiB << shift for shift in range(7)])  # 1 .. 64 MiB
extent_counts = st.integers(min_value=100, max_value=10**7)
chunks = st.one_of(st.none(), st.sampled_from([64 * KiB << shift for shift in range(15)]))  # 64 KiB .. 1 GiB
thresholds = st.sampled_from([50, 70, 80, 95, 100])
percents = st.integers(min_value=1, max_value=100)


@st.composite
def geometries(draw: st.DrawFn) -> tuple[PoolSpec, object, int, int]:
    extent = draw(extent_sizes)
    extents = draw(extent_counts)
    spare = draw(st.integers(min_value=0, max_value=max(0, min(extents // 10, sizing.METADATA_MAX // extent))))
    spec = PoolSpec(
        vg="vg",
        chunk_size=draw(chunks),
        metadata_size=draw(st.one_of(st.none(), st.sampled_from([2 * MiB, 64 * MiB, 1024 * MiB]))),
        data_size=draw(st.one_of(st.none(), st.builds(lambda p: Percent(Fraction(p), "VG"), st.integers(1, 100)))),
        headroom=draw(st.one_of(st.none(), st.builds(lambda p: Percent(Fraction(p), "VG"), st.integers(1, 30)))),
        workload=sizing.Workload(draw(st.integers(1, 20000)), draw(st.sampled_from([MiB, 10 << 30, 100 << 30]))),
        autoextend=sizing.Autoextend(draw(thresholds), draw(percents)),
    )
    vg = empty_vg("vg", extents, extent_size=extent, free=extents - spare, spare_extents=spare)
    return spec, observed_with_vg(vg), extent, extents


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometries())
def test_every_plan_fits_and_respects_lvm_limits(case: tuple[PoolSpec, object, int, int]) -> None:
    spec, observed, extent, extents = case
    try:
        plan = planner.plan(spec, observed)  # type: ignore[arg-type]
    except DoesNotFit as refusal:
        assert refusal.fix  # a refusal always says what to do
        return
    except SpecError as refusal:  # e.g. a requested chunk that cannot address the VG
        assert spec.chunk_size is not None and "--chunk-size" in refusal.fix
        assert sizing.max_addressable_data(spec.chunk_size) < extents * extent
        return
    layout = laid_out(plan)
    # it fits, counting the spare and one autoextend step
    required = layout.data_extents + layout.metadata_extents + layout.spare_extents + layout.headroom_extents
    assert required <= layout.free_extents
    assert layout.left_extents == layout.free_extents - required
    assert layout.headroom_extents >= sizing.minimum_headroom(
        layout.data_extents, layout.metadata_extents, extent, layout.chunk_size, spec.autoextend
    )
    # metadata within lvm's limits (a requested size is used as asked, rounded up to an extent)
    metadata = layout.metadata_extents * extent
    assert metadata >= sizing.METADATA_MIN
    assert metadata <= sizing.METADATA_MAX
    # the chunk is legal and addresses everything the pool may grow to
    chunk = layout.chunk_size
    assert chunk % (64 * KiB) == 0 and 64 * KiB <= chunk <= sizing.CHUNK_MAX
    assert sizing.max_addressable_data(chunk) >= extents * extent
    # every size is whole extents, and data is whole chunks
    assert layout.data_size == layout.data_extents * extent
    assert layout.data_size % chunk == 0
    assert layout.data_extents > 0
    # the argv carries exactly these numbers
    create = next(action for action in plan.actions if action.kind == "thin-pool")
    assert create.argv[create.argv.index("--extents") + 1] == str(layout.data_extents)


@settings(max_examples=200, deadline=None)
@given(extent_sizes, st.integers(min_value=2000, max_value=10**7), thresholds, percents)
def test_default_plans_fit_every_reasonable_vg(extent: int, extents: int, threshold: int, percent: int) -> None:
    """With no sizes given, a VG of a few GiB or more always gets a pool (never a refusal)."""
    spec = PoolSpec(vg="vg", autoextend=sizing.Autoextend(threshold, percent))
    if extents * extent < 8 << 30:
        extents = (8 << 30) // extent
    plan = planner.plan(spec, observed_with_vg(empty_vg("vg", extents, extent_size=extent)))
    assert laid_out(plan).data_extents > 0
    assert laid_out(plan).left_extents >= 0
