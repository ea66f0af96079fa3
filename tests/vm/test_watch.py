"""status, doctor and metrics on real pools: every finding provoked, detected, fixed by its own command, gone."""

from __future__ import annotations

import itertools
import json
import time
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from thinpool.rehearse.vm import SHARE_MOUNT, VM

from ..monitoring import thinpool_metric_names
from .helpers import lvs, thinpool_json, vg_row

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]
GiB = 1024**3


def doctor(vm: VM, target: str = "docker/thinpool") -> tuple[int, dict[str, Any]]:
    done = vm.thinpool("doctor", target, "--json", check=False)
    return done.returncode, json.loads(done.stdout)


def finding(report: dict[str, Any], code: str) -> dict[str, str]:
    found: list[dict[str, str]] = [item for item in report["findings"] if item["code"] == code]
    assert found, [item["code"] for item in report["findings"]]
    return found[0]


def codes(report: dict[str, Any]) -> set[str]:
    return {item["code"] for item in report["findings"]}


def run_fix(vm: VM, fix: str, **replace: str) -> None:
    """Run the fix exactly as doctor printed it (placeholders such as /dev/sdX swapped for the VM's disk)."""
    for old, new in replace.items():
        fix = fix.replace(old, new)
    if fix.startswith("thinpool "):
        asks = fix.split()[1] in ("apply", "grow", "destroy", "engine") and "--yes" not in fix.split()
        command = " ".join(vm.thinpool_argv)
        fix = f"{command} {fix.removeprefix('thinpool ')}" + (" --yes" if asks else "")  # those ask before changing
    vm.run(["bash", "-c", fix], timeout=300)


def apply(vm: VM, *args: str, backed_up: bool = True) -> None:
    """thinpool apply; ``backed_up``: then a metadata backup, so that only the finding a test provokes shows."""
    code, result, err = thinpool_json(vm, "apply", "--yes", *args)
    assert code == 0, err or result
    if backed_up:
        named = dict(itertools.pairwise(args))
        vm.thinpool("backup", f"{named.get('--vg', 'docker')}/{named.get('--pool', 'thinpool')}")


def test_status_matches_lvs_and_a_sound_pool_is_healthy(vm: VM) -> None:
    apply(vm, "/dev/vda", backed_up=False)
    vm.run(["lvcreate", "-q", "-V", "1g", "-T", "docker/thinpool", "-n", "vol1"])
    vm.run(["dd", "if=/dev/urandom", "of=/dev/docker/vol1", "bs=1M", "count=100", "oflag=direct", "status=none"])
    status = json.loads(vm.thinpool("status", "docker/thinpool", "--json").stdout)
    pool = lvs(vm, "docker")["thinpool"]
    assert status["data_size"] == pool.size and status["metadata_size"] == pool.metadata_size
    assert status["data_used"] == int(pool.size * Decimal(pool.data_percent) / 100)  # from lvm's percent, exactly
    assert status["data_used"] >= 99 * 1024**2  # 100 MiB written; lvm rounds its percent to 0.01
    assert status["thin_count"] == 1 and status["virtual_size"] == GiB
    assert status["vg_free_extents"] == vg_row(vm, "docker")["free_count"] and status["autoextend_steps"] >= 1
    assert status["monitor"] == "monitored" and status["devices"] == ["/dev/vda"]
    text = vm.thinpool("status").stdout
    assert "docker/thinpool" in text and "autoextend step(s)" in text and "monitored" in text
    code, report = doctor(vm)
    assert code == 3 and codes(report) == {"metadata-backup-missing"}
    run_fix(vm, finding(report, "metadata-backup-missing")["fix"])
    code, report = doctor(vm)
    assert code == 0 and report["findings"] == [] and report["worst"] == "ok"


def test_autoextend_findings_are_fixed_by_their_commands(vm: VM) -> None:
    apply(vm, "/dev/vda")
    vm.run(["lvchange", "-q", "--monitor", "n", "docker/thinpool"])
    code, report = doctor(vm)
    assert code == 4 and finding(report, "not-monitored")["severity"] == "critical"
    run_fix(vm, finding(report, "not-monitored")["fix"])
    vm.run(["lvchange", "-q", "--detachprofile", "docker/thinpool"])
    code, report = doctor(vm)
    assert code == 3 and codes(report) == {"no-autoextend-profile"}
    run_fix(vm, finding(report, "no-autoextend-profile")["fix"])
    apply(vm, "--autoextend-threshold", "100", "/dev/vda")
    code, report = doctor(vm)
    assert codes(report) == {"autoextend-off"}
    run_fix(vm, finding(report, "autoextend-off")["fix"])
    free = vg_row(vm, "docker")["free_count"]
    vm.run(["lvcreate", "-q", "-y", "-Zn", "-an", "-l", str(free), "-n", "filler", "docker"])
    code, report = doctor(vm)
    assert code == 4 and codes(report) == {"no-room-to-autoextend"}
    run_fix(vm, finding(report, "no-room-to-autoextend")["fix"], **{"/dev/sdX": "/dev/vdb"})
    code, report = doctor(vm)
    assert code == 0 and report["findings"] == [], report["findings"]


