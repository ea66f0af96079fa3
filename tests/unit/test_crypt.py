"""--encrypt: LUKS2 under each new PV, planned in exact extents; what is never formatted; the key file."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from thinpool.cli import build_parser
from thinpool.cli.options import spec_from_args, spec_to_argv
from thinpool.core import crypt, lifecycle, planner
from thinpool.core.model import CryptState, DmDevice, LogicalVolume, Observed
from thinpool.core.plan import ABSENT, ActionKind
from thinpool.core.programs.output import parse_lsblk_parent
from thinpool.core.spec import Encryption, PoolSpec
from thinpool.core.units import GiB, KiB, MiB
from thinpool.errors import SpecError
from thinpool.system import files

from .builders import disk

KEY = "/etc/thinpool/keys/docker.key"
UUID = "0b7e5e2c-2f7a-4f53-9e38-6a1e1f0c9d11"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "luks"
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
    with pytest.raises(SpecError, match="is not an absolute path"):
        PoolSpec(devices=("/dev/vdb",), encryption=Encryption("keys/docker.key")).validate()


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


def _encrypted_vg(*pv_names: str) -> Observed:
    from .builders import empty_vg

    vg = replace(empty_vg("docker", 1019, free=100), pv_names=pv_names)
    pool = LogicalVolume("thinpool", "docker", "twi-a-tz--", 800 * 4 * MiB, "thin-pool", chunk_size=512 * KiB)
    pool = replace(pool, metadata_size=8 * MiB)
    return Observed(vgs={"docker": replace(vg, lvs=(pool,))})


CRYPTTAB = f"home_crypt UUID=1 none luks\nvda_crypt UUID={UUID} {KEY} {crypt.CRYPTTAB_OPTIONS}\n"


def test_destroy_closes_the_mapping_keeps_the_header_and_erases_it_only_when_asked() -> None:
    state = CryptState(crypttab=CRYPTTAB, parents={"/dev/mapper/vda_crypt": "/dev/vda"})
    observed = replace(_encrypted_vg("/dev/mapper/vda_crypt"), crypt=state)
    kept = lifecycle.plan_destroy(PoolSpec(), observed)
    tail = [(action.kind, action.argv or action.content) for action in kept.actions[3:5]]
    assert tail == [
        (ActionKind.LUKS_MAPPING, ("cryptsetup", "close", "vda_crypt")),
        (ActionKind.CRYPTTAB, "home_crypt UUID=1 none luks\n"),  # the operator's line kept
    ]
    erased = lifecycle.plan_destroy(PoolSpec(), observed, erase_encryption=True)
    kinds = [(action.kind, action.argv or action.path) for action in erased.actions[3:6]]
    assert kinds == [
        (ActionKind.LUKS_MAPPING, ("cryptsetup", "close", "vda_crypt")),
        (ActionKind.LUKS_HEADER, ("cryptsetup", "erase", "--batch-mode", "/dev/vda")),
        (ActionKind.LUKS_HEADER_BACKUP, f"/etc/thinpool/keys/{UUID}.luks-header"),
    ]


def test_grow_encrypts_with_the_key_of_the_vg_and_refuses_two_keys() -> None:
    entries = crypt.our_entries(CRYPTTAB)
    assert crypt.vg_encryption(("/dev/mapper/vda_crypt",), entries, "/unused.key") == Encryption(KEY)
    assert crypt.vg_encryption(("/dev/sdb",), entries, "/unused.key") is None
    two = crypt.our_entries(CRYPTTAB + f"vdb_crypt UUID=2 /root/other.key {crypt.CRYPTTAB_OPTIONS}\n")
    with pytest.raises(SpecError, match="different key files"):
        crypt.vg_encryption(("/dev/mapper/vda_crypt", "/dev/mapper/vdb_crypt"), two, "/unused.key")
    observed = replace(_encrypted_vg("/dev/mapper/vda_crypt"), crypt=CryptState(key_present=True, crypttab=CRYPTTAB))
    observed = replace(observed, devices={"/dev/vdb": disk("/dev/vdb", 2 * GiB)})
    grown = lifecycle.plan_grow(PoolSpec(devices=("/dev/vdb",), encryption=Encryption(KEY)), observed)
    kinds = [action.kind for action in grown.actions[:6]]
    assert kinds[:5] == [
        ActionKind.LUKS_HEADER,
        ActionKind.LUKS_HEADER_BACKUP,
        ActionKind.LUKS_MAPPING,
        ActionKind.CRYPTTAB,
        ActionKind.PHYSICAL_VOLUME,
    ]
    assert grown.actions[5].argv == ("vgextend", "docker", "/dev/mapper/vdb_crypt")
    assert grown.spec.devices == ("/dev/mapper/vda_crypt", "/dev/vdb")


def test_a_locked_disk_is_named_with_its_key_and_the_fix() -> None:
    entries = crypt.our_entries(CRYPTTAB)
    assert [entry.name for entry in entries] == ["vda_crypt"]  # the operator's own line is not thinpool's
    assert crypt.locked(entries, {"vda_crypt"}, {KEY: True}) is None
    missing = crypt.locked(entries, set(), {KEY: False})
    assert missing is not None and f"vda_crypt (UUID={UUID}): its key file {KEY} is missing" in missing.problem
    assert "systemctl restart systemd-cryptsetup@vda_crypt.service" in missing.fix
    there = crypt.locked(entries, set(), {KEY: True})
    assert there is not None and "is there, yet the device did not open" in there.problem


def test_the_disk_under_a_mapping_is_read_from_lsblk() -> None:
    # as Debian 13's lsblk printed it in the VM (--json --list --inverse --output PATH,TYPE)
    listed = (
        '{"blockdevices": [{"path": "/dev/mapper/vda_crypt", "type": "crypt"}, {"path": "/dev/vda", "type": "disk"}]}'
    )
    assert parse_lsblk_parent(listed, "/dev/mapper/vda_crypt") == "/dev/vda"
    assert parse_lsblk_parent('{"blockdevices": []}', "/dev/mapper/vda_crypt") == ""


def test_the_engines_mount_requires_the_unlock_so_a_missing_key_fails_it_at_once() -> None:
    from thinpool.core.model import Source
    from thinpool.engines import thin_volume

    device, root = "/dev/mapper/docker-docker--data", "/var/lib/docker"
    unit = crypt.unlock_unit("vdb_crypt")
    assert crypt.unlock_units(("/dev/vdb", "/dev/disk/by-id/ata-QEMU-1")) == (unit,)  # escaped names: not in fstab
    plain = thin_volume.fstab_line(device, root) + "\n"
    locked = thin_volume.fstab_line(device, root, (unit,)) + "\n"
    assert locked.split()[3] == f"defaults,nofail,pquota,noatime,x-systemd.requires={unit}"
    assert thin_volume.merged_fstab(Source("/etc/fstab", plain), device, root, force=False, requires=(unit,)) == locked
    assert thin_volume.merged_fstab(Source("/etc/fstab", locked), device, root, force=False) is None  # kept
    assert thin_volume.merged_fstab(Source("/etc/fstab", locked), device, root, force=False, requires=(unit,)) is None


TPM2 = Encryption(KEY, tpm2=True)
WITH_TPM: dict[str, object] = {"tpm2_device": True, "tpm2_tool": True}


def test_with_tpm2_each_new_header_gets_a_tpm_slot_and_crypttab_names_no_key() -> None:
    plan = planner.plan(replace(SPEC, encryption=TPM2), _blank(**WITH_TPM))
    kinds = [action.kind for action in plan.actions[:6]]
    assert kinds == [
        ActionKind.KEY_FILE,
        ActionKind.LUKS_HEADER,
        ActionKind.LUKS_TPM2,  # before the header's copy, so that a restored copy has the TPM's slot too
        ActionKind.LUKS_HEADER_BACKUP,
        ActionKind.LUKS_MAPPING,
        ActionKind.CRYPTTAB,
    ]
    enroll, crypttab = plan.actions[2], plan.actions[5]
    assert enroll.argv == (
        "systemd-cryptenroll", f"--unlock-key-file={KEY}", "--tpm2-device=auto", "--tpm2-pcrs=7", "/dev/vdb",
    )  # fmt: skip
    assert "recovery key" in enroll.reason
    assert crypttab.content == f"vdb_crypt UUID={UUID} none luks,headless=true,tpm2-device=auto\n"
    assert KEY not in crypttab.content  # no key file is read at boot


@pytest.mark.parametrize(
    ("state", "problem", "fix"),
    [
        ({"tpm2_tool": True}, "shows no TPM 2.0 (/dev/tpmrm0 is missing); nothing was formatted", "firmware"),
        ({"tpm2_device": True}, "--tpm2 needs systemd-cryptenroll", "apt-get install systemd-cryptsetup"),
    ],
)
def test_tpm2_without_a_tpm_or_its_tool_is_refused_before_anything_is_formatted(
    state: dict[str, bool], problem: str, fix: str
) -> None:
    with pytest.raises(SpecError) as refused:
        planner.plan(replace(SPEC, encryption=TPM2), _blank(**state))
    assert problem in refused.value.problem and fix in refused.value.fix


def test_tpm2_on_a_luks_device_already_open_enrolls_it_once() -> None:
    opened = _luks(key_opens={"/dev/vdb": True}, tpm2_device=True, tpm2_tool=True)
    plan = planner.plan(replace(SPEC, encryption=TPM2), opened)
    assert [action.kind for action in plan.actions[:2]] == [ActionKind.LUKS_TPM2, ActionKind.CRYPTTAB]
    enrolled = _luks(
        key_opens={"/dev/vdb": True}, tpm2_enrolled=frozenset({"/dev/vdb"}), tpm2_device=True, tpm2_tool=True
    )
    again = planner.plan(replace(SPEC, encryption=TPM2), enrolled)
    assert ActionKind.LUKS_TPM2 not in [action.kind for action in again.actions]


def test_a_tpm2_slot_is_found_in_the_headers_json() -> None:
    # as Debian 13's cryptsetup 2.7.5 printed it after systemd-cryptenroll (luksDump --dump-json-metadata)
    dumped = json.loads((FIXTURES / "luks-metadata-tpm2.json").read_text())
    assert crypt.has_tpm2_token(dumped)
    assert not crypt.has_tpm2_token(dumped | {"tokens": {}})
    assert not crypt.has_tpm2_token({"tokens": {"0": {"type": "systemd-fido2"}}})


def test_a_disk_the_tpm_opens_is_thinpools_its_key_is_the_recovery_key_and_locked_says_what_to_do() -> None:
    text = CRYPTTAB + crypt.crypttab_line("/dev/vdb", "2", KEY, tpm2=True)
    entries = crypt.our_entries(text)
    assert [(entry.name, entry.tpm2) for entry in entries] == [("vda_crypt", False), ("vdb_crypt", True)]
    tpm_only = crypt.vg_encryption(("/dev/mapper/vdb_crypt",), entries, "/root/recovery.key")
    assert tpm_only == Encryption("/root/recovery.key", tpm2=True)  # grow enrolls its new disk too
    closed = crypt.locked(entries, {"vda_crypt"}, {KEY: True})
    assert closed is not None and "vdb_crypt (UUID=2): the TPM2 did not open it" in closed.problem
    assert "cryptsetup open --key-file KEY /dev/disk/by-uuid/2 vdb_crypt" in closed.fix
    assert "--wipe-slot=tpm2" in closed.fix


def test_destroy_finds_the_header_copy_of_a_disk_the_tpm_opens_beside_the_vgs_default_key() -> None:
    line = f"vda_crypt UUID={UUID} none {crypt.CRYPTTAB_TPM2_OPTIONS}\n"
    state = CryptState(crypttab=line, parents={"/dev/mapper/vda_crypt": "/dev/vda"})
    observed = replace(_encrypted_vg("/dev/mapper/vda_crypt"), crypt=state)
    erased = lifecycle.plan_destroy(PoolSpec(), observed, erase_encryption=True)
    backups = [action.path for action in erased.actions if action.kind is ActionKind.LUKS_HEADER_BACKUP]
    assert backups == [f"/etc/thinpool/keys/{UUID}.luks-header"]


def test_the_cli_takes_tpm2_only_with_encrypt() -> None:
    spec = spec_from_args(build_parser("apply").parse_args(["apply", "--encrypt", "--tpm2", "/dev/vdb"]))
    assert spec.encryption == Encryption("/etc/thinpool/keys/docker.key", tpm2=True)
    again = spec_from_args(build_parser("plan").parse_args(["plan", *spec_to_argv(spec)]))
    assert again == spec and PoolSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SpecError, match="--tpm2 opens what --encrypt formats"):
        spec_from_args(build_parser("plan").parse_args(["plan", "--tpm2", "/dev/vdb"]))


def test_tpm2_on_a_vg_its_key_file_opens_is_refused_with_the_steps_by_hand() -> None:
    observed = replace(_encrypted_vg("/dev/mapper/vda_crypt"), crypt=CryptState(key_present=True, crypttab=CRYPTTAB))
    with pytest.raises(SpecError) as refused:
        planner.plan(PoolSpec(encryption=TPM2), observed)
    assert "disks (vda_crypt) are opened by the key file already" in refused.value.problem
    assert f"systemd-cryptenroll --unlock-key-file={KEY} --tpm2-device=auto" in refused.value.fix
    assert f"'vda_crypt UUID={UUID} none luks,headless=true,tpm2-device=auto'" in refused.value.fix
    tpm_line = f"vda_crypt UUID={UUID} none {crypt.CRYPTTAB_TPM2_OPTIONS}\n"
    converged = replace(observed, crypt=CryptState(crypttab=tpm_line))
    assert planner.plan(PoolSpec(encryption=TPM2), converged).spec.encryption == TPM2  # the TPM's own: planned


def test_encrypt_on_a_vg_on_plain_disks_is_refused_not_passed_over_as_converged() -> None:
    observed = replace(_encrypted_vg("/dev/vdb"), crypt=CryptState(key_present=True, crypttab=CRYPTTAB))
    with pytest.raises(SpecError) as refused:
        planner.plan(SPEC, observed)  # without the check: a plan that converges the plain pool, said --encrypt
    assert "the volume group docker exists on disks thinpool did not encrypt (/dev/vdb)" in refused.value.problem
    assert "--vg NEW" in refused.value.fix
    encrypted = replace(observed, vgs=_encrypted_vg("/dev/mapper/vda_crypt").vgs)
    spec = PoolSpec(devices=("/dev/vda",), encryption=Encryption(KEY))
    kinds = {action.kind for action in planner.plan(spec, encrypted).actions}  # converged: policy checks only
    assert not kinds & {ActionKind.KEY_FILE, ActionKind.LUKS_HEADER, ActionKind.LUKS_MAPPING, ActionKind.CRYPTTAB}
