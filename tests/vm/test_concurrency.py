"""Two thinpool commands started together on a real host: one changes it at a time (the host's change lock).

Without the lock, two applies both plan from the bare disks and the second fails on what the first made
(or both make it); with it, the second waits, plans from what the first left, and has nothing to do.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from thinpool.core.backup import BACKUP_ROOT, stem
from thinpool.rehearse.vm import VM

from .helpers import damage_metadata, lvs, pool_with_files, thinpool_json

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


@pytest.mark.parametrize("rounds", [pytest.param(20, marks=pytest.mark.sweep), 2])
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


@pytest.mark.parametrize("rounds", [pytest.param(20, marks=pytest.mark.sweep), 1])
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


def _who_waited(ran: dict[str, dict[str, Any]], names: dict[str, str]) -> str:
    """The one of the pair that waited for the other (its stderr names the holder); ``names``: run -> command."""
    waited = [run for run, one in ran.items() if WAITED in one["err"]]
    assert len(waited) == 1, ran  # they overlap: exactly one waits, never both, never neither
    (other,) = [run for run in ran if run not in waited]
    assert f"thinpool {names[other]} (PID " in ran[waited[0]]["err"], ran[waited[0]]["err"]
    return waited[0]


def _backups(vm: VM) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(vm.thinpool("backup", "--list", "--json").stdout)["backups"]
    return listed


@pytest.mark.parametrize("rounds", [pytest.param(20, marks=pytest.mark.sweep), 1])
def test_a_backup_started_beside_a_repair_never_copies_damage_and_the_repair_restores_every_file(
    vm: VM, rounds: int
) -> None:
    """The pool's superblock zeroed, one good backup kept: a backup that goes first finds the metadata damaged,
    fails and keeps nothing; one that waits copies the repaired pool. The repair restores the good backup."""
    repair = _command(vm, "repair", "--yes", "--json", "--lock-wait", "600")
    backup = _command(vm, "backup", "--json", "--lock-wait", "600")
    order = random.Random(rounds)
    for _ in range(rounds):
        vm.run(["bash", "-c", f"umount /mnt/vol; rm -rf {BACKUP_ROOT}; {WIPE}"], check=False, timeout=300)
        on_volume = pool_with_files(vm, 4)
        code, good, err = thinpool_json(vm, "backup")
        assert code == 0, err or good
        vm.run(["umount", "/mnt/vol"])
        damage_metadata(vm, "bs=4k count=1")  # the superblock
        backup_first = order.random() < 0.5
        pair = (backup, repair) if backup_first else (repair, backup)
        ran = _together(vm, *pair, order.uniform(0, 0.5))
        copied, repaired = (ran["first"], ran["second"]) if backup_first else (ran["second"], ran["first"])
        names = {"first": "backup", "second": "repair"} if backup_first else {"first": "repair", "second": "backup"}
        waiter = names[_who_waited(ran, names)]
        assert repaired["rc"] == 0 and repaired["json"]["ok"], repaired
        assert repaired["json"]["restored_from"] == stem(good["created"], good["transaction_id"]), repaired
        kept = _backups(vm)
        if waiter == "repair":  # the backup held the lock first: damaged metadata, no backup of it
            assert copied["rc"] != 0 and copied["json"]["kind"] == "thinpool-error", copied
            assert len(kept) == 1, kept
        else:
            assert copied["rc"] == 0 and copied["json"]["transaction_id"] >= good["transaction_id"], copied
            assert len(kept) == 2, kept
        vm.run(["mount", "/dev/docker/vol", "/mnt/vol"])
        restored = vm.run(["bash", "-c", "cd /mnt/vol && sha256sum file1 file2 file3"]).stdout
        vm.run(["umount", "/mnt/vol"])  # the next round's wipe, and the next test's, need the VG unused
        assert restored == on_volume


@pytest.mark.parametrize("rounds", [pytest.param(20, marks=pytest.mark.sweep), 1])
def test_maintain_started_beside_a_destroy_skips_or_goes_first_and_the_pool_is_gone_once(vm: VM, rounds: int) -> None:
    """The timer's pass (no target, no wait) beside a destroy: it skips while the destroy holds the host, or
    does its pass on the whole pool before the destroy, which waits; the destroy then removes everything."""
    destroy = _command(vm, "destroy", "--yes", "--json", "--lock-wait", "600", "--vg", "docker", "--pool", "thinpool")
    maintain = _command(vm, "maintain", "--json")
    order = random.Random(rounds)
    for _ in range(rounds):
        vm.run(["bash", "-c", WIPE], check=False, timeout=300)
        code, made, err = thinpool_json(vm, "apply", "--yes", "/dev/vda")
        assert code == 0, err or made
        maintain_first = order.random() < 0.5
        pair = (maintain, destroy) if maintain_first else (destroy, maintain)
        ran = _together(vm, *pair, order.uniform(0, 0.5))
        cared, destroyed = (ran["first"], ran["second"]) if maintain_first else (ran["second"], ran["first"])
        assert destroyed["rc"] == 0 and destroyed["json"]["ok"], destroyed
        assert cared["rc"] == 0 and cared["json"]["kind"] == "thinpool-maintenance", cared
        if "skipped" in cared["json"]:  # the destroy held the host: this pass is left to the next
            assert cared["json"]["skipped"].startswith("thinpool destroy (PID "), cared["json"]
        else:  # maintain went first, on the whole pool; the destroy waited for it
            assert [pool["pool"] for pool in cared["json"]["pools"]] == ["thinpool"], cared["json"]
            assert "thinpool maintain (PID " in destroyed["err"] and WAITED in destroyed["err"], destroyed["err"]
        assert vm.run(["vgs", "docker"], check=False).returncode != 0  # the VG, its PV label, its profile
        assert "/dev/vda" not in vm.run(["pvs", "--noheadings", "-o", "pv_name"]).stdout
        assert vm.run(["bash", "-c", "compgen -G '/etc/lvm/profile/thinpool-*'"], check=False).stdout == ""
