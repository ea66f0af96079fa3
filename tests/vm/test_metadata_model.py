"""The calibrated metadata model is never below what dm-thin really uses (a workload it was not fitted on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks import metadata_scale
from benchmarks.metadata import reserve, usage_after

from thinpool.core import sizing
from thinpool.core.units import GiB, KiB, MiB
from thinpool.rehearse.vm import VM

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]
GUEST = Path(__file__).parents[2] / "benchmarks/guest_workload.py"
SPEC = {"name": "test", "base_mib": 48, "layers": 2, "layer_mib": 12, "containers": 6, "writes": 40,
        "churn_rounds": 1, "vg": "bench", "pool": "pool", "volume_gib": 4}  # fmt: skip


@pytest.mark.parametrize("chunk", [64 * KiB, 512 * KiB])
def test_model_never_below_measured_metadata(vm: VM, chunk: int) -> None:
    vm.run(
        [
            "bash",
            "-c",
            "pvcreate -q /dev/vdb && vgcreate -q bench /dev/vdb && lvcreate -q -y --type thin-pool "
            f"-n pool -L 1g --chunksize {chunk}b --poolmetadatasize 64m --zero n bench",
        ]
    )
    spec = {**SPEC, "chunk": chunk}
    phases = json.loads(vm.run_script(GUEST, json.dumps(spec), timeout=900).stdout.splitlines()[-1])["phases"]
    assert [phase["thin_devices"] for phase in phases] == [1, 1, 3, 9, 9]
    for index, phase in enumerate(phases):
        measured = phase["metadata_used"] - reserve(phase["metadata_total"])
        modelled = sizing.metadata_need(usage_after(spec, index, data_size=GiB, metadata_size=64 * MiB))
        print(
            f"{chunk // KiB} KiB, {phase['phase']}: measured {measured} B, model {modelled} B "
            f"({modelled / measured:.2f}x)"
        )
        assert modelled >= measured, phase["phase"]


@pytest.mark.parametrize("chunk", [pytest.param(64 * KiB, marks=pytest.mark.sweep), 512 * KiB])
def test_model_holds_as_thin_devices_pile_up(vm: VM, chunk: int) -> None:
    """The short version of benchmarks/metadata_scale.py (1,000 devices there): snapshots made with dm messages as
    the engines make them; at every checkpoint the model is above what dm-thin uses, and at most 1.5x it."""
    workload = {"base_mib": 48, "layers": 4, "layer_mib": 8, "writes": 3, "volume_gib": 4}
    result = metadata_scale.measure(vm, "/dev/vdb", chunk, 160, workload, data=2 * GiB)
    assert [phase["thin_devices"] for phase in result["phases"]] == [5, 16, 40, 80, 160]
    for row in metadata_scale.rows({"results": [result]}):
        print(
            f"{chunk // KiB} KiB, {row['devices']} devices: measured {row['measured']} B, model {row['model']} B "
            f"({row['model'] / row['measured']:.2f}x)"
        )
        assert row["measured"] <= row["model"] <= row["measured"] * 3 // 2, row
