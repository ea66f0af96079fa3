"""The shipped monitoring against the real parts: Debian's node_exporter reads thinpool's textfile, and a
real Prometheus scrapes ``thinpool metrics --listen``, evaluates the shipped rules, and fires the usage and
forecast alerts while a pool is being filled.

The test's copy of the rules has short ``for:`` and ``[1h]`` windows so that it runs in a minute.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from thinpool.rehearse.vm import SHARE_MOUNT, VM

from ..monitoring import RULES, thinpool_metric_names
from .helpers import thinpool_json, vg_row

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

POOL = "vg2/small"
GET = (
    "import sys, urllib.request\n"
    "try:\n sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())\n"
    "except OSError as error:\n sys.exit(str(error))"
)
PROMETHEUS_CONFIG = f"""
global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 1s
rule_files: ["{SHARE_MOUNT}/rules.yml"]
scrape_configs:
  - job_name: thinpool
    static_configs: [{{targets: ["127.0.0.1:9720"]}}]
"""


def _get(vm: VM, url: str) -> str:
    return vm.python("-c", GET, url, check=False).stdout


def _wait_for(vm: VM, url: str, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = _get(vm, url)
        if text:
            return text
        time.sleep(1)
    raise AssertionError(f"nothing answered on {url} within {seconds:g} s")


def _test_rules() -> str:
    """The shipped rules with windows a test can wait for."""
    text = re.sub(r"for: \d+m", "for: 0s", RULES.read_text())
    return text.replace("[1h]", "[20s]")


def _firing(vm: VM) -> dict[str, dict[str, Any]]:
    alerts = json.loads(_get(vm, "http://127.0.0.1:9090/api/v1/alerts") or "{}").get("data", {}).get("alerts", [])
    return {alert["labels"]["alertname"]: alert for alert in alerts if alert["state"] == "firing"}


# The file's mtime, then its text, read only when no rename came between (the two stats agree).
READ_STILL = (
    'a=$(stat -c %.9Y "$1") && t=$(cat "$1") && b=$(stat -c %.9Y "$1") && [ "$a" = "$b" ] && printf "%s\\n%s" "$a" "$t"'
)
COLLECTION_TOOK = re.compile(r"^thinpool_collection_duration_seconds (\S+)$", re.MULTILINE)


def _collection_started(vm: VM, path: str, after: float, seconds: float = 60) -> float:
    """When the collection of a textfile written after ``after`` started, in seconds of the guest's clock:
    the file's mtime less the collection time the file reports."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        mtime, _, text = vm.run(["sh", "-c", READ_STILL, "read", path], check=False).stdout.partition("\n")
        took = COLLECTION_TOOK.findall(text)
        if mtime and took and (started := float(mtime) - float(took[0])) > after:
            return started
        time.sleep(0.5)
    raise AssertionError(f"{path} was not rewritten within {seconds:g} s")


def test_node_exporter_serves_the_textfile_the_running_writer_keeps_fresh(vm: VM) -> None:
    """What thinpool-metrics.service runs: metrics --textfile --every, stopped by SIGTERM."""
    assert thinpool_json(vm, "apply", "--yes", "/dev/vda")[0] == 0
    prom = "/tmp/textfile/thinpool.prom"
    vm.run(["mkdir", "-p", "/tmp/textfile"])
    writer = vm.start_background([*vm.thinpool_argv, "metrics", "--textfile", prom, "--every", "2s", "docker/thinpool"])
    exporter = vm.start_background(
        [
            "prometheus-node-exporter",
            "--web.listen-address=127.0.0.1:9100",
            "--collector.disable-defaults",
            "--collector.textfile",
            "--collector.textfile.directory=/tmp/textfile",
        ]
    )
    try:
        first = _collection_started(vm, prom, 0, seconds=120)
        second = _collection_started(vm, prom, first + 0.5)  # the same process writes again
        text = _wait_for(vm, "http://127.0.0.1:9100/metrics")
        assert vm.run(["kill", "-0", str(writer)], check=False).returncode == 0  # still running
    finally:
        vm.run(["kill", str(exporter)], check=False)
        vm.run(["kill", str(writer)], check=False)
    # --every 2s: from the start of one collection to the start of the next (right after the last one ends when it
    # took longer, as a first one on cold caches under emulation does); less only by the two renames' times.
    assert 1.8 < second - first < 30, (first, second)
    assert "node_textfile_scrape_error 0" in text
    assert re.search(r'node_textfile_mtime_seconds\{file="[^"]*thinpool\.prom"\}', text)
    served = set(re.findall(r"^(thinpool_[a-z_]+)[{ ]", text, re.MULTILINE))
    assert thinpool_metric_names() | {"thinpool_collection_duration_seconds"} <= served
    deadline = time.monotonic() + 20
    while vm.run(["kill", "-0", str(writer)], check=False).returncode == 0:  # SIGTERM ends it
        assert time.monotonic() < deadline, "the writer did not stop on SIGTERM"
        time.sleep(0.5)
    assert vm.run(["ls", "/tmp/textfile"]).stdout.split() == ["thinpool.prom"]  # no half-written file left


