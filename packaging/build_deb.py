"""Build dist/thinpool_VERSION_all.deb with dpkg-deb: the library for Debian's python3, /usr/bin/thinpool,
the systemd units (installed, never enabled), the thinpool(8) man page and bash completion, both made
from the command line's own parser so they cannot drift from it.

    packaging/build-deb [--out DIR]      (run from the repository root)

Removing the package removes these files only: pools, configs, certificates and backups stay.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thinpool import __version__  # noqa: E402 (the checkout's, not an installed one)
from thinpool.cli import build_parser  # noqa: E402

PACKAGE = "thinpool"
DEPENDS = (
    "python3 (>= 3.11)",
    "python3-tomlkit",
    "python3-prometheus-client",
    "python3-cryptography",
    "lvm2",
    "thin-provisioning-tools",
    "xfsprogs",
)
RECOMMENDS = ("psmisc",)  # fuser: repair names the processes holding a volume
SUGGESTS = ("cryptsetup-bin",)  # --encrypt (and systemd-cryptsetup on Debian 13, for the boot's unlock)
SUMMARY = "LVM thin-pool storage for container hosts"
DESCRIPTION = """\
thinpool plans LVM thin pools for container engines in exact extents
(counting the hidden pool-metadata spare and the room autoextend needs),
applies them idempotently, wires Docker (overlay2 on a thin volume, or
devicemapper) or containerd's devmapper snapshotter to them, and keeps
them healthy: reclaim, when-full policy, metadata backups and repair,
Prometheus metrics and alerts."""
MAINTAINER = "thinpool maintainers <thinpool@example.org>"
UNIT_DIR = "lib/systemd/system"
LIBRARY_DIR = "usr/lib/python3/dist-packages"
LAUNCHER = "#!/usr/bin/python3\nimport sys\n\nfrom thinpool.cli import main\n\nsys.exit(main())\n"
COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: thinpool

Files: *
Copyright: 2026 thinpool authors
License: Apache-2.0

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may not
 use this file except in compliance with the License.
 .
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in the file '/usr/share/common-licenses/Apache-2.0'.
"""
POSTINST = """\
#!/bin/sh
set -e
# Byte-compile for Debian's python3. The units are installed, not enabled: thinpool install-units
# or systemctl enable does that once the pool exists.
if [ "$1" = configure ] && command -v py3compile >/dev/null 2>&1; then
    py3compile -p thinpool
fi
"""
PRERM = """\
#!/bin/sh
set -e
# Only the package's byte code goes: pools, configs, certificates and backups stay.
if command -v py3clean >/dev/null 2>&1; then
    py3clean -p thinpool
else
    find /usr/lib/python3/dist-packages/thinpool -name __pycache__ -type d -prune -exec rm -rf {} +
fi
"""


