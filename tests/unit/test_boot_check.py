"""The check lvm runs at activation: thinpool's block in lvmlocal.conf, written, kept, and taken out."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from thinpool.core import boot_check, planner
from thinpool.core.boot_check import BootCheck
from thinpool.core.metadata_check import parse_options
from thinpool.core.model import Device, LvmLocal, Observed
from thinpool.core.plan import ABSENT, ActionKind
from thinpool.core.spec import PoolSpec
from thinpool.core.units import GiB
from thinpool.errors import SpecError

SHIPPED = Path(__file__).parents[1] / "fixtures" / "lvmlocal"
RELEASES = ("debian-12", "debian-13")


def _shipped(release: str) -> str:
    return (SHIPPED / f"{release}.conf").read_text()


def _options_after(text: str, host: tuple[str, ...]) -> tuple[str, ...]:
    """What lvm would use: thinpool's block wins over lvm.conf (lvmlocal.conf is read after it)."""
    if not boot_check.has_block(text):
        return host
    line = next(line for line in text.splitlines() if "thin_check_options" in line)
    parsed = parse_options(line.replace(" ", "").strip())  # as lvmconfig prints it
    assert parsed is not None, line
    return parsed


@pytest.mark.parametrize("debian", RELEASES)
def test_the_fast_check_is_added_to_the_shipped_file_and_every_line_of_it_kept(debian: str) -> None:
    shipped = _shipped(debian)
    wanted = boot_check.wanted_text(LvmLocal(shipped, ("-q",)), BootCheck.FAST)
    assert wanted is not None and wanted.startswith(shipped)
    added = wanted[len(shipped) :]
    assert 'thin_check_options = [ "-q", "--skip-mappings" ]' in added
    assert added.startswith(boot_check.BEGIN) and added.endswith(boot_check.END + "\n")
    again = LvmLocal(wanted, _options_after(wanted, ("-q",)))
    assert again.options == ("-q", "--skip-mappings")
    assert boot_check.wanted_text(again, BootCheck.FAST) is None  # converged: a second apply writes nothing


@pytest.mark.parametrize("debian", RELEASES)
def test_full_takes_the_block_out_and_leaves_the_file_as_shipped(debian: str) -> None:
    shipped = _shipped(debian)
    fast = boot_check.wanted_text(LvmLocal(shipped, ("-q",)), BootCheck.FAST)
    assert fast is not None
    assert boot_check.wanted_text(LvmLocal(fast, ("-q", "--skip-mappings")), BootCheck.FULL) == shipped
    assert boot_check.wanted_text(LvmLocal(shipped, ("-q",)), BootCheck.FULL) is None  # nothing of thinpool's


def test_the_hosts_own_options_are_kept_beside_skip_mappings() -> None:
    wanted = boot_check.wanted_text(LvmLocal("local {\n}\n", ("-q", "--clear-needs-check-flag")), BootCheck.FAST)
    assert wanted is not None
    assert 'thin_check_options = [ "-q", "--clear-needs-check-flag", "--skip-mappings" ]' in wanted


def test_a_fast_check_the_operator_set_is_left_alone() -> None:
    assert boot_check.wanted_text(LvmLocal("local {\n}\n", ("-q", "--skip-mappings")), BootCheck.FAST) is None


def test_unreadable_options_give_lvms_default_and_a_missing_file_is_made() -> None:
    wanted = boot_check.wanted_text(LvmLocal(None, None), BootCheck.FAST)
    assert wanted == boot_check.block(("-q",))


def test_a_file_without_a_last_newline_keeps_its_last_line_whole() -> None:
    wanted = boot_check.wanted_text(LvmLocal("local {\n}", ("-q",)), BootCheck.FAST)
    assert wanted is not None and wanted.startswith("local {\n}\n" + boot_check.BEGIN)


def test_a_global_section_of_the_operators_is_never_edited() -> None:
    text = "local {\n}\nglobal {\n\tuse_lvmetad = 0\n}\n"
    with pytest.raises(SpecError, match=r"lvmlocal\.conf has a global section of its own") as refused:
        boot_check.wanted_text(LvmLocal(text, ("-q",)), BootCheck.FAST)
    assert 'thin_check_options = [ "-q", "--skip-mappings" ]' in refused.value.fix
    assert "--boot-check full" in refused.value.fix
    assert boot_check.wanted_text(LvmLocal(text, ("-q",)), BootCheck.FULL) is None


def test_a_commented_global_section_is_not_the_operators() -> None:
    wanted = boot_check.wanted_text(LvmLocal("# global {\n#\tfoo = 1\n# }\n", ("-q",)), BootCheck.FAST)
    assert wanted is not None and boot_check.has_block(wanted)


def _observed(local: LvmLocal | None) -> Observed:
    return replace(Observed(devices={"/dev/vdb": Device("/dev/vdb", 4 * GiB)}), lvm_local=local)


def test_the_plan_writes_the_file_guarded_by_what_it_held() -> None:
    shipped = _shipped("debian-13")
    plan = planner.plan(PoolSpec(devices=("/dev/vdb",)), _observed(LvmLocal(shipped, ("-q",))))
    write = plan.actions[-1]
    assert write.kind is ActionKind.LVM_CONFIG and write.path == boot_check.LVMLOCAL
    assert write.expect.startswith("sha256:") and write.content.startswith(shipped)
    assert "host-wide" in write.reason
    made = planner.plan(PoolSpec(devices=("/dev/vdb",)), _observed(LvmLocal(None, ("-q",))))
    assert made.actions[-1].expect == ABSENT


def test_no_write_when_the_file_was_not_observed_or_is_as_wanted() -> None:
    unobserved = planner.plan(PoolSpec(devices=("/dev/vdb",)), _observed(None))
    assert all(action.kind is not ActionKind.LVM_CONFIG for action in unobserved.actions)
    fast = boot_check.block(("-q",))
    kept = planner.plan(PoolSpec(devices=("/dev/vdb",)), _observed(LvmLocal(fast, ("-q", "--skip-mappings"))))
    assert all(action.kind is not ActionKind.LVM_CONFIG for action in kept.actions)


def test_the_option_survives_a_saved_plan_and_an_older_plan_means_fast() -> None:
    spec = PoolSpec(devices=("/dev/vdb",), boot_check=BootCheck.FULL)
    assert PoolSpec.from_dict(spec.to_dict()) == spec
    older = {key: value for key, value in spec.to_dict().items() if key != "boot_check"}
    assert PoolSpec.from_dict(older).boot_check is BootCheck.FAST
