"""--encrypt: LUKS2 under each new PV, planned in exact extents; what is never formatted; the key file."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from thinpool.cli import build_parser
from thinpool.cli.options import spec_from_args, spec_to_argv
from thinpool.core import crypt, planner
from thinpool.core.model import CryptState, DmDevice, Observed
from thinpool.core.plan import ABSENT, ActionKind
from thinpool.core.spec import Encryption, PoolSpec
from thinpool.core.units import GiB, MiB
from thinpool.errors import SpecError
from thinpool.system import files

from .builders import disk

KEY = "/etc/thinpool/keys/docker.key"
UUID = "0b7e5e2c-2f7a-4f53-9e38-6a1e1f0c9d11"
SPEC = PoolSpec(devices=("/dev/vdb",), encryption=Encryption(KEY))


def _blank(**state: object) -> Observed:
    crypt_state = CryptState(**({"uuids": {"/dev/vdb": UUID}} | state))  # type: ignore[arg-type]
    return Observed(devices={"/dev/vdb": disk("/dev/vdb", 4 * GiB)}, crypt=crypt_state)


def _luks(open_as: str = "vdb_crypt", **state: object) -> Observed:
    crypt_state = CryptState(**({"key_present": True, "uuids": {"/dev/vdb": UUID}} | state))  # type: ignore[arg-type]
    luks = disk("/dev/vdb", 4 * GiB, signatures=(crypt.LUKS_SIGNATURE,))
    mapped = (DmDevice(open_as, "CRYPT-LUKS2-x", 0),) if open_as else ()
    return Observed(devices={"/dev/vdb": luks}, dm_devices=mapped, crypt=crypt_state)


def test_a_blank_disk_is_formatted_opened_and_recorded_then_the_pv_goes_on_its_mapping() -> None:
    plan = planner.plan(SPEC, _blank())
    kinds = [action.kind for action in plan.actions[:8]]
    assert kinds == [
        ActionKind.KEY_FILE,
        ActionKind.LUKS_HEADER,
        ActionKind.LUKS_HEADER_BACKUP,
        ActionKind.LUKS_MAPPING,
        ActionKind.CRYPTTAB,
        ActionKind.PHYSICAL_VOLUME,
        ActionKind.VOLUME_GROUP,
        ActionKind.LVM_PROFILE,
    ]
    key, header, backup, mapping, crypttab, pv, vg = plan.actions[:7]
    assert backup.argv[-1] == f"/etc/thinpool/keys/{UUID}.luks-header"
    assert key.path == KEY and not key.argv and not key.content  # the key itself is never in a plan
    assert header.argv[:2] == ("cryptsetup", "luksFormat") and header.argv[-1] == "/dev/vdb"
    given = {flag: header.argv[header.argv.index(flag) + 1] for flag in ("--type", "--offset", "--uuid", "--key-file")}
    assert given == {"--type": "luks2", "--offset": "32768", "--uuid": UUID, "--key-file": KEY}
    assert mapping.argv == ("cryptsetup", "open", "--type", "luks2", "--key-file", KEY, "/dev/vdb", "vdb_crypt")
    assert crypttab.content == f"vdb_crypt UUID={UUID} {KEY} {crypt.CRYPTTAB_OPTIONS}\n"
    assert crypttab.expect == ABSENT
    assert pv.argv == ("pvcreate", "/dev/mapper/vdb_crypt") and vg.argv[-1] == "/dev/mapper/vdb_crypt"
    # 4 GiB less the 16 MiB header is the mapping; less lvm's 1 MiB before its first extent: 1019 extents
    assert plan.layout is not None and plan.layout.free_extents == (4 * GiB - 16 * MiB - MiB) // (4 * MiB) == 1019


def test_a_key_already_there_is_used_and_crypttab_keeps_its_other_lines() -> None:
    other = "# <target> <source> <key> <options>\nhome_crypt UUID=1234 none luks\n"
    plan = planner.plan(SPEC, _blank(key_present=True, crypttab=other))
    assert ActionKind.KEY_FILE not in [action.kind for action in plan.actions]
    (crypttab,) = [action for action in plan.actions if action.kind is ActionKind.CRYPTTAB]
    assert crypttab.content.startswith(other) and crypttab.content.endswith(f"{KEY} {crypt.CRYPTTAB_OPTIONS}\n")
    assert crypttab.expect.startswith("sha256:")


def test_a_luks_device_opened_by_a_run_cut_short_is_used_not_formatted_again() -> None:
    plan = planner.plan(SPEC, _luks(key_opens={"/dev/vdb": True}))
    kinds = [action.kind for action in plan.actions]
    assert ActionKind.LUKS_HEADER not in kinds and ActionKind.LUKS_MAPPING not in kinds
    assert plan.actions[0].kind is ActionKind.CRYPTTAB  # the line the cut run did not write yet
    assert plan.actions[1].argv == ("pvcreate", "/dev/mapper/vdb_crypt")


@pytest.mark.parametrize(
    ("observed", "problem", "fix"),
    [
        (_luks(key_present=False), "the key file /etc/thinpool/keys/docker.key is missing", "put the key"),
        (
            _luks(key_opens={"/dev/vdb": False}),
            "does not open /dev/vdb's LUKS header; nothing was formatted",
            "--key-file",
        ),
        (_luks(open_as="", key_opens={"/dev/vdb": True}), "is not open as vdb_crypt", "cryptsetup open --key-file"),
    ],
)
def test_a_luks_device_is_never_formatted_again(observed: Observed, problem: str, fix: str) -> None:
    with pytest.raises(SpecError) as refused:
        planner.plan(SPEC, observed)
    assert problem in refused.value.problem and fix in refused.value.fix


def test_without_encrypt_a_luks_device_is_refused_like_any_signature() -> None:
    with pytest.raises(SpecError, match="crypto_LUKS signature"):
        planner.plan(replace(SPEC, encryption=None), _luks(key_opens={"/dev/vdb": True}))


def test_a_crypttab_line_already_there_is_not_written_again() -> None:
    line = crypt.crypttab_line("/dev/vdb", UUID, KEY)
    assert crypt.merged_crypttab("a b c d\n" + line, {"vdb_crypt": line}) is None
    assert crypt.merged_crypttab("vdb_crypt UUID=old k luks", {"vdb_crypt": line}) == line  # ours, replaced
    assert crypt.merged_crypttab("x y z", {"vdb_crypt": line}) == "x y z\n" + line


def test_the_mapping_is_whole_4k_sectors_after_the_header() -> None:
    assert crypt.mapping_size(4 * GiB) == 4 * GiB - 16 * MiB
    assert crypt.mapping_size(16 * MiB + 4095) == 0 and crypt.mapping_size(MiB) == 0
    assert crypt.mapping_size(1 * GiB + 512) == 1 * GiB - 16 * MiB


def test_the_cli_takes_encrypt_and_its_key_and_gives_them_back() -> None:
    args = build_parser("plan").parse_args(["plan", "--encrypt", "--vg", "data", "/dev/vdb"])
    spec = spec_from_args(args)
    assert spec.encryption == Encryption("/etc/thinpool/keys/data.key")
    again = spec_from_args(build_parser("plan").parse_args(["plan", *spec_to_argv(spec)]))
    assert again == spec and PoolSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SpecError, match="--key-file is the key of --encrypt"):
        spec_from_args(build_parser("plan").parse_args(["plan", "--key-file", "/k", "/dev/vdb"]))
    with pytest.raises(SpecError, match="--key-file"):
        PoolSpec(devices=("/dev/vdb",), encryption=Encryption("/etc/my key")).validate()


def test_the_key_file_is_made_0400_in_a_0700_folder_and_never_replaced(tmp_path: Path) -> None:
    key = tmp_path / "etc/thinpool/keys/docker.key"
    assert files.create_secret(key, os.urandom(crypt.KEY_BYTES))
    first = key.read_bytes()
    assert len(first) == crypt.KEY_BYTES and stat.S_IMODE(key.stat().st_mode) == 0o400
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert not files.create_secret(key, b"another")
    assert key.read_bytes() == first and sorted(path.name for path in key.parent.iterdir()) == ["docker.key"]
    mine = tmp_path / "root"
    mine.mkdir(mode=0o755)
    assert files.create_secret(mine / "k", b"x") and stat.S_IMODE(mine.stat().st_mode) == 0o755  # not thinpool's
