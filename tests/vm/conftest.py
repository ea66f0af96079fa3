"""The VM tier: one VM per release for the whole session, shared by every test marked ``vm``; reset between tests.

Every VM test names the releases it runs on (``@pytest.mark.releases("debian-12", "debian-13")``), and runs
once per release, its id ending in ``[debian-12]`` or ``[debian-13]``. The guest boots that release's own
root (``thinpool.rehearse.guest``: built with mmdebstrap into /var/cache/thinpool/guests once) and runs
thinpool from the Debian package that packaging/build-deb makes from this checkout, installed by dpkg at
boot on the release's python3: nothing installed on the host reaches a guest. ``THINPOOL_RELEASES``
(comma-separated) narrows the releases run. Without qemu, mmdebstrap or root the tests skip, unless
THINPOOL_REQUIRE_VM=1 (set by CI), where a missing piece is a failure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from thinpool import __version__
from thinpool.core.units import GiB
from thinpool.rehearse import guest
from thinpool.rehearse.vm import VM

from .machines import SYSTEMD_RESET, boot, boot_systemd, tiny_images

REPO = Path(__file__).resolve().parents[2]
RELEASES_ENV = "THINPOOL_RELEASES"
MATRIX_ENV = "THINPOOL_MATRIX"

# Each command a reset spawns costs ~0.1 s under emulation, and a reset runs before every shared-VM test:
# what is not there is found with bash's own globs and reads, and only what is there is removed.
RESET = r"""
shopt -s nullglob dotglob
# Engines first: stop the daemons, unmount what they mounted, forget their state and configs.
# (here-strings, not <(...): a guest without systemd has no /dev/fd)
running() { local stat comm; while read -r stat comm; do [[ $stat != Z* && $comm =~ ^($1)$ ]] && return 0; done \
  <<< "$(ps -eo stat=,comm=)"; return 1; }
if running 'dockerd|containerd|containerd-shim.*|dnsmasq|incusd'; then
  pkill -x 'dockerd|containerd|dnsmasq'
  # (zombies do not count: the agent reaps them only between requests)
  for i in $(seq 50); do running 'dockerd|containerd' || break; sleep 0.2; done
  pkill -9 -x 'dockerd|containerd|containerd-shim-runc-v2|containerd-shim|incusd'
