"""Pure argv builders for the host programs thinpool runs besides lvm. No I/O, no shell strings."""

from __future__ import annotations

Argv = tuple[str, ...]

LSBLK_COLUMNS = "NAME,PATH,SIZE,TYPE,FSTYPE,MOUNTPOINT,RO,ROTA"


def lsblk(device: str) -> Argv:
    return ("lsblk", "--json", "--bytes", "--output", LSBLK_COLUMNS, device)


def wipefs_probe(device: str) -> Argv:
    """List signatures without erasing anything."""
    return ("wipefs", "--json", "--no-act", device)


def wipefs_all(device: str) -> Argv:
    return ("wipefs", "--all", device)


def fuser_mount(device: str) -> Argv:
    """The processes using ``device`` or a filesystem mounted from it: PIDs on stdout (psmisc's fuser)."""
    return ("fuser", "-m", device)


def mkfs_xfs(device: str) -> Argv:
    """XFS with ftype=1 (d_type), as overlay2 requires."""
    return ("mkfs.xfs", "-q", "-n", "ftype=1", device)


def mount_from_fstab(mount_point: str) -> Argv:
    return ("mount", "--mkdir", mount_point)


def fstrim(mount_point: str, minimum: int) -> Argv:
    """Discard the filesystem's free extents of at least ``minimum`` bytes (dm-thin frees whole chunks only)."""
    return ("fstrim", "--minimum", str(minimum), mount_point)


def ip_addresses() -> Argv:
    return ("ip", "-j", "address", "show")


def systemctl_daemon_reload() -> Argv:
    return ("systemctl", "daemon-reload")


def systemctl_enable(units: tuple[str, ...]) -> Argv:
    return ("systemctl", "enable", *units)


def systemctl_disable_now(units: tuple[str, ...]) -> Argv:
    return ("systemctl", "disable", "--now", *units)


def systemctl_restart(units: tuple[str, ...]) -> Argv:
    return ("systemctl", "restart", *units)


def program_version(program: str) -> Argv:
    return (program, "--version")


def apt_update() -> Argv:
    return ("apt-get", "update", "-qq")


