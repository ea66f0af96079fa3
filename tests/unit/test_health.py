"""status and doctor, pure: from an lvm report (as lvm 2.03.16 prints it) and the profile text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from thinpool.core import doctor, findings, health, sizing
from thinpool.core.lvm import commands
from thinpool.core.model import EngineState
from thinpool.core.units import GiB, MiB
from thinpool.engines import doctor as engine_doctor

from . import builders
from .builders import EXTENT, codes, status, status_report


def test_status_from_one_report() -> None:
    found = status()
    assert found.data_used == 3 * GiB // 2 and found.metadata_used == int(48 * MiB * 0.1)
    assert found.thin_count == 2 and found.virtual_size == 4 * GiB and found.overprovision_ratio == 4 / 3
    assert found.devices == ("/dev/vda",) and found.autoextend == sizing.Autoextend(80, 20)
    # 768 data extents: steps need 154, then 185 extents (no metadata growth here): 200 free allow one
    assert found.autoextend_steps == 1
    assert doctor.diagnose(found) == []


def test_missing_pool_names_the_pools_there() -> None:
    with pytest.raises(health.PoolNotFound, match="not a thin pool"):
        builders.pool_status(status_report(), "docker", "nope", {})


def test_autoextend_steps_are_counted_until_the_vg_runs_out() -> None:
    auto = sizing.Autoextend(80, 20)
    assert health.autoextend_steps(100, 2, 19, EXTENT, 512 * 1024, auto) == 0
    assert health.autoextend_steps(100, 2, 20, EXTENT, 512 * 1024, auto) == 1
    assert health.autoextend_steps(100, 2, 20 + 24, EXTENT, 512 * 1024, auto) == 2
    assert health.autoextend_steps(100, 2, 10**6, EXTENT, 512 * 1024, sizing.Autoextend(100, 20)) == 0


@pytest.mark.parametrize(
    ("kwargs", "code", "severity", "fix"),
    [
        (
            {"pool": {"seg_monitor": "not monitored"}},
            "not-monitored",
            "critical",
            "lvchange --monitor y docker/thinpool",
        ),
        ({"profile": ""}, "no-autoextend-profile", "warning", "thinpool apply --vg docker --pool thinpool"),
        (
            {"profile": commands.profile_content("docker", "thinpool", 100, 20)},
            "autoextend-off",
            "warning",
            "--autoextend-threshold 80",
        ),
        ({"free": 100}, "no-room-to-autoextend", "critical", "thinpool grow"),
        ({"pool": {"data_percent": "85.00"}}, "data-over-threshold", "warning", "lvextend -l +154 docker/thinpool"),
        ({"pool": {"data_percent": "97.10"}}, "data-over-threshold", "critical", "lvextend"),
        ({"pool": {"metadata_percent": "81.00"}}, "metadata-over-threshold", "warning", "--poolmetadatasize"),
        (
            {"pool": {"lv_metadata_size": str(8 * MiB)}},
            "metadata-below-model",
            "warning",
            "lvextend --poolmetadatasize +",
        ),
        ({"devices": "/dev/loop0(0)"}, "loop-device", "warning", "vgextend docker /dev/sdX && pvmove /dev/loop0"),
        (
            {"pool": {"lv_attr": "twi-aotzD-", "lv_health_status": "out_of_data"}},
            "pool-unhealthy",
            "critical",
            "lvextend -l +154 docker/thinpool",
        ),
        (
            {"pool": {"lv_attr": "twi-aotzM-", "lv_health_status": "metadata_read_only"}},
            "metadata-needs-repair",
            "critical",
            "thinpool repair docker/thinpool --yes",
        ),
    ],
)
def test_each_finding_names_its_fix(kwargs: dict[str, Any], code: str, severity: str, fix: str) -> None:
    found = [finding for finding in doctor.diagnose(status(**kwargs)) if finding.code == code]
    assert found, codes(doctor.diagnose(status(**kwargs)))
    assert found[0].severity == severity and fix in found[0].fix
    assert findings.worst(doctor.diagnose(status(**kwargs))) in ("warning", "critical")


def test_an_inactive_pool_is_named_with_its_volumes_and_not_blamed_for_what_only_an_active_pool_has() -> None:
    down = status(pool={"lv_attr": "twi---tz--", "seg_monitor": "", "data_percent": "", "metadata_percent": ""})
    found = doctor.diagnose(down)
    assert codes(found) == {"pool-inactive"}  # not "not monitored": lvchange --monitor cannot mend it
    (inactive,) = found
    assert inactive.severity == "critical" and "(vol0, vol1) cannot be mounted" in inactive.problem
    assert "thinpool repair docker/thinpool --yes" in inactive.fix and "thinpool activate" in inactive.fix
    empty = doctor.diagnose(status(thin=0, pool={"lv_attr": "twi---tz--", "seg_monitor": ""}))
    assert [(finding.code, finding.severity) for finding in empty] == [("pool-inactive", "warning")]


def _state(daemon: Mapping[str, object] | str, dockerd: str = "20.10.24") -> EngineState:
    text = daemon if isinstance(daemon, str) else json.dumps(daemon)
    return EngineState(observed=True, files={"/etc/docker/daemon.json": text}, versions={"dockerd": dockerd})


GOOD = {"storage-driver": "devicemapper",
        "storage-opts": ["dm.thinpooldev=/dev/mapper/docker-thinpool", "dm.use_deferred_removal=true"]}  # fmt: skip


@pytest.mark.parametrize(
    ("state", "code", "severity"),
    [
        (
            _state({**GOOD, "storage-opts": ["dm.thinpooldev=/dev/mapper/vg-other", "dm.use_deferred_removal=true"]}),
            "engine-other-pool",
            "warning",
        ),
        (
            _state({**GOOD, "storage-opts": ["dm.thinpooldev=/dev/mapper/docker-thinpool"]}),
            "deferred-removal-off",
            "warning",
        ),
        (_state({**GOOD, "hosts": ["tcp://0.0.0.0:2375"]}), "tcp-without-tls", "critical"),
        (_state(GOOD, dockerd="25.0.3"), "docker-without-devicemapper", "critical"),
        (_state("{broken"), "daemon-json-invalid", "warning"),
        (
            EngineState(
                files={
                    "/etc/containerd/config.toml": 'version = 2\n[plugins."io.containerd.snapshotter.v1.devmapper"]\npool_name = "x-y"\n'
                }
            ),
            "engine-other-pool",
            "warning",
        ),
    ],
)
def test_engine_findings(state: EngineState, code: str, severity: str) -> None:
    found = engine_doctor(state, "docker", "thinpool")
    assert [(finding.code, finding.severity) for finding in found] == [(code, severity)]
    assert found[0].fix.startswith("thinpool engine configure") or "repair" in found[0].fix


def test_a_sound_engine_config_has_no_findings() -> None:
    assert (
        engine_doctor(
            _state({**GOOD, "hosts": ["unix:///run/docker.sock", "tcp://127.0.0.1:2375"]}), "docker", "thinpool"
        )
        == []
    )


def test_metrics_carry_the_status_and_findings_by_severity(tmp_path: object) -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from thinpool.app import metrics

    unmonitored = status(pool={"seg_monitor": "not monitored"})
    readings = [
        metrics.Reading("docker", "thinpool", unmonitored, tuple(doctor.diagnose(unmonitored))),
        metrics.Reading("vg2", "gone", None),
    ]
    text = generate_latest(metrics.registry_for(lambda: readings)).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    key = (("pool", "thinpool"), ("vg", "docker"))
    assert samples[("thinpool_up", key)] == 1 and samples[("thinpool_up", (("pool", "gone"), ("vg", "vg2")))] == 0
    assert samples[("thinpool_data_used_bytes", key)] == 3 * GiB // 2
    assert samples[("thinpool_data_used_ratio", key)] == 0.5
    assert samples[("thinpool_monitored", key)] == 0 and samples[("thinpool_autoextend_steps_available", key)] == 1
    assert samples[("thinpool_doctor_findings", (*key[:1], ("severity", "critical"), key[1]))] == 1
    assert ("thinpool_data_used_bytes", (("pool", "gone"), ("vg", "vg2"))) not in samples
