"""Pools other tools made: their owner read from lvm's record, fixes in the owner's words, and adopting them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thinpool.app.context import Context
from thinpool.cli import main
from thinpool.core import adopt, doctor, owners
from thinpool.core.findings import Severity
from thinpool.core.health import PoolStatus
from thinpool.core.lvm import commands, report
from thinpool.core.model import Observed
from thinpool.core.plan import ActionKind
from thinpool.core.sizing import Autoextend
from thinpool.core.units import GiB, MiB
from thinpool.testing import ScriptedRunner

from .builders import lv_row, lvm_report

Owner = owners.Owner


def _marks(vg: str = "vg0", pool: str = "pool", **fields: object) -> owners.Marks:
    return owners.Marks(vg, pool, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("marks", "owner", "said"),
    [
        (_marks(pool_tags=(commands.MANAGED_TAG,), vg_tags=("incus_pool",)), Owner.THINPOOL, "thinpool.managed"),
        (_marks(vg="default", vg_tags=("incus_pool",)), Owner.INCUS, "volume group default is tagged incus_pool"),
        (_marks(vg_tags=("lxd_pool",)), Owner.LXD, "tagged lxd_pool"),
        (_marks(pool="IncusThinPool"), Owner.INCUS, "default name IncusThinPool"),
        (_marks(volumes=("images_4d2f", "containers_c1")), Owner.INCUS, "images_4d2f, containers_c1"),
        (_marks(volumes=("vm-100-disk-0", "snap_vm-100-disk-0_before")), Owner.PROXMOX, "vm-100-disk-0"),
        (_marks(vg="pve", pool="data"), Owner.PROXMOX, "pve/data"),
        (_marks(transaction_id=1, kernel_transaction_id=9), Owner.DOCKER, "ahead of lvm's (1)"),
        (_marks(transaction_id=9, kernel_transaction_id=9, volumes=("data", "vm100")), Owner.UNKNOWN, "no tag"),
    ],
)
def test_the_owner_is_read_from_the_strongest_mark(marks: owners.Marks, owner: Owner, said: str) -> None:
    found = owners.owner_of(marks)
    assert found.owner == owner and said in found.evidence


def _pool_row(vg: str, pool: str, **fields: str) -> dict[str, str]:
    row = lv_row(
        pool,
        vg_name=vg,
        segtype="thin-pool",
        lv_attr="twi-aotz--",
        lv_size=str(8 * GiB),
        lv_metadata_size=str(8 * MiB),
        chunk_size=str(64 * 1024),
        data_percent="85.00",
        metadata_percent="10.00",
        seg_monitor="monitored",
        lv_when_full="queue",
        transaction_id="3",
    )
    return row | fields


def _status(
    vg: str, pool: str, *volumes: str, free: int = 0, devices: str = "/dev/vda(0)", fields: dict[str, str] | None = None
) -> PoolStatus:
    rows = [_pool_row(vg, pool, **(fields or {})), lv_row(f"[{pool}_tdata]", vg_name=vg, devices=devices)]
    rows += [lv_row(name, vg_name=vg, segtype="thin", pool_lv=pool, lv_size=str(GiB)) for name in volumes]
    for row in rows:
        row["vg_free_count"] = str(free)
    return report.pool_status(json.dumps({"report": [{"lv": rows}]}), vg, pool)


def _finding(status: PoolStatus, code: str) -> str:
    (found,) = [finding for finding in doctor.diagnose(status) if finding.code == code]
    return f"{found.problem} | {found.fix}"


def test_doctor_names_the_owner_and_fixes_in_its_words() -> None:
    proxmox = _status("pve", "data", "vm-100-disk-0", free=10)
    assert "made by Proxmox VE" in _finding(proxmox, "pool-owner") and "thinpool adopt pve/data" in _finding(
        proxmox, "pool-owner"
    )
    assert _finding(proxmox, "data-over-threshold").endswith("| vgextend pve /dev/sdX && lvextend -l +410 pve/data")
    roomy = _status("pve", "data", "vm-100-disk-0", free=500)
    assert "| thinpool adopt pve/data --autoextend" in _finding(roomy, "no-autoextend-profile")
    damaged = _status("pve", "data", "vm-100-disk-0", fields={"lv_health_status": "metadata_read_only"})
    assert "shut down the guests whose disks are on pve/data (qm shutdown ID" in _finding(
        damaged, "metadata-needs-repair"
    )
    incus = _status("incus", "IncusThinPool", "containers_c1", devices="/dev/loop3(0)")
    assert "| incus storage set incus size=<larger>" in _finding(incus, "data-over-threshold")
    assert "| incus storage create NEW lvm source=/dev/sdX" in _finding(incus, "loop-device")
    ours = _status("docker", "thinpool", "vol", fields={"lv_tags": commands.MANAGED_TAG})
    assert "pool-owner" not in {finding.code for finding in doctor.diagnose(ours)}
    assert _finding(ours, "data-over-threshold").endswith("| thinpool grow /dev/sdX --vg docker --pool thinpool")


def test_an_owners_pool_that_fills_its_vg_is_told_how_it_grows_not_to_attach_a_profile() -> None:
    incus = _status("tp", "IncusThinPool", "containers_c1", free=0, fields={"data_percent": "10.00"})
    (found,) = [finding for finding in doctor.diagnose(incus) if finding.code == "no-autoextend-profile"]
    assert found.severity == Severity.INFO and "one would not help: tp has 0 free extents" in found.problem
    assert found.fix == "vgextend tp /dev/sdX && lvextend -l +410 tp/IncusThinPool"
    roomy = _status("tp", "IncusThinPool", "containers_c1", free=410, fields={"data_percent": "10.00"})
    (found,) = [finding for finding in doctor.diagnose(roomy) if finding.code == "no-autoextend-profile"]
    assert found.severity == Severity.WARNING and found.fix == "thinpool adopt tp/IncusThinPool --autoextend"


def test_adopting_tags_the_pool_and_keeps_a_when_full_mode_its_owner_chose() -> None:
    left_default = adopt.plan(_status("pve", "data", "vm-100-disk-0"), Observed())
    (tagging,) = left_default.plan.actions
    assert tagging.kind == ActionKind.ADOPTION
    assert tagging.argv == ("lvchange", "--addtag", "thinpool.adopted", "--addtag", "thinpool.when-full", "pve/data")
    assert left_default.ownership.adopted and left_default.ownership.when_full_ours
    chosen = adopt.plan(_status("pve", "data", "vm-100-disk-0", fields={"lv_when_full": "error"}), Observed())
    assert chosen.plan.actions[0].argv == ("lvchange", "--addtag", "thinpool.adopted", "pve/data")
    kept = {duty.what: duty for duty in chosen.duties}
    assert not kept["set the when-full mode"].done and not kept["trim"].done
    assert kept["back up its metadata"].done
    again = adopt.plan(_status("pve", "data", fields={"lv_tags": "thinpool.adopted,thinpool.when-full"}), Observed())
    assert again.plan.actions == ()  # adopted already: nothing to do


def test_adopting_with_autoextend_writes_and_attaches_the_profile_and_nothing_else() -> None:
    status = _status("incus", "IncusThinPool", "containers_c1", free=500, fields={"seg_monitor": "not monitored"})
    adoption = adopt.plan(status, Observed(), Autoextend(80, 20))
    kinds = [action.kind for action in adoption.plan.actions]
    assert kinds == [ActionKind.ADOPTION, ActionKind.LVM_PROFILE, ActionKind.POOL_PROFILE, ActionKind.MONITORING]
    assert adoption.plan.actions[1].path == "/etc/lvm/profile/thinpool-incus-IncusThinPool.profile"
    assert "thin_pool_autoextend_threshold = 80" in adoption.plan.actions[1].content
    assert {duty.what: duty.done for duty in adoption.duties}["autoextend"]


@pytest.mark.parametrize(
    ("fields", "said", "fix"),
    [
        ({"lv_tags": commands.MANAGED_TAG}, "was made by thinpool", "thinpool doctor vg0/pool"),
        ({"lv_attr": "twi---tz--"}, "is not active", "thinpool repair vg0/pool --yes"),
    ],
)
def test_adopting_is_refused_for_thinpools_own_pool_and_an_inactive_one(
    fields: dict[str, str], said: str, fix: str
) -> None:
    with pytest.raises(adopt.AdoptRefused, match=said) as refused:
        adopt.plan(_status("vg0", "pool", "vol", fields=fields), Observed())
    assert fix in refused.value.fix


def test_thinpool_adopt_runs_the_tagging_checks_it_and_a_second_run_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _report("")
    after = _report("thinpool.adopted,thinpool.when-full")
    runner = ScriptedRunner()
    runner.expect(commands.status_report("pve"), stdout=before)
    runner.expect(commands.dmsetup_status("pve-data-tpool"), stdout="0 100 thin-pool 3 1/2 1/2 - rw\n")
    runner.expect(commands.lvm_report(), stdout=_fullreport(""))
    tagging = ("lvchange", "--addtag", "thinpool.adopted", "--addtag", "thinpool.when-full", "pve/data")
    runner.expect(tagging)
    runner.expect(commands.lvm_report(), stdout=_fullreport("thinpool.adopted,thinpool.when-full"))
    ctx = Context(runner=runner, root=tmp_path, euid=0)
    assert main(["adopt", "pve/data", "--yes", "--json", "--lock-wait", "0"], context=ctx) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["kind"] == "thinpool-adoption" and done["ok"] and done["changed"]
    assert done["owner"]["owner"] == "proxmox" and done["owner"]["adopted"]
    assert runner.exhausted
    runner.expect(commands.status_report("pve"), stdout=after)
    runner.expect(commands.dmsetup_status("pve-data-tpool"), stdout="0 100 thin-pool 3 1/2 1/2 - rw\n")
    runner.expect(commands.lvm_report(), stdout=_fullreport("thinpool.adopted,thinpool.when-full"))
    assert main(["adopt", "pve/data", "--yes", "--lock-wait", "0"], context=ctx) == 0
    said = capsys.readouterr().out
    assert "owner: Proxmox VE" in said and "will not trim" in said and "No changes" in said
    assert runner.exhausted


def _report(tags: str) -> str:
    rows = [_pool_row("pve", "data", lv_tags=tags), lv_row("[data_tdata]", vg_name="pve", devices="/dev/vda(0)")]
    rows.append(lv_row("vm-100-disk-0", vg_name="pve", segtype="thin", pool_lv="data", lv_size=str(GiB)))
    return json.dumps({"report": [{"lv": rows}]})


def _fullreport(tags: str) -> str:
    pool = _pool_row("pve", "data", lv_tags=tags)
    vg = {"vg_name": "pve", "vg_uuid": "u", "vg_extent_size": str(4 * MiB), "vg_extent_count": "2047"}
    vg |= {"vg_free_count": "0", "vg_seqno": "5", "pv_count": "1", "lv_count": "2"}
    return lvm_report(lvs=[pool], vgs=[vg])
