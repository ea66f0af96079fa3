"""thinpool rehearse as an operator runs it: the real CLI, its own throwaway VM."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from thinpool.rehearse import deps
from thinpool.rehearse.vm import EMULATED_PANIC, kvm_usable

# Each test boots a throwaway VM of its own. Without KVM, the emulator now and then crashes a healthy guest
# kernel after boot (an Oops: int3 under MTTCG, seen about once in 750 tests); the rehearsal then says so, and
# such a test is run once more from the start (pytest shows the rerun). Any other failure is never rerun.
pytestmark = [
    pytest.mark.vm,
    pytest.mark.flaky(reruns=1, only_rerun=[EMULATED_PANIC], condition=not kvm_usable()),
]


def _qemu_processes() -> list[str]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if "qemu-system" in line and "thinpool-vm-" in line]


def _needs(engines: bool) -> None:
    if os.geteuid() != 0 or deps.missing(engines):
        if os.environ.get("THINPOOL_REQUIRE_VM") == "1":
            pytest.fail("the rehearsal needs root and its packages here")
        pytest.skip("needs root and the rehearsal packages")


def _rehearse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "thinpool", "rehearse", *args], capture_output=True, text=True, timeout=900, check=False
    )


def test_rehearse_applies_the_plan_and_cleans_up() -> None:
    _needs(engines=False)
    before = set(_qemu_processes())
    done = _rehearse("--disk-size", "4GiB", "--disk-size", "2GiB", "--vg", "vg-docker", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    report = json.loads(done.stdout)
    assert report["kind"] == "thinpool-rehearsal" and report["schema_version"] == 1 and report["engine"] is None
    assert report["ok"] and report["matches_plan"] and not report["second_changed"]
    layout = report["plan"]["layout"]
    assert layout["free_extents"] == 1023 + 511
    assert report["pool"]["data_size"] == layout["data_size"]
    assert report["pool"]["vg_free_extents"] == layout["headroom_extents"] + layout["left_extents"]
    assert set(_qemu_processes()) <= before  # no VM left behind


@pytest.mark.parametrize(
    ("engine", "driver", "reported"),
    [
        # CI starts an engine on a rehearsed pool in the host-device rehearsal (containerd-devmapper) below
        pytest.param("docker-devicemapper", "devicemapper", ("Pool Name", "docker-thinpool"), marks=pytest.mark.sweep),
        pytest.param(
            "containerd-devmapper", "devmapper snapshotter", ("pool_name", "docker-thinpool"), marks=pytest.mark.sweep
        ),
    ],
)
def test_rehearse_starts_the_engine_on_the_rehearsed_pool(engine: str, driver: str, reported: tuple[str, str]) -> None:
    """The host's /etc is seen by the VM: the rehearsal must still pass, and the engine must run a container."""
    _needs(engines=True)
    before = set(_qemu_processes())
    done = _rehearse("--disk-size", "20GiB", "--engine", engine, "--json")
    report = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    assert done.returncode == 0, (done.stderr, report.get("problem"), json.dumps(report.get("engine"), indent=1))
    assert report["ok"] and report["matches_plan"] and not report["second_changed"]
    run = report["engine"]
    assert run["ok"] and run["engine"] == engine and run["storage_driver"] == driver and run["version"]
    key, value = reported
    assert run["reported"][key] == value
    assert run["pool_growth_bytes"] * 4 >= run["written_bytes"] * 3
    assert set(_qemu_processes()) <= before


def test_rehearse_on_a_pinned_release_says_each_thing_once() -> None:
    """--release debian-13: that release's own kernel, lvm2 and Docker 26, this thinpool on its python3."""
    _needs(engines=False)
    done = _rehearse("--release", "debian-13", "--disk-size", "20GiB", "--engine", "docker-overlay2-thin")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    out = done.stdout
    assert "Debian 13: lvm2 2.03.31" in out and "kernel 6.12." in out
    assert "(dockerd 26." in out  # the release's Docker ran the container, not this host's
    assert out.count("thinpool plan for docker/thinpool") == 1
    assert out.count("create thin-pool docker/thinpool") == 2  # in the plan, then once as a step done
    assert "[1/" not in out + done.stderr  # no progress lines repeating the steps
    assert "Engine: docker-overlay2-thin" in out and "storage driver overlay2" in out
    assert "  Backing Filesystem: xfs" in out  # the daemon's own word for what backs overlay2
    assert "ran a container on it" in out


