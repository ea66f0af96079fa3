"""The config documents: one parser per format, typed errors, and bytes kept where thinpool does not own them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from thinpool.config import containerd_toml, daemon_json, fstab
from thinpool.config.document import ConfigError, Problem
from thinpool.core.model import Source
from thinpool.engines import thin_volume

DAEMON = daemon_json.PATH


@pytest.mark.parametrize(
    ("source", "problem", "words"),
    [
        (Source(DAEMON), Problem.MISSING, "does not exist"),
        (Source(DAEMON, unreadable="Permission denied"), Problem.UNREADABLE, "Permission denied"),
        (Source(DAEMON, '{"a": 1,'), Problem.INVALID, "is not valid JSON"),
        (Source(DAEMON, "[" * 100_000 + "]" * 100_000), Problem.INVALID, "nested too deeply"),
        (Source(DAEMON, "[1, 2]"), Problem.WRONG_SHAPE, "list, not a JSON object"),
        (Source(DAEMON, '{"storage-opts": "dm.basesize=10G"}'), Problem.WRONG_SHAPE, "'storage-opts' is not a list"),
        (Source(DAEMON, '{"hosts": [1]}'), Problem.WRONG_SHAPE, "'hosts' is not a list of strings"),
        (Source(DAEMON, '{"storage-driver": 3}'), Problem.WRONG_SHAPE, "'storage-driver' is not a string"),
    ],
)
def test_daemon_json_errors_are_typed(source: Source, problem: Problem, words: str) -> None:
    parsed = daemon_json.parse(source)
    assert isinstance(parsed, ConfigError) and parsed.problem == problem
    assert words in str(parsed) and DAEMON in str(parsed)


def test_daemon_json_document() -> None:
    parsed = daemon_json.parse(Source(DAEMON, '{"storage-opts": ["dm.thinpooldev=/dev/mapper/vg-p", "dm.fs=xfs"]}'))
    assert isinstance(parsed, daemon_json.DaemonJson)
    assert parsed.thinpooldev == "/dev/mapper/vg-p" and parsed.storage_driver is None
    assert daemon_json.parse(Source(DAEMON, "  \n")) == daemon_json.DaemonJson({})  # dockerd reads it so


@pytest.mark.parametrize(
    ("text", "problem", "words"),
    [
        ("version = 2\n[plugins\n", Problem.INVALID, "is not valid TOML"),
        ("version = 2\nplugins = 3\n", Problem.WRONG_SHAPE, "'plugins' is not a table"),
        ('version = "2"\n', Problem.WRONG_SHAPE, "'version' is not an integer"),
        ('[plugins]\n"io.containerd.snapshotter.v1.devmapper" = 1\n', Problem.WRONG_SHAPE, "is not a table"),
    ],
)
def test_containerd_toml_errors_are_typed(text: str, problem: Problem, words: str) -> None:
    parsed = containerd_toml.parse(Source(containerd_toml.PATH, text))
    assert isinstance(parsed, ConfigError) and parsed.problem == problem and words in str(parsed)


DOCKER_DEVICE = "/dev/mapper/docker-docker--data"
FSTAB_CRLF = b"# comment \xe9t\xe9\r\nUUID=1 / ext4 defaults 0 1\r\n/dev/sdb1 /srv\\040data xfs defaults 0 0"


def _fstab_source(raw: bytes) -> Source:
    return Source(fstab.PATH, raw.decode("utf-8", "surrogateescape"))


def test_fstab_merge_keeps_every_other_byte_and_the_files_line_ending() -> None:
    device = DOCKER_DEVICE
    merged = thin_volume.merged_fstab(_fstab_source(FSTAB_CRLF), device, "/var/lib/docker", force=False)
    assert merged is not None
    raw = merged.encode("utf-8", "surrogateescape")
    assert raw.startswith(FSTAB_CRLF + b"\r\n")  # untouched, with the missing last ending added in CRLF
    assert raw.endswith(b"/dev/mapper/docker-docker--data /var/lib/docker xfs defaults,nofail,pquota,noatime 0 0\r\n")
    again = thin_volume.merged_fstab(_fstab_source(raw), device, "/var/lib/docker/", force=False)
    assert again is None  # a trailing slash names the same mount point


def test_fstab_replacing_an_entry_with_force_drops_only_that_line() -> None:
    raw = b"UUID=1 / ext4 defaults 0 1\n/dev/old /var/lib/docker/ ext4 defaults 0 0\nUUID=2 /home ext4 defaults 0 2\n"
    with pytest.raises(Exception, match="already mounts /dev/old on /var/lib/docker"):
        thin_volume.merged_fstab(_fstab_source(raw), "/dev/mapper/x", "/var/lib/docker", force=False)
    merged = thin_volume.merged_fstab(_fstab_source(raw), "/dev/mapper/x", "/var/lib/docker", force=True)
    assert merged is not None
    assert merged.startswith("UUID=1 / ext4 defaults 0 1\nUUID=2 /home ext4 defaults 0 2\n")
    assert "/dev/old" not in merged


def test_the_entry_an_earlier_thinpool_wrote_gains_nofail_in_place_without_force() -> None:
    earlier = b"UUID=1 / ext4 defaults 0 1\r\n# thinpool: Docker's store on a thin volume\r\n"
    ours = b"/dev/mapper/docker-docker--data /var/lib/docker xfs defaults,pquota,noatime 0 0\r\n"
    after = b"UUID=2 /home ext4 defaults 0 2"
    merged = thin_volume.merged_fstab(
        _fstab_source(earlier + ours + after), DOCKER_DEVICE, "/var/lib/docker", force=False
    )
    assert merged is not None  # its place, its comment, its line ending, every other byte kept
    assert merged.encode() == earlier + ours.replace(b"defaults,", b"defaults,nofail,") + after
    someone_elses = ours.replace(b"noatime", b"noatime,ro")  # changed by hand: not thinpool's to rewrite
    with pytest.raises(Exception, match="already mounts /dev/mapper/docker-docker--data on /var/lib/docker"):
        thin_volume.merged_fstab(_fstab_source(someone_elses), DOCKER_DEVICE, "/var/lib/docker", force=False)


def test_config_files_are_read_exactly(tmp_path: Path) -> None:
    """Python's text mode turns CRLF into LF on read: the observation layer must not (a VM test caught it)."""
    from thinpool.system import observe

    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").write_bytes(FSTAB_CRLF)
    (tmp_path / "etc/docker").mkdir()
    os.mkfifo(tmp_path / "etc/docker/daemon.json")  # never opened: it would block
    found, unreadable = observe.read_files(("/etc/fstab", "/etc/docker/daemon.json", "/etc/missing"), tmp_path)
    assert found["/etc/fstab"].encode("utf-8", "surrogateescape") == FSTAB_CRLF
    assert unreadable == {"/etc/docker/daemon.json": "not a regular file"}
