"""LUKS2 under the PVs (``--encrypt``): names, sizes, the key, crypttab, and what is refused. Pure.

Each device gets a LUKS2 header (``cryptsetup luksFormat``) with a data offset thinpool sets itself, so the
mapping's size, and so the PV's extents, are known before anything is formatted. The mapping is opened as
``NAME_crypt`` (NAME: the device's own name, as Debian's installer names them), the PV goes on
``/dev/mapper/NAME_crypt``, and /etc/crypttab gets a line that opens it at every boot with the key file,
before lvm activates the pool (``nofail``: a missing key leaves the pool down, not the boot; ``headless``:
never a passphrase prompt on a console nobody watches).

With ``--tpm2``, each header also gets a key slot this machine's TPM2 opens (systemd-cryptenroll, bound to PCR 7,
the Secure Boot state), and crypttab opens the disk with the TPM alone: its key field is ``none``. The key
file is then the recovery key, read by apply and grow only; it belongs off the host. (systemd 257.13, Debian 13's,
crashes on a line naming both a key file and a TPM2, systemd issue 41867: the boot could not fall back to the key
file anyway.)

The key file holds random bytes from the kernel, mode 0400 in a 0700 folder; it is never printed. A device
that already holds a LUKS header is never formatted again: thinpool uses it when its mapping is open and the
key opens it, and otherwise refuses with the fix.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from thinpool.core.model import CryptState, Device, DmDevice
from thinpool.core.programs import argv as programs
from thinpool.core.spec import Encryption
from thinpool.core.units import MiB
from thinpool.errors import SpecError, ThinpoolError

LUKS_OFFSET = 16 * MiB  # luksFormat --offset: the LUKS2 header and keyslots, lvm's data after them
LUKS_SECTOR = 4096  # the most dm-crypt's sector may be: the mapping is planned as whole 4 KiB sectors
CRYPTTAB = "/etc/crypttab"
KEY_FOLDER = "/etc/thinpool/keys"
KEY_BYTES = 64
CRYPTTAB_OPTIONS = "luks,headless=true"
CRYPTTAB_TPM2_OPTIONS = f"{CRYPTTAB_OPTIONS},tpm2-device=auto"
NO_KEY = "none"  # crypttab's key field when the TPM2 opens the disk
TPM2_TOKEN = "systemd-tpm2"  # noqa: S105 (a token type, not a secret): what systemd-cryptenroll writes
TPM2_DEVICE = "/dev/tpmrm0"  # the kernel's TPM 2.0 resource manager: what --tpm2-device=auto uses
TPM2_TOOL_PATHS = ("/usr/bin/systemd-cryptenroll", "/bin/systemd-cryptenroll")
LUKS_SIGNATURE = "crypto_LUKS"
UUID_AT_APPLY = "<uuid-drawn-at-apply>"  # a plan on virtual disks only shows where the new header's UUID goes


def uuid_of(state: CryptState, device: str) -> str:
    return state.uuids.get(device, UUID_AT_APPLY)


def default_key_file(vg: str) -> str:
    return posixpath.join(KEY_FOLDER, f"{vg}.key")


def mapping_name(device: str) -> str:
    return f"{posixpath.basename(device)}_crypt"


def pv_path(device: str) -> str:
    return f"/dev/mapper/{mapping_name(device)}"


def unlock_unit(name: str) -> str:
    """The unit systemd's crypttab generator makes for mapping ``name``."""
    return f"systemd-cryptsetup@{name}.service"


def _plain_unit_name(name: str) -> bool:
    """A name systemd-escape leaves as it is (a letter, digit, ':', '_' or '.'), so it goes into fstab as is."""
    return all(char.isascii() and (char.isalnum() or char in ":_.") for char in name)


def unlock_units(devices: tuple[str, ...]) -> tuple[str, ...]:
    """The units the engine's mount requires: those of the mappings whose names need no escaping (sdb_crypt,
    nvme0n1_crypt); a mount on another waits for its device as any mount does."""
    return tuple(unlock_unit(mapping_name(device)) for device in devices if _plain_unit_name(mapping_name(device)))


def header_backup(key_file: str, uuid: str) -> str:
    """Where apply keeps a copy of a header it made: beside the key, named by the header's UUID."""
    return posixpath.join(posixpath.dirname(key_file), f"{uuid}.luks-header")