def test_prometheus_fires_the_usage_and_forecast_alerts_while_a_pool_fills(vm: VM) -> None:
    code, result, err = thinpool_json(
        vm, "apply", "--yes", "--vg", "vg2", "--pool", "small", "--data-size", "512m", "/dev/vdc"
    )
    assert code == 0, err or result
    free = vg_row(vm, "vg2")["free_count"]
    vm.run(["lvcreate", "-q", "-y", "-Zn", "-an", "-l", str(free), "-n", "filler", "vg2"])  # autoextend cannot help
    vm.run(["lvcreate", "-q", "-V", "1g", "-T", POOL, "-n", "vol"])
    (vm.share / "rules.yml").write_text(_test_rules())
    (vm.share / "prometheus.yml").write_text(PROMETHEUS_CONFIG)
    exporter = vm.start_background([*vm.thinpool_argv, "metrics", "--listen", "127.0.0.1:9720", POOL])
    server = vm.start_background(
        [
            "prometheus",
            f"--config.file={SHARE_MOUNT}/prometheus.yml",
            "--storage.tsdb.path=/tmp/prometheus",
            "--web.listen-address=127.0.0.1:9090",
        ]
    )
    try:
        _wait_for(vm, "http://127.0.0.1:9090/-/ready")
        rules = json.loads(_wait_for(vm, "http://127.0.0.1:9090/api/v1/rules"))["data"]["groups"]
        assert sum(len(group["rules"]) for group in rules) == _test_rules().count("- alert:") + 2
        # An empty pool that cannot grow, and has no metadata backup yet.
        assert set(_firing(vm)) <= {"ThinPoolNoRoomToAutoextend", "ThinPoolMetadataBackupStale"}
        vm.thinpool("backup", POOL)
        for step in range(9):  # about 50 MiB every few seconds: a steady climb to 90%
            vm.run(
                [
                    "dd",
                    "if=/dev/zero",
                    "of=/dev/vg2/vol",
                    "bs=1M",
                    "count=50",
                    f"seek={step * 50}",
                    "oflag=direct",
                    "status=none",
                ]
            )
            time.sleep(2)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not {"ThinPoolDataUsageHigh", "ThinPoolFillForecast"} <= set(_firing(vm)):
            time.sleep(2)
        firing = _firing(vm)
        assert {"ThinPoolDataUsageHigh", "ThinPoolFillForecast", "ThinPoolNoRoomToAutoextend"} <= set(firing), firing
        assert "ThinPoolMetadataBackupStale" not in firing  # backed up since
        assert firing["ThinPoolDataUsageHigh"]["labels"] == {
            "alertname": "ThinPoolDataUsageHigh",
            "severity": "warning",
            "vg": "vg2",
            "pool": "small",
            "job": "thinpool",
            "instance": "127.0.0.1:9720",
        }
        healthy = json.loads(_get(vm, "http://127.0.0.1:9090/api/v1/rules"))["data"]["groups"]
        assert all(rule["health"] == "ok" for group in healthy for rule in group["rules"]), healthy
    finally:
        vm.run(["kill", str(server), str(exporter)], check=False)
        time.sleep(1)
        vm.run(["rm", "-rf", "/tmp/prometheus"], check=False)
