"""The pinned guest roots' recipe, without building one (the VM tests boot them)."""

from pathlib import Path

import pytest

from thinpool.errors import ThinpoolError
from thinpool.rehearse import guest


def test_the_mirror_is_read_from_this_hosts_apt_sources_security_left_out(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert guest.host_mirror((tmp_path / "absent", deb822)) == "http://mirror.example/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("# comment\ndeb [signed-by=/k.gpg] http://other.example/debian bookworm main\n")
    assert guest.host_mirror((one_line,)) == "http://other.example/debian"
    assert guest.host_mirror((tmp_path / "absent",)) == guest.DEFAULT_MIRROR


def test_a_changed_recipe_gets_a_new_cache_key_and_the_build_is_one_mmdebstrap_call(tmp_path: Path) -> None:
    twelve, thirteen = guest.RELEASES["debian-12"], guest.RELEASES["debian-13"]
    assert twelve.recipe_key("http://a") != twelve.recipe_key("http://b") != thirteen.recipe_key("http://b")
    assert twelve.recipe_key("http://a") == guest.release_named("debian-12").recipe_key("http://a")
    argv = guest.build_argv(thirteen, tmp_path / "root", "http://a/debian")
    assert argv[0] == "mmdebstrap" and argv[-3:] == (
        "trixie",
        str(tmp_path / "root"),
        "deb http://a/debian trixie main",
    )
    included = next(arg for arg in argv if arg.startswith("--include=")).removeprefix("--include=").split(",")
    assert {"linux-image-amd64", "lvm2", "thin-provisioning-tools", "docker-cli", "systemd"} <= set(included)
    assert "docker-cli" not in guest.build_argv(twelve, tmp_path, "http://a").__str__()  # 20.10's docker.io has it


def test_an_unknown_release_is_refused_with_the_names() -> None:
    with pytest.raises(ThinpoolError, match="debian-12, debian-13"):
        guest.release_named("debian-11")


def test_a_built_root_is_found_in_the_cache_with_its_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = guest.RELEASES["debian-13"]
    monkeypatch.setenv(guest.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(guest, "host_mirror", lambda: "http://a")
    root = tmp_path / f"debian-13-{release.recipe_key('http://a')}"
    (root / "boot").mkdir(parents=True)
    (root / "boot/vmlinuz-6.12.1-amd64").write_bytes(b"k")
    (root / ".thinpool-ready").write_text("{}\n")
    found = guest.obtain(release, runner=None)  # type: ignore[arg-type]  # a cached root runs nothing
    assert found.path == root and found.kernel.version == "6.12.1-amd64" and found.python == "/usr/bin/python3"


def test_after_a_build_the_older_roots_of_that_release_go_unless_a_vm_shares_one(tmp_path: Path) -> None:
    def built(name: str) -> Path:
        (tmp_path / name).mkdir()
        (tmp_path / name / ".thinpool-ready").write_text("{}\n")
        return tmp_path / name

    new, old, booted = built("debian-13-aaa"), built("debian-13-bbb"), built("debian-13-ccc")
    other_release, half_built = built("debian-12-ddd"), tmp_path / "debian-13-eee"
    half_built.mkdir()  # no .thinpool-ready: another builder's, or a broken one; not ours to judge
    stale = guest.stale_roots(guest.RELEASES["debian-13"], new, {booted})
    assert stale == [old] and other_release.exists()


def test_the_roots_in_use_are_read_from_qemus_command_lines(tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    argv = ["qemu-system-x86_64", "-fsdev", "local,id=root,path=/cache/debian-13-bbb,security_model=none,readonly=on"]
    (tmp_path / "4242/cmdline").write_bytes(b"\0".join(arg.encode() for arg in argv) + b"\0")
    (tmp_path / "77").mkdir()
    (tmp_path / "77/cmdline").write_bytes(b"bash\0-c\0sleep 1\0")
    assert guest.roots_in_use(tmp_path) == {Path("/cache/debian-13-bbb")}