@pytest.mark.sweep  # more pinned-release rehearsals: the full matrix runs them, CI covers the engines in test_engines
@pytest.mark.parametrize(
    ("engine", "said"),
    [
        ("docker-containerd-thin", ("(dockerd 26.", "  driver-type: io.containerd.snapshotter.v1")),
        ("containerd-overlayfs-thin", ("(containerd 1.7", "storage driver overlayfs snapshotter", "  root: /var/lib/")),
        ("podman-overlay-thin", ("(podman 5.", "storage driver overlay", "  graphRoot: /var/lib/containers/storage")),
    ],
)
def test_rehearse_of_todays_engines_runs_a_container_on_the_pool(engine: str, said: tuple[str, ...]) -> None:
    """Debian 13's own Docker 26 with the containerd store, containerd 1.7 on overlayfs, and podman 5."""
    _needs(engines=False)
    done = _rehearse("--release", "debian-13", "--disk-size", "20GiB", "--engine", engine)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert all(text in done.stdout for text in (f"Engine: {engine} ", *said)), done.stdout[-3000:]
    assert "Rehearsal passed" in done.stdout


@pytest.mark.sweep  # test_encrypt proves --encrypt in CI; this proves the rehearsal's saved plan keeps its UUIDs
def test_rehearse_of_an_encrypted_pool_formats_opens_and_applies_the_plan_made_here() -> None:
    """With --tpm2: the throwaway VM gets a TPM of its own, which the plan's new header is enrolled with."""
    _needs(engines=False)
    done = _rehearse("--release", "debian-13", "--disk-size", "4GiB", "--encrypt", "--tpm2", "--json")
    report = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    assert done.returncode == 0, (done.stderr, report.get("problem"), report.get("first_result"))
    assert report["ok"] and report["matches_plan"] and not report["second_changed"]
    kinds = [action["kind"] for action in report["plan"]["actions"]]
    assert kinds[:6] == ["key-file", "luks-header", "luks-tpm2", "luks-header-backup", "luks-mapping", "crypttab"]


def test_a_rehearsal_of_what_the_release_cannot_run_fails_and_says_why() -> None:
    """Debian 13's Docker 26 has no devicemapper: the rehearsal must fail (exit 1), name the cause, and clean up."""
    _needs(engines=False)
    before = set(_qemu_processes())
    done = _rehearse("--release", "debian-13", "--disk-size", "8GiB", "--engine", "docker-devicemapper")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr
    verdict = done.stdout.strip().splitlines()[-1]
    assert verdict.startswith("Rehearsal FAILED: the apply failed (") and "devicemapper" in verdict, verdict
    assert "Rehearsal passed" not in done.stdout
    assert set(_qemu_processes()) <= before


def _a_host_disk() -> str:
    """A block device of this host (read only: its size and signatures)."""
    listed = json.loads(
        subprocess.run(
            ["lsblk", "--json", "--bytes", "-d", "-o", "PATH,SIZE,TYPE"], capture_output=True, text=True, check=True
        ).stdout
    )
    disks = [node["path"] for node in listed["blockdevices"] if node["type"] == "disk" and int(node["size"]) >= 2**30]
    assert disks, "no block device of at least 1 GiB on this host"
    return str(disks[0])


def test_rehearse_of_a_host_device_rehearses_the_merge_into_this_hosts_config() -> None:
    _needs(engines=True)
    host_config = "/etc/containerd/config.toml"
    before = open(host_config, "rb").read() if os.path.exists(host_config) else None  # noqa: SIM115
    done = _rehearse(_a_host_disk(), "--engine", "containerd-devmapper", "--json")
    report = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    assert done.returncode == 0, (done.stderr, report.get("problem"), json.dumps(report.get("engine"), indent=1))
    assert report["ok"] and report["engine"]["ok"] and report["engine"]["reported"]["pool_name"] == "docker-thinpool"
    write = next(action for action in report["plan"]["actions"] if action["kind"] == "engine-config")
    if before is not None:  # the host's own file was the base of the merge, and is unchanged here
        import tomllib

        theirs, merged = tomllib.loads(before.decode()), tomllib.loads(write["content"])
        for name, section in theirs.get("plugins", {}).items():
            assert merged["plugins"][name] == section, name
        assert open(host_config, "rb").read() == before  # noqa: SIM115
