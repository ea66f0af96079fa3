"""Two thinpool commands started together on a real host: one changes it at a time (the host's change lock).

Without the lock, two applies both plan from the bare disks and the second fails on what the first made
(or both make it); with it, the second waits, plans from what the first left, and has nothing to do.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from thinpool.rehearse.vm import VM

from .helpers import lvs, thinpool_json

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

# $1 and $2: the two commands; $3: seconds between their starts. Each leaves NAME.out, .err and .rc in /tmp.
TOGETHER = r"""
run() { bash -c "$2" > "/tmp/$1.out" 2> "/tmp/$1.err"; echo $? > "/tmp/$1.rc"; }
rm -f /tmp/first.* /tmp/second.*
run first "$1" & sleep "$3"; run second "$2" & wait
"""
WIPE = "vgremove -ff -y docker; pvremove -ff -y /dev/vda /dev/vdb; wipefs -a -q /dev/vda /dev/vdb; rm -f /etc/lvm/profile/thinpool-*"
WAITED = "is changing this host; waiting up to"


def _together(vm: VM, first: str, second: str, jitter: float) -> dict[str, dict[str, Any]]:
    """Run both, ``jitter`` seconds apart; each one's exit code, JSON and stderr."""
    vm.run(["bash", "-c", TOGETHER, "together", first, second, f"{jitter:.2f}"], timeout=900)
    ran = {}
    for name in ("first", "second"):
        out = vm.run(["cat", f"/tmp/{name}.out"]).stdout
        ran[name] = {
            "rc": int(vm.run(["cat", f"/tmp/{name}.rc"]).stdout),
            "json": json.loads(out) if out.startswith("{") else {"unreadable": out},
            "err": vm.run(["cat", f"/tmp/{name}.err"]).stdout,
        }
    return ran


def _command(vm: VM, *args: str) -> str:
    return " ".join([*vm.thinpool_argv, *args])


@pytest.mark.parametrize("rounds", [pytest.param(20, marks=pytest.mark.sweep), 3])
def test_two_applies_started_together_make_the_pool_once(vm: VM, rounds: int) -> None:
    apply = _command(vm, "apply", "--yes", "--json", "--lock-wait", "600", "/dev/vda")
    jitters = random.Random(rounds)  # seeded: a failing round can be run again
    for jitter in [jitters.uniform(0, 0.5) for _ in range(rounds)]:
        vm.run(["bash", "-c", WIPE], check=False, timeout=300)
        ran = _together(vm, apply, apply, jitter)
        assert all(one["rc"] == 0 for one in ran.values()), ran
        changed = [name for name, one in ran.items() if one["json"]["changed"]]
        assert len(changed) == 1, (jitter, ran)  # one made the pool; the other found it made
        (waited,) = [one for name, one in ran.items() if name not in changed]
        assert WAITED in waited["err"] and " (PID " in waited["err"], waited["err"]
        pool = lvs(vm, "docker")["thinpool"]
        assert pool.active and pool.seg_monitor == "monitored"
    code, again, err = thinpool_json(vm, "apply", "--yes", "/dev/vda")
    assert code == 0 and not again["changed"], err or again  # what one run makes


@pytest.mark.parametrize("rounds", [pytest.param(20, marks=pytest.mark.sweep), 2])
def test_maintain_started_during_a_grow_skips_or_goes_first_and_the_grow_still_lands(vm: VM, rounds: int) -> None:
    grow = _command(vm, "grow", "--yes", "--json", "--lock-wait", "600", "/dev/vdb")
    maintain = _command(vm, "maintain", "--json", "docker/thinpool")
    skipped = 0
    for round_number in range(rounds):
        vm.run(["bash", "-c", WIPE], check=False, timeout=300)
        code, made, err = thinpool_json(vm, "apply", "--yes", "/dev/vda")
        assert code == 0, err or made
        jitter = 0.1 * (round_number % 4)
        if round_number % 2:  # maintain started first: the grow then mostly waits for its pass
            ran = _together(vm, maintain, grow, jitter)
            cared, grown = ran["first"], ran["second"]
        else:
            ran = _together(vm, grow, maintain, jitter)
            grown, cared = ran["first"], ran["second"]
        assert grown["rc"] == 0 and grown["json"]["ok"], grown
        assert cared["rc"] == 0 and cared["json"]["kind"] == "thinpool-maintenance", cared
        if "skipped" in cared["json"]:  # the grow held the lock: the timer's pass is left for the next one
            assert cared["json"]["skipped"].startswith("thinpool grow (PID "), cared["json"]
            skipped += 1
        else:  # maintain came first and did its pass; the grow waited for it
            assert "thinpool maintain (PID " in grown["err"] and WAITED in grown["err"], grown["err"]
        assert "/dev/vdb" in vm.run(["pvs", "--noheadings", "-o", "pv_name", "-S", "vg_name=docker"]).stdout
    print(f"maintain skipped in {skipped} of {rounds} rounds, went first in the others")
