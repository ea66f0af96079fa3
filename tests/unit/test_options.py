import argparse
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from thinpool.cli.options import add_engine_options, add_spec_options, spec_from_args, spec_to_argv
from thinpool.core import sizing
from thinpool.core.spec import EngineOptions, PoolSpec
from thinpool.core.units import KiB, MiB, Percent
from thinpool.engines import CHOICES as ENGINES


def _parse(argv: list[str]) -> PoolSpec:
    parser = argparse.ArgumentParser()
    add_spec_options(parser)
    add_engine_options(parser)
    return spec_from_args(parser.parse_args(argv))


sizes = st.one_of(st.none(), st.integers(1, 2**44).map(lambda n: n * 512))
shares = st.one_of(sizes, st.integers(1, 100).map(lambda p: Percent(Fraction(p), "VG")))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(["/dev/sdb", "/dev/sdc", "/dev/vdb"]), unique=True, max_size=3),
    st.sampled_from(["docker", "my-vg"]),
    st.sampled_from(ENGINES),
    st.one_of(st.none(), st.sampled_from([64 * KiB, 512 * KiB])),
    sizes,
    shares,
    shares,
    st.integers(1, 10**5),
    st.booleans(),
    st.builds(
        EngineOptions,
        base_size=st.integers(1, 2**20).map(lambda n: n * MiB),
        min_free_space=st.integers(0, 50),
        volume_size=sizes,
        storage_opts=st.lists(st.sampled_from(["dm.blkdiscard=false", "dm.xfs_nospace_max_retries=0"])).map(tuple),
        hosts=st.lists(st.sampled_from(["unix:///run/docker.sock", "tcp://127.0.0.1:2375"])).map(tuple),
        dns=st.lists(st.sampled_from(["10.0.0.2", "1.1.1.1"])).map(tuple),
        insecure_tcp=st.booleans(),
        force=st.booleans(),
    ),
)
def test_spec_to_argv_round_trips(
    devices: list[str],
    vg: str,
    engine: str,
    chunk: int | None,
    metadata: int | None,
    data: int | Percent | None,
    headroom: int | Percent | None,
    devices_n: int,
    flag: bool,
    engine_options: EngineOptions,
) -> None:
    spec = PoolSpec(
        devices=tuple(devices),
        vg=vg,
        pool="pool-1",
        engine=engine,
        extent_size=8 * MiB,
        chunk_size=chunk,
        metadata_size=metadata,
        data_size=data,
        headroom=headroom,
        max_pool_size=metadata,
        workload=sizing.Workload(devices_n, 3 * MiB),
        autoextend=sizing.Autoextend(70, 50),
        zero=flag,
        wipe=flag,
        engine_options=engine_options,
    )
    assert _parse(spec_to_argv(spec)) == spec
    assert PoolSpec.from_dict(spec.to_dict()) == spec