def _gzip(text: str) -> bytes:
    """gzip -9n: no name and no time inside, so a rebuild is byte for byte the same."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as packed:
        packed.write(text.encode())
    return buffer.getvalue()


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.splitlines())


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser, sub-commands as 'engine show'."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found |= {f"{name} {inner}": nested for inner, nested in _commands(sub).items()}
    return found


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings and action.help != argparse.SUPPRESS]


def _value(action: argparse.Action) -> str:
    """What an option takes, as --help shows it ("" for a flag)."""
    if action.nargs == 0:
        return ""
    if action.metavar:
        return str(action.metavar)
    if action.choices:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper()


def man_page(parser: argparse.ArgumentParser, version: str) -> str:
    lines = [
        f'.TH THINPOOL 8 "" "thinpool {version}" "System Administration"',
        ".SH NAME",
        f"thinpool \\- {SUMMARY}",
        ".SH SYNOPSIS",
        ".B thinpool",
        "[\\fB\\-v\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        _roff(parser.description or ""),
        ".PP",
        _roff(DESCRIPTION),
        ".SH COMMANDS",
    ]
    for name, command in _commands(parser).items():
        lines += [f'.SS "thinpool {_roff(name)}"', _roff(command.description or command.format_usage().strip())]
        for action in _options(command):
            flags = ", ".join(f"\\fB{_roff(flag)}\\fR" for flag in action.option_strings)
            metavar = f" \\fI{_roff(_value(action))}\\fR" if _value(action) else ""
            lines += [".TP", flags + metavar, _roff((action.help or "").replace("%%", "%"))]
        if command.epilog:
            lines += [".PP", ".nf", _roff(command.epilog), ".fi"]
    lines += [
        ".SH EXIT STATUS",
        ".nf",
        _roff((parser.epilog or "").split("\n\n", 1)[-1]),
        ".fi",
        ".SH FILES",
        ".TP",
        "\\fI/var/lib/thinpool/backups/\\fR",
        "metadata backups, one folder per pool",
        ".TP",
        "\\fI/etc/thinpool/tls/\\fR",
        "the CA, dockerd's certificate and the client bundle made by \\fB\\-\\-tls\\-generate\\fR",
        ".TP",
        "\\fI/lib/systemd/system/thinpool\\-*.service\\fR, \\fIthinpool\\-*.timer\\fR",
        "units for activation at boot, maintenance and metrics (not enabled by the package)",
        ".SH SEE ALSO",
        ".BR lvmthin (7),",
        ".BR lvcreate (8),",
        ".BR dmeventd (8),",
        ".BR dockerd (8)",
    ]
    return "\n".join(lines) + "\n"


def bash_completion(parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    top = [name for name in commands if " " not in name]
    cases = []
    for name, command in commands.items():
        words = [flag for action in _options(command) for flag in action.option_strings]
        words += [
            inner.split(" ", 1)[1] for inner in commands if inner.startswith(name + " ") and inner.count(" ") == 1
        ]
        cases.append(f'        "{name}") words="{" ".join(words)}" ;;')
    return (
        "\n".join(
            (
                "# bash completion for thinpool (made from its parser)",
                "_thinpool() {",
                '    local cur=${COMP_WORDS[COMP_CWORD]} command="" word words',
                '    for word in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do',
                '        case $word in -*) ;; *) command="${command:+$command }$word" ;; esac',
                "    done",
                '    case "$command" in',
                f'        "") words="{" ".join(top)} --help --version --verbose" ;;',
                *cases,
                '        *) words="" ;;',
                "    esac",
                '    if [[ -z "$command" || "$cur" == -* || "$command" == "engine" ]]; then',
                '        mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")',
                "    else",
                '        mapfile -t COMPREPLY < <(compgen -f -- "$cur")',
                "    fi",
                "}",
                "complete -F _thinpool thinpool",
            )
        )
        + "\n"
    )


def control(installed_kib: int) -> str:
    body = "\n".join(" " + line if line.strip() else " ." for line in DESCRIPTION.splitlines())
    return (
        f"Package: {PACKAGE}\nVersion: {__version__}\nArchitecture: all\nMaintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_kib}\nDepends: {', '.join(DEPENDS)}\nRecommends: {', '.join(RECOMMENDS)}\n"
        f"Suggests: {', '.join(SUGGESTS)}\n"
        f"Section: admin\nPriority: optional\nHomepage: https://github.com/thinpool/thinpool\n"
        f"Description: {SUMMARY}\n{body}\n"
    )


def _write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def stage(tree: Path) -> None:
    """The package's files under ``tree``, DEBIAN/ included."""
    library = tree / LIBRARY_DIR / "thinpool"
    shutil.copytree(ROOT / "src/thinpool", library, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in library.rglob("*"):
        script = path.suffix == ".sh"  # the rehearsal VM's second stage runs as a program
        path.chmod(0o755 if path.is_dir() or script else 0o644)
    _write(tree / "usr/bin/thinpool", LAUNCHER, 0o755)
    for unit in sorted((ROOT / "src/thinpool/data/systemd").iterdir()):
        _write(tree / UNIT_DIR / unit.name, unit.read_text().replace("/usr/local/bin/thinpool", "/usr/bin/thinpool"))
    parser = build_parser()
    _write(tree / "usr/share/man/man8/thinpool.8.gz", _gzip(man_page(parser, __version__)))
    _write(tree / "usr/share/bash-completion/completions/thinpool", bash_completion(parser))
    docs = tree / "usr/share/doc/thinpool"
    _write(docs / "copyright", COPYRIGHT)
    when = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH") or time.time()))
    built = time.strftime("%a, %d %b %Y %H:%M:%S +0000", when)  # Debian's changelog date
    entry = (
        f"thinpool ({__version__}) unstable; urgency=medium\n\n  * Built from the thinpool repository.\n\n"
        f" -- {MAINTAINER}  {built}\n"
    )
    _write(docs / "changelog.gz", _gzip(entry))  # a native package's name for it
    for folder in [tree, *(path for path in tree.rglob("*") if path.is_dir())]:
        folder.chmod(0o755)
    payload = sorted(path for path in tree.rglob("*") if path.is_file())
    sums = "".join(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(tree)}\n" for p in payload)  # noqa: S324 (dpkg's format)
    size = sum(path.stat().st_size for path in payload) // 1024 + 1
    _write(tree / "DEBIAN/control", control(size))
    _write(tree / "DEBIAN/md5sums", sums)
    _write(tree / "DEBIAN/postinst", POSTINST, 0o755)
    _write(tree / "DEBIAN/prerm", PRERM, 0o755)


def build(out: Path) -> Path:
    if shutil.which("dpkg-deb") is None:
        raise SystemExit("build-deb: dpkg-deb is not installed (apt install dpkg)")
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{PACKAGE}_{__version__}_all.deb"
    with tempfile.TemporaryDirectory(prefix="thinpool-deb.") as temporary:
        tree = Path(temporary) / "root"
        os.umask(0o022)
        stage(tree)
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(target)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="packaging/build-deb", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the .deb goes (default: dist/)")
    target = build(parser.parse_args(argv).out)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