def test_usage_and_health_findings_are_fixed_by_their_commands(vm: VM) -> None:
    # A small pool that never autoextends by itself, with metadata below the workload model.
    apply(
        vm,
        "--vg",
        "vg2",
        "--pool",
        "small",
        "--data-size",
        "512m",
        "--metadata-size",
        "4m",
        "--autoextend-threshold",
        "100",
        "/dev/vdc",
    )
    code, report = doctor(vm, "vg2/small")
    assert codes(report) == {"autoextend-off", "metadata-below-model"}
    run_fix(vm, finding(report, "metadata-below-model")["fix"])
    assert codes(doctor(vm, "vg2/small")[1]) == {"autoextend-off"}
    vm.run(["lvchange", "-q", "--errorwhenfull", "y", "vg2/small"])
    vm.run(["lvcreate", "-q", "-V", "1g", "-T", "vg2/small", "-n", "vol"])
    vm.run(["dd", "if=/dev/urandom", "of=/dev/vg2/vol", "bs=1M", "count=440", "oflag=direct", "status=none"])
    code, report = doctor(vm, "vg2/small")
    assert finding(report, "data-over-threshold")["severity"] == "warning"  # 440 of 512 MiB
    run_fix(vm, finding(report, "data-over-threshold")["fix"])
    assert "data-over-threshold" not in codes(doctor(vm, "vg2/small")[1])
    filled = vm.run(
        ["dd", "if=/dev/zero", "of=/dev/vg2/vol", "bs=1M", "count=1024", "oflag=direct", "status=none"], check=False
    )
    assert filled.returncode != 0  # the pool ran out of data space: writes fail (error when full)
    code, report = doctor(vm, "vg2/small")
    assert code == 4 and "out" in finding(report, "pool-unhealthy")["problem"]
    run_fix(vm, finding(report, "pool-unhealthy")["fix"])
    assert "pool-unhealthy" not in codes(doctor(vm, "vg2/small")[1])


@pytest.mark.sweep  # doctor's loop-device rule is unit-tested; this proves its pvmove fix on real lvm
def test_a_pool_on_a_loop_device_is_found_and_moved(vm: VM) -> None:
    vm.run(["bash", "-c", "truncate -s 256M /tmp/loop.img && losetup /dev/loop0 /tmp/loop.img"])
    try:
        apply(vm, "--vg", "vgloop", "/dev/loop0")
        code, report = doctor(vm, "vgloop/thinpool")
        fix = finding(report, "loop-device")["fix"]
        assert code == 3 and "pvmove /dev/loop0" in fix
        run_fix(vm, fix, **{"/dev/sdX": "/dev/vde"})
        assert "loop-device" not in codes(doctor(vm, "vgloop/thinpool")[1])
    finally:
        vm.run(["bash", "-c", "vgremove -ff -y vgloop; losetup -d /dev/loop0; rm -f /tmp/loop.img"], check=False)


@pytest.mark.releases("debian-12")
def test_engine_findings_are_fixed_by_engine_configure(vm: VM) -> None:
    apply(vm, "--engine", "docker-devicemapper", "/dev/vda")
    configs = {
        "engine-other-pool": {
            "storage-driver": "devicemapper",
            "storage-opts": ["dm.thinpooldev=/dev/mapper/vg-other", "dm.use_deferred_removal=true"],
        },
        "deferred-removal-off": {
            "storage-driver": "devicemapper",
            "storage-opts": ["dm.thinpooldev=/dev/mapper/docker-thinpool"],
        },
        "tcp-without-tls": {"hosts": ["tcp://0.0.0.0:2375"]},
    }
    for code_name, config in configs.items():
        vm.run(["bash", "-c", f"cat > /etc/docker/daemon.json <<'EOF'\n{json.dumps(config)}\nEOF"])
        _, report = doctor(vm)
        assert code_name in codes(report)
        fix = finding(report, code_name)["fix"]
        if code_name == "tcp-without-tls":
            fix = fix.split(", or ")[0]
        run_fix(vm, fix)
        assert code_name not in codes(doctor(vm)[1])
    fake = "/tmp/docker25/dockerd"
    vm.run(
        [
            "bash",
            "-c",
            f"mkdir -p /tmp/docker25 && printf '#!/bin/sh\\necho Docker version 25.0.3\\n' > {fake} && chmod +x {fake}",
        ]
    )
    path = {"PATH": "/tmp/docker25:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    report = json.loads(vm.thinpool("doctor", "--json", env=path, check=False).stdout)
    assert finding(report, "docker-without-devicemapper")["severity"] == "critical"


def test_metrics_textfile_and_endpoint_parse(vm: VM) -> None:
    apply(vm, "/dev/vda")
    vm.thinpool("metrics", "--textfile", f"{SHARE_MOUNT}/thinpool.prom")
    text = (vm.share / "thinpool.prom").read_text()
    (vm.share / "thinpool.prom").unlink()
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("pool") == "thinpool" and "severity" not in s.labels
    }
    pool = lvs(vm, "docker")["thinpool"]
    assert samples["thinpool_up"] == 1 and samples["thinpool_data_size_bytes"] == pool.size
    assert samples["thinpool_monitored"] == 1 and samples["thinpool_autoextend_steps_available"] >= 1
    pid = vm.start_background([*vm.thinpool_argv, "metrics", "--listen", "127.0.0.1:9720"])
    scrape = (
        "import urllib.request,sys,time\nfor _ in range(100):\n try:\n  sys.stdout.write(urllib.request.urlopen("
        "'http://127.0.0.1:9720/metrics').read().decode()); break\n except OSError: time.sleep(0.2)"
    )
    try:
        scraped = vm.python("-c", scrape).stdout
    finally:
        vm.run(["kill", str(pid)], check=False)
        time.sleep(0.5)
    families = {family.name: family for family in text_string_to_metric_families(scraped)}
    assert families["thinpool_data_size_bytes"].samples[0].value == pool.size
    assert families["thinpool_doctor_findings"].type == "gauge"
    assert thinpool_metric_names() <= set(families)  # every metric the shipped rules and dashboard read