fi
# Incus: what runs in its containers' cgroups.
lxc=(/sys/fs/cgroup/lxc.* /sys/fs/cgroup/*/lxc.* /sys/fs/cgroup/*/*/lxc.*)
((${#lxc[@]})) && find "${lxc[@]}" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9
mounted=()
while read -r _ point _; do
  [[ $point =~ ^/(var/lib|run)/(docker|containerd|containers|incus) ]] && mounted+=("$point")
done < /proc/mounts
((${#mounted[@]})) && printf '%s\n' "${mounted[@]}" | sort -r | xargs -r umount -l
rm -rf /var/lib/incus /var/cache/incus /var/log/incus /run/incus /var/lib/containers /run/containers \
  /etc/containers/storage.conf /etc/docker /etc/containerd /var/lib/docker /var/lib/containerd /run/docker \
  /run/containerd /run/docker.sock /var/run/docker.pid /etc/systemd/system/docker.service.d \
  /etc/systemd/system/containerd.service.d /etc/lvm/*.thinpool-*.bak /etc/fstab.thinpool-*.bak /etc/crypttab \
  /etc/crypttab.thinpool-*.bak /etc/lvm/profile/thinpool-*.profile /var/lib/thinpool/backups \
  /var/lib/thinpool/checks /var/lib/thinpool/migrate /var/lib/docker.devicemapper /srv/staging /etc/thinpool \
  /etc/dnsmasq.d
[ -f /run/fstab.orig ] || cp /etc/fstab /run/fstab.orig; cp /run/fstab.orig /etc/fstab
[ -f /run/lvmlocal.orig ] || cp /etc/lvm/lvmlocal.conf /run/lvmlocal.orig; cp /run/lvmlocal.orig /etc/lvm/lvmlocal.conf
# lvm: every VG and PV (one report names both), the mappings left, every signature on the disks.
vgs=() pvs=()
while read -r pv vg; do [[ -n $pv ]] && pvs+=("$pv"); [[ -n $vg ]] && vgs+=("$vg"); done \
  <<< "$(pvs --noheadings -o pv_name,vg_name 2>/dev/null)"
if ((${#vgs[@]})); then
  for vg in $(printf '%s\n' "${vgs[@]}" | sort -u); do vgremove -ff -y "$vg" >/dev/null 2>&1; done
fi
dmsetup remove_all --force >/dev/null 2>&1  # always: a mapping without a table has no node and no /sys entry
((${#pvs[@]})) && pvremove -ff -y "${pvs[@]}" >/dev/null 2>&1
wipefs -a -q /dev/vd? >/dev/null 2>&1
# Without udev, lvm's /dev/VG folders can outlive their VG (a killed lvm): drop those that
# hold only dangling links, or the next vgcreate of that name fails.
for folder in /dev/*/; do
  folder=${folder%/}; entries=("$folder"/*); ((${#entries[@]})) || continue
  stale=1; for entry in "${entries[@]}"; do { [ -L "$entry" ] && [ ! -e "$entry" ]; } || stale=0; done
  [ "$stale" = 1 ] && rm -rf "$folder"
done
((${#vgs[@]})) && vgs --noheadings 2>/dev/null | grep -q . && exit 1
exit 0
"""


def selected_releases() -> list[str]:
    wanted = os.environ.get(RELEASES_ENV, "")
    names = [name.strip() for name in wanted.split(",") if name.strip()] or list(guest.RELEASES)
    for name in names:
        guest.release_named(name)  # an unknown name is refused here, not silently run as nothing
    return names


def full_matrix() -> bool:
    """THINPOOL_MATRIX=full runs every test on every release it names; the default (CI's) runs a test
    marked ``releases(..., ci=NAME)`` on NAME only."""
    return os.environ.get(MATRIX_ENV, "ci") == "full"


def releases_of(item: pytest.Item) -> tuple[str, ...]:
    """The releases the closest ``releases`` marker names (a parameter's own marker comes first)."""
    marker = item.get_closest_marker("releases")
    if marker is None or not marker.args:
        raise pytest.UsageError(
            f"{item.nodeid}: a VM test names its releases (@pytest.mark.releases('debian-12', 'debian-13'))"
        )
    ci = marker.kwargs.get("ci")
    names = tuple(marker.args) if full_matrix() or ci is None else (ci,)
    for name in (*marker.args, *names):
        guest.release_named(name)
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each VM test once per selected release; pytest_collection_modifyitems keeps those it names."""
    if "release" in metafunc.fixturenames:
        metafunc.parametrize("release", selected_releases(), indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        release = callspec.params.get("release") if callspec is not None else None
        if item.get_closest_marker("sweep") is not None and not full_matrix():
            dropped.append(item)  # more points of a sweep CI runs a short version of
        elif release is None:
            kept.append(item)
        else:
            (kept if release in releases_of(item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def release(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def thinpool_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Debian package packaging/build-deb makes from this checkout, built once a session."""
    out = tmp_path_factory.mktemp("deb")
    subprocess.run([str(REPO / "packaging/build-deb"), "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out / f"thinpool_{__version__}_all.deb"


@pytest.fixture(scope="session")
def vm_session(release: str, thinpool_deb: Path) -> Iterator[VM]:
    machine = boot(release, thinpool_deb, write_budget=6 * GiB, lifetime=3600)
    print(f"\n{release} VM booted in {machine.boot_seconds:.1f}s")
    try:
        yield machine
    finally:
        machine.close()


@pytest.fixture
def vm(vm_session: VM) -> VM:
    """The shared VM, blank: no VG, PV label, signature or thinpool profile on any disk."""
    vm_session.run(["bash", "-c", RESET], timeout=120)
    return vm_session


@pytest.fixture
def images(vm_session: VM) -> Iterator[dict[str, str]]:
    yield tiny_images(vm_session)
    for name in ("tiny-rootfs.tar", "tiny-oci.tar"):
        (vm_session.share / name).unlink(missing_ok=True)


class SystemdMachines:
    """The release's guest under its real systemd, booted once for the ``systemd_vm`` tests that run one after
    another (power cuts, reboots), and closed as soon as the next test takes no ``systemd_vm``: no idle
    emulated VM runs beside the others, and never two systemd guests at once."""

    def __init__(self) -> None:
        self._machines: dict[str, VM] = {}

    def get(self, release: str, deb: Path) -> VM:
        if release not in self._machines:
            self.close()
            self._machines[release] = boot_systemd(release, deb, write_budget=10 * GiB, lifetime=7200)
        return self._machines[release]

    def close(self) -> None:
        while self._machines:
            self._machines.popitem()[1].close()


SYSTEMD_MACHINES = SystemdMachines()


@pytest.fixture
def systemd_vm(release: str, thinpool_deb: Path) -> VM:
    """The systemd guest, reset: no pool, blank disks, no engine or thinpool unit enabled."""
    machine = SYSTEMD_MACHINES.get(release, thinpool_deb)
    machine.run(["bash", "-c", SYSTEMD_RESET], timeout=300)
    return machine


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or "systemd_vm" not in getattr(nextitem, "fixturenames", ()):
        SYSTEMD_MACHINES.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    SYSTEMD_MACHINES.close()
