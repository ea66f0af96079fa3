"""Build the Ansible collection with the thinpool library inside it, so its module needs nothing installed on
the target but Python 3.11 (and tomlkit for containerd-devmapper).

    packaging/build-collection [--out DIR]      (run from the repository root)

The library under src/ is copied into plugins/module_utils/thinpool/ of a staged copy of
ansible_collections/thinpool/thinpool, with every ``thinpool`` import rewritten to that place (the
module's too); Ansible then sends the parts the module imports along with it. src/ stays the one
source: nothing generated is kept in the repository. ansible-galaxy collection build writes
DIR/thinpool-thinpool-VERSION.tar.gz (default dist/).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLLECTION = ROOT / "ansible_collections/thinpool/thinpool"
BUNDLED = "ansible_collections.thinpool.thinpool.plugins.module_utils.thinpool"
# What the module never imports: the command line, the rehearsal VM, the units' templates.
LEFT_OUT = ("cli", "rehearse", "data", "__main__.py")
_IMPORT = re.compile(r"^(\s*)(from|import) thinpool(?=[.\s])", re.MULTILINE)


def rewrite(source: str) -> str:
    """``from thinpool.x import y`` / ``import thinpool.x`` -> the bundled copy's absolute name."""
    return _IMPORT.sub(lambda found: f"{found.group(1)}{found.group(2)} {BUNDLED}", source)


def _bundle(target: Path) -> None:
    library = target / "plugins/module_utils/thinpool"
    shutil.copytree(ROOT / "src/thinpool", library, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *LEFT_OUT))
    (target / "plugins/module_utils/__init__.py").touch()
    for path in library.rglob("*.py"):
        text = rewrite(path.read_text())
        leftover = re.search(rf"{re.escape(BUNDLED)}\.(cli|rehearse)\b", text)
        if leftover:
            raise SystemExit(
                f"build-collection: {path.relative_to(target)} imports {leftover.group(0)}, "
                "which the collection does not carry"
            )
        path.write_text(text)
    module = target / "plugins/modules/thinpool.py"
    module.write_text(rewrite(module.read_text()))


def build(out: Path) -> Path:
    galaxy = shutil.which("ansible-galaxy") or str(Path(sys.executable).parent / "ansible-galaxy")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="thinpool-collection.") as temporary:
        staged = Path(temporary) / "thinpool"
        shutil.copytree(COLLECTION, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tar.gz"))
        _bundle(staged)
        done = subprocess.run(
            [galaxy, "collection", "build", "--force", "--output-path", str(out), str(staged)],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"build-collection: ansible-galaxy failed: {done.stderr or done.stdout}")
    version = re.search(r"^version:\s*(\S+)", (COLLECTION / "galaxy.yml").read_text(), re.MULTILINE)
    assert version is not None, "galaxy.yml has a version"
    return out / f"thinpool-thinpool-{version.group(1)}.tar.gz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="packaging/build-collection", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the tarball goes (default: dist/)")
    print(build(parser.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