def mapping_size(device_size: int) -> int:
    """Bytes of the opened mapping: the device after the header, in whole dm-crypt sectors."""
    return max(0, (device_size - LUKS_OFFSET) // LUKS_SECTOR * LUKS_SECTOR)


def is_luks(device: Device | None) -> bool:
    return device is not None and LUKS_SIGNATURE in device.signatures


def is_open(device: str, dm_devices: tuple[DmDevice, ...]) -> bool:
    return any(found.name == mapping_name(device) for found in dm_devices)


def crypttab_line(device: str, uuid: str, key_file: str, *, tpm2: bool = False) -> str:
    if tpm2:
        return f"{mapping_name(device)} UUID={uuid} {NO_KEY} {CRYPTTAB_TPM2_OPTIONS}\n"
    return f"{mapping_name(device)} UUID={uuid} {key_file} {CRYPTTAB_OPTIONS}\n"


def has_tpm2_token(metadata: dict[str, object]) -> bool:
    """Whether a LUKS2 header (``cryptsetup luksDump --dump-json-metadata``) holds a TPM2 key slot's token."""
    tokens = metadata.get("tokens")
    return isinstance(tokens, dict) and any(
        isinstance(token, dict) and token.get("type") == TPM2_TOKEN for token in tokens.values()
    )


def merged_crypttab(text: str | None, lines: dict[str, str]) -> str | None:
    """crypttab with ``lines`` (by mapping name) in it, every other line kept; None when it already is."""
    kept: list[str] = []
    for line in (text or "").splitlines(keepends=True):
        fields = line.split()
        name = fields[0] if fields and not fields[0].startswith("#") else ""
        if name not in lines:
            kept.append(line)
    if kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"
    merged = "".join(kept) + "".join(lines.values())
    if text is not None and all(line in text.splitlines(keepends=True) for line in lines.values()):
        return None
    return merged


def without_entries(text: str | None, names: set[str]) -> str:
    """crypttab without the lines that open ``names``, every other line kept."""
    kept = [line for line in (text or "").splitlines(keepends=True) if (line.split() or [""])[0] not in names]
    return "".join(kept)


def check_existing(device: str, dm_devices: tuple[DmDevice, ...], state: CryptState, key_file: str) -> None:
    """A device with a LUKS header already: usable when its mapping is open and the key opens it."""
    if not state.key_present:
        raise SpecError(
            f"{device} holds a LUKS header and the key file {key_file} is missing: a new key would not open it",
            fix=f"put the key it was made with back at {key_file} (or name it with --key-file), then re-run",
        )
    if not state.key_opens.get(device, False):
        raise SpecError(
            f"the key file {key_file} does not open {device}'s LUKS header; nothing was formatted",
            fix="name the key file it was made with (--key-file), or choose another device",
        )
    if not is_open(device, dm_devices):
        raise SpecError(
            f"{device} holds a LUKS header that is not open as {mapping_name(device)}",
            fix=f"cryptsetup open --key-file {key_file} {device} {mapping_name(device)}, then re-run",
        )


def check_tpm2(state: CryptState) -> None:
    """--tpm2 needs a TPM 2.0 the kernel shows and systemd-cryptenroll: refused before anything is formatted."""
    if not state.tpm2_device:
        raise SpecError(
            f"--tpm2: this machine shows no TPM 2.0 ({TPM2_DEVICE} is missing); nothing was formatted",
            fix="turn the TPM on in the firmware (a VM needs an emulated one, e.g. swtpm), or leave --tpm2 out",
        )
    if not state.tpm2_tool:
        raise SpecError(
            "--tpm2 needs systemd-cryptenroll, which is not installed; nothing was formatted",
            fix="apt-get install systemd-cryptsetup (Debian 13; on Debian 12 it comes with systemd)",
        )


def check_vg_encrypted(vg: str, pv_names: tuple[str, ...], entries: list[CrypttabEntry]) -> None:
    """--encrypt on a VG that exists: every PV must be on one of thinpool's LUKS mappings. Otherwise the apply
    would leave the pool as it is (or add encrypted disks beside plain ones) and the data would not be
    encrypted, while the command said --encrypt."""
    mapped = by_mapping(entries)
    plain = [pv for pv in pv_names if pv not in mapped]
    if plain:
        raise SpecError(
            f"--encrypt: the volume group {vg} exists on disks thinpool did not encrypt ({', '.join(plain)}); "
            "thinpool does not encrypt a pool in place, and its data there would stay readable; nothing was changed",
            fix=f"leave --encrypt out for {vg}, or make an encrypted pool in another VG on other disks "
            "(thinpool apply --encrypt --vg NEW DEVICE) and move the engine's data to it",
        )


def check_tpm2_on_keyed_disks(pv_names: tuple[str, ...], entries: list[CrypttabEntry]) -> None:
    """--tpm2 enrolls the disks thinpool formats; a VG already on disks its key file opens is refused, with the
    steps to enroll them by hand, rather than left as it is without a word."""
    keyed = [entry for pv, entry in by_mapping(entries).items() if pv in pv_names and not entry.tpm2]
    if keyed:
        first = keyed[0]
        enroll = programs.tpm2_enroll(f"/dev/disk/by-uuid/{uuid_in(first)}", first.key_file)
        raise SpecError(
            f"--tpm2: the volume group's disks ({', '.join(entry.name for entry in keyed)}) are opened by the key "
            "file already, and thinpool enrolls a TPM2 only on the disks it formats; nothing was changed",
            fix=f"enroll each by hand: {_shown(enroll)}; then in {CRYPTTAB} make its line "
            f"'{first.name} {first.source} {NO_KEY} {CRYPTTAB_TPM2_OPTIONS}' and move the key file off the host",
        )


@dataclass(frozen=True)
class CrypttabEntry:
    """One line of crypttab that thinpool wrote (its options are thinpool's); ``key_file`` is empty when the
    TPM2 opens the disk."""

    name: str
    source: str
    key_file: str

    @property
    def tpm2(self) -> bool:
        return not self.key_file


def our_entries(text: str | None) -> list[CrypttabEntry]:
    entries = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) != 4 or fields[0].startswith("#"):
            continue
        if fields[3] == CRYPTTAB_OPTIONS:
            entries.append(CrypttabEntry(fields[0], fields[1], fields[2]))
        elif fields[3] == CRYPTTAB_TPM2_OPTIONS and fields[2] == NO_KEY:
            entries.append(CrypttabEntry(fields[0], fields[1], ""))
    return entries


