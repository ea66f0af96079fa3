"""Hypothesis over the CLI grammar of ``plan``: whatever is typed, the answer is a plan lvm would make or a refusal.

Never a traceback: exit 0 (a plan), 1 (a refusal that names its fix) or 2 (argparse's usage error).
Every accepted plan obeys lvm's rules. Runs here on virtual disks, so nothing is read or run.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thinpool.app.context import Context
from thinpool.cli import main
from thinpool.core import names, sizing
from thinpool.testing import ScriptedRunner

EXAMPLES = int(os.environ.get("THINPOOL_FUZZ_EXAMPLES", "400"))

_UNITS = st.sampled_from(["", "b", "k", "m", "g", "t", "KiB", "MiB", "GiB", "TiB", "GB", "s", "%VG", "%FREE", "x"])
SIZES = st.one_of(
    st.builds(lambda number, unit: f"{number}{unit}", st.integers(-5, 2**50), _UNITS),
    st.sampled_from(["4GiB", "744GiB", "1t", "64k", "512k", "1m", "16g", "8g", "15.81g", "0", "-1g", "nan", ""]),
    st.text(max_size=8),
)
# Mostly disks that can hold a pool, so that accepted plans are checked too.
DISKS = st.one_of(
    st.builds(lambda number, unit: f"{number}{unit}", st.integers(16, 2**20), st.sampled_from(["MiB", "GiB"])),
    st.builds(lambda number: f"{number}t", st.integers(1, 2000)),
    SIZES,
)
NAMES = st.one_of(
    st.text(alphabet="abz09+_.-", min_size=0, max_size=12),
    st.sampled_from(["docker", "thinpool", "-x", "..", "a_tmeta", "snapshot1", "x" * 128, "v-" * 40, "pool_cvol"]),
    st.text(max_size=6),
)
NUMBERS = st.one_of(st.integers(-10, 10**7).map(str), st.sampled_from(["", "1e3", "NaN", "50", "99", "100"]))
HOSTS = st.sampled_from(
    [
        "unix:///run/docker.sock",
        "tcp://127.0.0.1:2375",
        "tcp://0.0.0.0:2375",
        "tcp://[::1",
        "ssh://x",
        "tcp://1.2.3.4:99999",
        "fd://",
        "",
        "unix://",
        "tcp://:0",
    ]
)
OPTIONS = st.one_of(
    st.tuples(
        st.sampled_from(
            [
                "--extent-size",
                "--chunk-size",
                "--metadata-size",
                "--data-size",
                "--headroom",
                "--max-pool-size",
                "--thin-device-size",
                "--base-size",
                "--volume-size",
            ]
        ),
        SIZES,
    ),
    st.tuples(st.sampled_from(["--vg", "--pool", "--volume-name"]), NAMES),
    st.tuples(
        st.sampled_from(["--max-thin-devices", "--autoextend-threshold", "--autoextend-percent", "--min-free-space"]),
        NUMBERS,
    ),
    st.tuples(
        st.just("--engine"),
        st.sampled_from(["none", "docker-devicemapper", "containerd-devmapper", "docker-overlay2-thin", "podman"]),
    ),
    st.tuples(st.just("--host"), HOSTS),
    st.tuples(st.just("--dns"), st.sampled_from(["172.17.0.1", "::1", "dns", "300.1.1.1", ""])),
    st.tuples(st.just("--storage-opt"), st.sampled_from(["dm.fs=ext4", "dm.thinpooldev=x", "fs=xfs", "dm.=1", "dm.x"])),
    st.tuples(
        st.just("--data-root"),
        st.sampled_from(
            ["/var/lib/docker", "/var/lib/docker/", "/var/lib/../lib", "relative", "/", "/srv/docker root"]
        ),
    ),
    st.tuples(st.sampled_from(["--zero", "--wipe", "--insecure-tcp", "--force"]), st.none()),
)


def _argv(disks: list[str], options: list[tuple[str, str | None]], devices: list[str]) -> list[str]:
    argv = ["plan", "--json"]
    for size in disks:
        argv.append(f"--disk-size={size}")
    for flag, value in options:
        argv += [flag] if value is None else [f"{flag}={value}"]
    return [*argv, "--", *devices] if devices else argv


def _assert_lvm_rules(plan: dict[str, object]) -> None:
    layout = plan["layout"]
    assert isinstance(layout, dict)
    assert all(type(value) is int for value in layout.values())
    extent, chunk = layout["extent_size"], layout["chunk_size"]
    assert layout["metadata_extents"] >= 1 and layout["data_extents"] >= 1
    assert sizing.METADATA_MIN <= layout["metadata_size"] <= sizing.METADATA_MAX
    assert layout["spare_extents"] == layout["metadata_extents"]  # blank disks: the spare is new
    assert chunk % sizing.CHUNK_MIN == 0 and sizing.CHUNK_MIN <= chunk <= sizing.CHUNK_MAX
    assert layout["data_size"] % chunk == 0 and layout["data_size"] == layout["data_extents"] * extent
    assert sizing.max_addressable_data(chunk) >= layout["data_size"]
    parts = ("data_extents", "metadata_extents", "spare_extents", "headroom_extents", "redundancy_extents")
    used = sum(layout[key] for key in parts)
    assert used + layout["left_extents"] == layout["free_extents"] and layout["left_extents"] >= 0
    spec = plan["spec"]
    assert isinstance(spec, dict)
    names.check_pool(spec["vg"], spec["pool"])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    disks=st.lists(DISKS, min_size=1, max_size=3),
    options=st.lists(OPTIONS, max_size=6),
    devices=st.one_of(st.just([]), st.just([]), st.lists(st.sampled_from(["/dev/sdb", "sdb", "-h"]), max_size=2)),
)
def test_plan_answers_every_input_with_a_plan_or_a_refusal(
    disks: list[str], options: list[tuple[str, str | None]], devices: list[str]
) -> None:
    runner = ScriptedRunner()  # any command run would fail the test: a --disk-size plan reads nothing
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(_argv(disks, options, devices), context=Context(runner=runner, euid=0))
        except SystemExit as usage:
            code = usage.code if isinstance(usage.code, int) else 2
            assert code == 2, err.getvalue()
            return
    assert code in (0, 1), (code, err.getvalue())
    assert runner.history == []
    if code == 1:
        assert "fix:" in err.getvalue() and "Traceback" not in err.getvalue()
        return
    _assert_lvm_rules(json.loads(out.getvalue()))


@pytest.mark.parametrize("size", ["744GiB", "4GiB", "17t", "100MiB"])
def test_the_fuzz_rules_hold_for_plain_plans(size: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--json", "--disk-size", size]) == 0
    _assert_lvm_rules(json.loads(capsys.readouterr().out))