def apt_install(packages: tuple[str, ...]) -> Argv:
    return ("apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages)


def apt_download(package: str) -> Argv:
    return ("apt-get", "download", package)


def apt_depends(package: str) -> Argv:
    return ("apt-cache", "depends", package)


def dpkg_extract(deb: str, folder: str) -> Argv:
    return ("dpkg-deb", "-x", deb, folder)


def depmod(base: str, version: str) -> Argv:
    return ("depmod", "-b", base, version)


# Docker's command line (thinpool migrate). Every query asks for JSON.


def docker_driver() -> Argv:
    """The running Docker's storage driver; fails when Docker does not answer."""
    return ("docker", "info", "--format", "{{.Driver}}")


def docker_image_ids() -> Argv:
    return ("docker", "image", "ls", "--quiet", "--no-trunc")


def docker_image_inspect(ids: tuple[str, ...]) -> Argv:
    return ("docker", "image", "inspect", *ids)


def docker_volume_names() -> Argv:
    return ("docker", "volume", "ls", "--quiet")


def docker_volume_inspect(names: tuple[str, ...]) -> Argv:
    return ("docker", "volume", "inspect", *names)


def docker_containers() -> Argv:
    return ("docker", "ps", "--all", "--no-trunc", "--format", "{{json .}}")


def docker_commit(container: str, image: str) -> Argv:
    return ("docker", "commit", container, image)


def docker_save(output: str, names: tuple[str, ...]) -> Argv:
    """One archive holding an image under every name given (its tags, or its id when it has none)."""
    return ("docker", "save", "--output", output, *names)


def docker_load(archive: str) -> Argv:
    return ("docker", "load", "--quiet", "--input", archive)


def docker_tag(image: str, tag: str) -> Argv:
    return ("docker", "tag", image, tag)


def docker_volume_create(name: str) -> Argv:
    return ("docker", "volume", "create", name)


def tar_create(archive: str, folder: str) -> Argv:
    """``folder``'s tree, owners, modes and extended attributes kept."""
    return ("tar", "--create", "--xattrs", "--numeric-owner", "--file", archive, "--directory", folder, ".")


def tar_extract(archive: str, folder: str) -> Argv:
    return (
        "tar",
        "--extract",
        "--xattrs",
        "--numeric-owner",
        "--same-permissions",
        "--file",
        archive,
        "--directory",
        folder,
    )


def umount(mount_point: str) -> Argv:
    return ("umount", mount_point)


def systemctl_stop(units: tuple[str, ...]) -> Argv:
    return ("systemctl", "stop", *units)


def systemctl_start(units: tuple[str, ...]) -> Argv:
    return ("systemctl", "start", *units)


# LUKS2 with a key file (core.crypt). The key is 512 random bits: PBKDF2 at cryptsetup's least iterations, as
# systemd-cryptenroll does for its full-entropy keys, since stretching adds nothing to such a key and argon2id
# would take up to 1 GiB of memory and seconds of CPU at each open, boots included.
LUKS_PBKDF = ("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")


def luks_format(device: str, key_file: str, *, uuid: str, offset: int) -> Argv:
    """A LUKS2 header on ``device`` with a known UUID, its data ``offset`` bytes in (whole 512-byte sectors)."""
    return (
        "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", *LUKS_PBKDF,
        "--offset", str(offset // 512), "--uuid", uuid, "--key-file", key_file, device,
    )  # fmt: skip


def luks_open(device: str, key_file: str, name: str) -> Argv:
    return ("cryptsetup", "open", "--type", "luks2", "--key-file", key_file, device, name)


def luks_test_key(device: str, key_file: str) -> Argv:
    """Exit 0 when ``key_file`` opens ``device``'s header; nothing is mapped."""
    return ("cryptsetup", "open", "--test-passphrase", "--key-file", key_file, device)


def luks_uuid(device: str) -> Argv:
    return ("cryptsetup", "luksUUID", device)


def luks_header_backup(device: str, backup: str) -> Argv:
    """A copy of ``device``'s LUKS header (its key slots) at ``backup``; cryptsetup refuses to overwrite one."""
    return ("cryptsetup", "luksHeaderBackup", device, "--header-backup-file", backup)


def lsblk_parents(device: str) -> Argv:
    """``device`` (a mapping) and what it sits on, as a flat JSON list (--list: no tree to walk)."""
    return ("lsblk", "--json", "--list", "--inverse", "--output", "PATH,TYPE", device)


def luks_metadata(device: str) -> Argv:
    """``device``'s LUKS2 header as JSON: its key slots and tokens (a TPM2's is ``systemd-tpm2``)."""
    return ("cryptsetup", "luksDump", "--dump-json-metadata", device)


# TPM2_PCRS: the policy the TPM releases the key under. PCR 7 holds the Secure Boot state (on/off, its keys):
# the disk opens on this machine as booted, and the key stays sealed when the disk moves to another machine
# or Secure Boot is turned off; a kernel or firmware update does not change it.
TPM2_PCRS = "7"


def tpm2_enroll(device: str, key_file: str, *, replacing: bool = False) -> Argv:
    """A new key slot on ``device`` that this machine's TPM2 opens (systemd-cryptenroll), ``key_file``
    unlocking the header to add it; ``replacing``: the TPM2 slot there before is wiped."""
    return (
        "systemd-cryptenroll", *(("--wipe-slot=tpm2",) if replacing else ()), f"--unlock-key-file={key_file}",
        "--tpm2-device=auto", f"--tpm2-pcrs={TPM2_PCRS}", device,
    )  # fmt: skip


def luks_close(name: str) -> Argv:
    return ("cryptsetup", "close", name)


def luks_erase(device: str) -> Argv:
    """Every key slot of ``device``'s LUKS header wiped: its data cannot be opened again, with any key."""
    return ("cryptsetup", "erase", "--batch-mode", device)
