"""The shipped Prometheus rules and Grafana dashboard: valid, tested by promtool, and about metrics that exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from thinpool.app import metrics
from thinpool.core import doctor

from ..monitoring import DASHBOARD, RULE_TESTS, RULES, rules, thinpool_metric_names
from .builders import status

README = Path(__file__).parents[2] / "README.md"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("THINPOOL_REQUIRE_VM") == "1":
            pytest.fail("promtool is missing: python3 -m thinpool.rehearse.deps --install --engines installs it")
        pytest.skip("promtool is not installed (python3 -m thinpool.rehearse.deps --install --engines)")
    return found


def test_promtool_accepts_the_rules_and_every_alert_passes_its_unit_tests() -> None:
    promtool = _promtool()
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_promtool_test_catches_an_alert_that_no_longer_fires(tmp_path: Path) -> None:
    """The unit tests can fail: the same tests against rules with a raised threshold do."""
    promtool = _promtool()
    broken = RULES.read_text().replace("thinpool_data_used_ratio > 0.85", "thinpool_data_used_ratio > 0.99")
    (tmp_path / RULES.name).write_text(broken)
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert tested.returncode != 0 and "ThinPoolDataUsageHigh" in tested.stdout + tested.stderr


def test_every_alert_explains_itself_and_links_a_readme_section_that_exists() -> None:
    anchors = {
        "#" + re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in README.read_text().splitlines()
        if line.startswith("#")
    }
    alerts = [rule for rule in rules() if "alert" in rule]
    assert len(alerts) >= 12
    tested = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for test in tested for case in test.get("alert_rule_test", []) if case["exp_alerts"]}
    for rule in alerts:
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], rule["alert"]
        assert notes["runbook_url"].removeprefix("README.md") in anchors, notes["runbook_url"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["alert"] in fired, f"{rule['alert']} has no promtool test that makes it fire"


def test_every_thinpool_metric_the_rules_and_dashboard_read_is_exported() -> None:
    sound = status()
    reading = metrics.Reading("docker", "thinpool", sound, tuple(doctor.diagnose(sound)))
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(metrics.registry_for(lambda: [reading])).decode()
    exported = {family.name for family in text_string_to_metric_families(text)}
    used = thinpool_metric_names()
    assert {"thinpool_data_used_ratio", "thinpool_reclaimable_bytes", "thinpool_error_when_full"} <= used
    assert used <= exported, used - exported
    assert DASHBOARD.exists()


def test_the_textfile_and_the_endpoint_carry_the_same_samples(tmp_path: Path) -> None:
    """The textfile is written without prometheus_client; Prometheus' own parser reads it as the endpoint's."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    unmonitored = status(pool={"seg_monitor": "not monitored"})
    readings = [
        metrics.Reading("docker", "thinpool", unmonitored, tuple(doctor.diagnose(unmonitored))),
        metrics.Reading('odd"vg\\', "gone", None),
    ]

    def samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        found = {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        took = [value for name, _, value in found if name == metrics.DURATION]
        assert len(took) == 1 and 0 < took[0] < 1  # each collection times itself
        return {sample for sample in found if sample[0] != metrics.DURATION}

    path = tmp_path / "thinpool.prom"
    metrics.write_textfile(str(path), lambda: readings)
    written = path.read_text()
    assert samples(written) == samples(generate_latest(metrics.registry_for(lambda: readings)).decode())
    assert ("thinpool_up", (("pool", "gone"), ("vg", 'odd"vg\\')), 0.0) in samples(written)
    assert oct(path.stat().st_mode & 0o777) == "0o644" and list(tmp_path.iterdir()) == [path]


def test_a_textfile_writer_that_stays_running_rewrites_until_stopped(tmp_path: Path) -> None:
    """--every: written at once, then again after each wait, until the wait reports a stop (SIGTERM)."""
    sound = status()
    reads: list[int] = []
    waits: list[float] = []

    def read() -> list[metrics.Reading]:
        reads.append(len(reads))
        return [metrics.Reading("docker", "thinpool", replace(sound, data_used=len(reads)))]

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return len(waits) == 3  # stopped during the third wait

    path = tmp_path / "thinpool.prom"
    assert metrics.write_textfile_every(str(path), read, 60, wait) == 3
    assert len(reads) == 3 and all(59 < seconds <= 60 for seconds in waits)  # from each write's start
    assert 'thinpool_data_used_bytes{vg="docker",pool="thinpool"} 3.0' in path.read_text()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--textfile", "x.prom", "--every", "0"], "at least one second"),
        (["--textfile", "x.prom", "--every", "5 min"], "not a time span"),
        (["--listen", "127.0.0.1:9720", "--every", "1min"], "--every is for --textfile"),
    ],
)
def test_a_bad_every_is_refused_with_the_fix(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from thinpool.app.context import Context
    from thinpool.cli import main
    from thinpool.testing import ScriptedRunner

    runner = ScriptedRunner()
    try:
        code = main(["metrics", *argv], context=Context(runner, root=tmp_path))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    assert code in (1, 2) and message in capsys.readouterr().err
    assert runner.exhausted and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_the_endpoint_serves_fresh_metrics_until_stopped_and_frees_its_port(address: str) -> None:
    import socket
    import threading
    import urllib.request

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family) as probe:
            probe.bind((address, 0))
            port = probe.getsockname()[1]
    except OSError:
        pytest.skip(f"no {address} here")
    reads: list[int] = []

    def read() -> list[metrics.Reading]:
        reads.append(1)
        return [metrics.Reading("docker", "thinpool", status())]

    stop = threading.Event()
    serving = threading.Thread(target=metrics.serve, args=(address, port, read, stop))
    serving.start()
    host = f"[{address}]" if ":" in address else address
    try:
        for _ in range(100):
            try:
                text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
                break
            except OSError:
                threading.Event().wait(0.05)
        urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read()
    finally:
        stop.set()
        serving.join(timeout=10)
    assert 'thinpool_up{pool="thinpool",vg="docker"} 1.0' in text and len(reads) == 2  # read afresh per scrape
    assert not serving.is_alive()
    with socket.socket(family) as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a restarted exporter binds
        again.bind((address, port))  # nothing listens there once it stopped
        again.listen()