def locked(entries: list[CrypttabEntry], open_names: set[str], keys_present: dict[str, bool]) -> ThinpoolError | None:
    """Why a pool on thinpool's encrypted devices is down: which mappings are not open, and their keys."""
    closed = [entry for entry in entries if entry.name not in open_names]
    if not closed:
        return None
    said = "; ".join(f"{entry.name} ({entry.source}): {_why_closed(entry, keys_present)}" for entry in closed)
    first = closed[0]
    if first.tpm2:
        fix = (
            f"open it with the recovery key: cryptsetup open --key-file KEY /dev/disk/by-uuid/{uuid_in(first)} "
            f"{first.name}, then thinpool activate and start the engine; once the machine is as it should be, "
            f"enroll the TPM again: {_shown(programs.tpm2_enroll('DEVICE', 'KEY', replacing=True))}"
        )
    else:
        fix = (
            f"put the key file back (from your copy), then: systemctl restart {unlock_unit(first.name)} "
            "(or cryptsetup open --key-file KEY DEVICE NAME), thinpool activate, and start the engine"
        )
    return ThinpoolError(
        f"encrypted device(s) of thinpool's are not open, so the volume groups on them are down: {said}", fix=fix
    )


def _shown(argv: programs.Argv) -> str:
    return " ".join(argv)  # names thinpool checked to be plain (no spaces, no quotes)


def _why_closed(entry: CrypttabEntry, keys_present: dict[str, bool]) -> str:
    if entry.tpm2:
        return (
            "the TPM2 did not open it (its Secure Boot state, PCR 7, changed, the TPM was cleared, or the disk "
            "moved to another machine)"
        )
    if keys_present.get(entry.key_file):
        return f"its key file {entry.key_file} is there, yet the device did not open"
    return f"its key file {entry.key_file} is missing"


def by_mapping(entries: list[CrypttabEntry]) -> dict[str, CrypttabEntry]:
    """thinpool's crypttab lines by the PV path on their mapping."""
    return {f"/dev/mapper/{entry.name}": entry for entry in entries}


def vg_encryption(pv_names: tuple[str, ...], entries: list[CrypttabEntry], recovery_key: str) -> Encryption | None:
    """How a VG whose PVs are on thinpool's LUKS mappings is encrypted (what grow encrypts a new disk with); None
    for a VG on plain disks. Disks the TPM2 opens have no key in crypttab: theirs is ``recovery_key``."""
    mapped = by_mapping(entries)
    ours = [mapped[pv] for pv in pv_names if pv in mapped]
    keys = sorted({entry.key_file or recovery_key for entry in ours})
    if len(keys) > 1:
        raise SpecError(
            f"the volume group's encrypted disks open with different key files ({', '.join(keys)})",
            fix="give them one key (cryptsetup luksAddKey), point crypttab at it, then grow",
        )
    return Encryption(keys[0], tpm2=any(entry.tpm2 for entry in ours)) if keys else None


def uuid_in(entry: CrypttabEntry) -> str:
    return entry.source.removeprefix("UUID=")
