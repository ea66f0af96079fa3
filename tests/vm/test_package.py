"""The Debian package on Debian's own python3 and libraries: dpkg installs it, the packaged thinpool plans and
applies a real pool and serves its metrics, and dpkg -r leaves the pool alone."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from thinpool import __version__
from thinpool.rehearse.vm import SHARE_MOUNT, VM

from .helpers import lvs

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13")]

DEB = f"thinpool_{__version__}_all.deb"
PACKAGED = ["env", "-u", "PYTHONPATH", "-u", "PYTHONHOME"]
SCRAPE = (
    "import sys, time, urllib.request\n"
    "for _ in range(150):\n"
    " try: print(urllib.request.urlopen('http://127.0.0.1:9731/metrics', timeout=5).read().decode()); break\n"
    " except OSError: time.sleep(0.2)\n"
)


@pytest.fixture
def deb(vm: VM) -> Iterator[str]:
    """The package the VM installed at boot (from this checkout's packaging/build-deb); installed again after."""
    path = f"{SHARE_MOUNT}/{DEB}"
    yield path
    vm.run(["dpkg", "-i", path], timeout=300)  # the rest of the session runs the packaged thinpool


def _packaged(vm: VM, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = vm.run([*PACKAGED, *args], check=check, timeout=600)
    return subprocess.CompletedProcess(args, done.returncode, done.stdout, done.stderr)


def test_dpkg_installs_it_the_packaged_thinpool_applies_a_pool_and_removal_leaves_the_pool(
    vm: VM, deb: str, release: str
) -> None:
    status = vm.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", "thinpool"]).stdout
    assert status == f"install ok installed {__version__}"  # dpkg installed it at boot, its dependencies met
    python = {"debian-12": "3.11", "debian-13": "3.13"}[release]
    where = _packaged(vm, "/usr/bin/python3", "-c", "import sys, thinpool; print(thinpool.__file__, sys.version)")
    assert where.stdout.startswith(f"/usr/lib/python3/dist-packages/thinpool/__init__.py {python}")
    assert _packaged(vm, "thinpool", "--version").stdout.strip() == f"thinpool {__version__}"
    plan = json.loads(_packaged(vm, "thinpool", "plan", "--disk-size", "744GiB", "--json").stdout)
    assert plan["layout"]["spare_extents"] == plan["layout"]["metadata_extents"]

    applied = json.loads(_packaged(vm, "thinpool", "apply", "--yes", "--json", "/dev/vda").stdout)
    assert applied["ok"] is True
    assert lvs(vm, "docker")["thinpool"].segtype == "thin-pool"
    again = json.loads(_packaged(vm, "thinpool", "apply", "--yes", "--json", "/dev/vda").stdout)
    assert again["changed"] is False
    assert "thin volumes" in _packaged(vm, "thinpool", "status").stdout
    exporter = vm.start_background([*PACKAGED, "thinpool", "metrics", "--listen", "127.0.0.1:9731"])
    try:
        scraped = _packaged(vm, "/usr/bin/python3", "-c", SCRAPE).stdout  # Debian's prometheus-client serves it
    finally:
        vm.run(["kill", str(exporter)], check=False)
    assert 'thinpool_up{pool="thinpool",vg="docker"} 1.0' in scraped
    assert "/usr/bin/thinpool" in vm.run(["cat", "/lib/systemd/system/thinpool-activate.service"]).stdout

    vm.run(["dpkg", "-r", "thinpool"], timeout=300)
    assert vm.run(["test", "-e", "/usr/bin/thinpool"], check=False).returncode != 0
    assert vm.run(["test", "-e", "/usr/lib/python3/dist-packages/thinpool"], check=False).returncode != 0
    assert lvs(vm, "docker")["thinpool"].segtype == "thin-pool"  # the pool stays, untouched
    assert vm.run(["test", "-e", "/etc/lvm/profile/thinpool-docker-thinpool.profile"], check=False).returncode == 0


LIBRARIES = """
import json, tempfile, time
from pathlib import Path
import cryptography, tomlkit
from thinpool.config import containerd_toml, daemon_json, storage_conf
from thinpool.core import tls as rules
from thinpool.core.model import Source
from thinpool.system import tls

root = Path(tempfile.mkdtemp())
want = rules.Wanted(("build.example.test",), ("10.0.0.5",), new_ca=True)
tls.make(root, want, new_ca=True)
crlf = 'version = 2\\r\\n# theirs\\r\\n[plugins]\\r\\n  [plugins.other]\\r\\n    a = 1\\r\\n'
inline = 'version = 2\\nplugins = {}\\n'
settings = {"pool_name": "docker-thinpool", "fs_type": "xfs"}
print(json.dumps({
    "cryptography": cryptography.__version__,
    "tomlkit": tomlkit.__version__,
    "tls_problem": rules.remake_reason(tls.read_files(root), want, time.time(), renew=False),
    "crlf": containerd_toml.edit(crlf, settings, 2),
    "inline": containerd_toml.edit(inline, settings, 2),
    "storage": storage_conf.edit("", {"driver": "overlay"}),
    "nan": str(daemon_json.parse(Source("daemon.json", '{"a": NaN}'))),
}))
"""


def test_the_packaged_library_code_runs_on_the_releases_own_cryptography_and_tomlkit(vm: VM) -> None:
    """TLS certificates and the TOML merges, by the installed package on Debian's python3-cryptography and
    python3-tomlkit (38 and 0.11 on Debian 12): what pip's newer versions in the unit tier cannot show."""
    found = json.loads(_packaged(vm, "python3", "-c", LIBRARIES).stdout)
    print(f"cryptography {found['cryptography']}, tomlkit {found['tomlkit']}")
    assert found["tls_problem"] is None
    assert found["crlf"].count("\r\n") == found["crlf"].count("\n") and "# theirs\r\n" in found["crlf"]
    assert 'pool_name = "docker-thinpool"' in found["crlf"] and 'pool_name = "docker-thinpool"' in found["inline"]
    assert 'driver = "overlay"' in found["storage"] and "graphroot" in found["storage"]
    assert "NaN is not a JSON number" in found["nan"]
