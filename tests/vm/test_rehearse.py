"""thinpool rehearse as an operator runs it: the real CLI, its own throwaway VM."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from thinpool.rehearse import deps

pytestmark = pytest.mark.vm


def _qemu_processes() -> list[str]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if "qemu-system" in line and "thinpool-vm-" in line]


def test_rehearse_applies_the_plan_and_cleans_up(tmp_path: object) -> None:
    if os.geteuid() != 0 or deps.missing():
        if os.environ.get("THINPOOL_REQUIRE_VM") == "1":
            pytest.fail("the rehearsal needs root and its packages here")
        pytest.skip("needs root and the rehearsal packages")
    before = set(_qemu_processes())
    done = subprocess.run(
        [sys.executable, "-m", "thinpool", "rehearse", "--disk-size", "4GiB", "--disk-size", "2GiB",
         "--vg", "vg-docker", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["matches_plan"] and not report["second_changed"]
    layout = report["plan"]["layout"]
    assert layout["free_extents"] == 1023 + 511
    assert report["pool"]["data_size"] == layout["data_size"]
    assert report["pool"]["vg_free_extents"] == layout["headroom_extents"] + layout["left_extents"]
    assert set(_qemu_processes()) <= before  # no VM left behind
