"""packaging/build-deb: the package's fields and files, lintian's verdict, and the bash completion made from
the parser, run by real bash. The package is installed and used in tests/vm/test_package.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from thinpool import __version__

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [str(ROOT / "packaging/build-deb"), "--out", str(out)], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    built = out / f"thinpool_{__version__}_all.deb"
    assert done.stdout.strip() == str(built)
    return built


def _field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()


def _contents(deb: Path) -> dict[str, str]:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].removeprefix("."): line.split()[0] for line in listing.splitlines()}


def _file(deb: Path, path: str, tmp_path: Path) -> str:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    return (tmp_path / path.lstrip("/")).read_text()


def test_the_package_depends_on_debians_python_and_libraries(deb: Path) -> None:
    depends = _field(deb, "Depends")
    for package in (
        "python3 (>= 3.11)",
        "python3-tomlkit",
        "python3-prometheus-client",
        "python3-cryptography",
        "lvm2",
        "thin-provisioning-tools",
        "xfsprogs",
    ):
        assert package in depends
    assert _field(deb, "Architecture") == "all" and _field(deb, "Version") == __version__


def test_it_installs_the_command_library_units_man_page_and_completion(deb: Path, tmp_path: Path) -> None:
    files = _contents(deb)
    assert files["/usr/bin/thinpool"] == "-rwxr-xr-x"
    assert "/usr/lib/python3/dist-packages/thinpool/cli/__init__.py" in files
    assert "/usr/lib/python3/dist-packages/thinpool/data/systemd/thinpool-maintain.timer" in files  # install-units
    assert not [path for path in files if "__pycache__" in path or path.endswith(".pyc")]
    for unit in ("thinpool-activate.service", "thinpool-maintain.timer", "thinpool-metrics.service"):
        assert f"/lib/systemd/system/{unit}" in files
    assert {
        "/usr/share/man/man8/thinpool.8.gz",
        "/usr/share/bash-completion/completions/thinpool",
        "/usr/share/doc/thinpool/copyright",
    } <= set(files)
    assert _file(deb, "/usr/bin/thinpool", tmp_path).startswith("#!/usr/bin/python3\n")
    unit = (tmp_path / "lib/systemd/system/thinpool-metrics.service").read_text()
    assert "ExecStart=/usr/bin/thinpool metrics" in unit and "/usr/local" not in unit
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp_path / "DEBIAN")], check=True)
    prerm = (tmp_path / "DEBIAN/prerm").read_text()
    assert "py3clean" in prerm and "lvremove" not in prerm and "/etc" not in prerm  # pools and configs stay


@pytest.mark.skipif(shutil.which("lintian") is None, reason="lintian is not installed (thinpool.rehearse.deps)")
def test_lintian_finds_no_error(deb: Path) -> None:
    done = subprocess.run(
        ["lintian", "--tag-display-limit", "0", str(deb)], capture_output=True, text=True, check=False
    )
    errors = [line for line in done.stdout.splitlines() if line.startswith("E:")]
    assert errors == [] and done.returncode == 0, done.stdout


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        (["thinpool", "me"], {"metrics"}),
        (["thinpool", "metrics", "--te"], {"--textfile"}),
        (["thinpool", "-v", "apply", "--tls-"], {"--tls-generate", "--tls-san", "--tls-renew"}),
        (["thinpool", "engine", "con"], {"configure"}),
        (["thinpool", "repair", "--from"], {"--from-backup"}),
    ],
)
def test_bash_completes_commands_and_their_options(
    deb: Path, tmp_path: Path, words: list[str], offered: set[str]
) -> None:
    completion = tmp_path / "thinpool.bash"
    completion.write_text(_file(deb, "/usr/share/bash-completion/completions/thinpool", tmp_path / "x"))
    script = (
        f"source {completion}; COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; _thinpool; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert offered <= set(done.stdout.split()), done.stdout
