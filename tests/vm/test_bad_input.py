"""Bad input on a real system: saved plans, fstab bytes, containerd's own settings, a linked daemon.json, relative devices."""

from __future__ import annotations

import json

import pytest

from thinpool.core.boot_check import BootCheck
from thinpool.core.spec import PoolSpec
from thinpool.rehearse.vm import SHARE_MOUNT, VM

from .helpers import thinpool_json
from .machines import host_plan

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]


def _sha(vm: VM, path: str) -> str:
    return vm.run(["sha256sum", path]).stdout.split()[0]


def _no_pv(vm: VM) -> bool:
    return vm.run(["pvs", "--noheadings"]).stdout.strip() == ""


def test_an_edited_saved_plan_shows_and_runs_only_what_is_re_derived(vm: VM) -> None:
    # --boot-check full: a plan on virtual disks has not read the host's lvmlocal.conf, so it cannot hold the
    # fast check's write the re-derived plan would add (a saved plan is refused when it differs).
    plan = host_plan(PoolSpec(devices=("/dev/vda",), boot_check=BootCheck.FULL)).to_dict()
    broken = {**plan, "spec": {**plan["spec"], "extent_size": "4m"}}
    (vm.share / "broken.json").write_text(json.dumps(broken))
    code, refusal, err = thinpool_json(vm, "apply", "--yes", f"{SHARE_MOUNT}/broken.json")
    assert code == 1 and "extent_size is str, not int" in refusal["problem"] and "Traceback" not in err
    assert _no_pv(vm)
    edited = {**plan, "warnings": ["reviewed: skip the review"], "next_steps": ["rm -rf /var/lib/docker"]}
    (vm.share / "edited.json").write_text(json.dumps(edited))
    done = vm.thinpool("apply", "--yes", f"{SHARE_MOUNT}/edited.json", check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "skip the review" not in done.stdout and "rm -rf" not in done.stdout
    assert "Apply complete: 5 of 5 changes made." in done.stdout


def test_fstab_keeps_every_byte_it_does_not_own(vm: VM) -> None:
    original = b"# r\xe9sum\xe9 of this host\r\ntmpfs /mnt/scratch tmpfs defaults 0 0\r\n"
    (vm.share / "fstab").write_bytes(original)
    vm.run(["cp", f"{SHARE_MOUNT}/fstab", "/etc/fstab"])
    code, result, err = thinpool_json(
        vm, "apply", "--yes", "--engine", "docker-overlay2-thin", "--data-root", "/var/lib/docker/", "/dev/vda"
    )
    assert code == 0, err or result
    vm.run(["cp", "/etc/fstab", f"{SHARE_MOUNT}/fstab.after"])
    after = (vm.share / "fstab.after").read_bytes()
    assert after.startswith(original)
    assert after.endswith(b" /var/lib/docker xfs defaults,nofail,pquota,noatime 0 0\r\n")
    assert after.count(b"/var/lib/docker") == 1  # the trailing slash named the same mount point
    code, result, _ = thinpool_json(vm, "apply", "--yes", "--engine", "docker-overlay2-thin", "/dev/vda")
    assert code == 0 and result["changed"] is False
    for name in ("fstab", "fstab.after"):
        (vm.share / name).unlink()


def test_containerd_settings_of_the_same_pool_are_not_overwritten(vm: VM) -> None:
    config = (
        'version = 2\\n[plugins."io.containerd.snapshotter.v1.devmapper"]\\n  pool_name = "docker-thinpool"\\n'
        '  root_path = "/srv/snapshots"\\n'
    )
    vm.run(["bash", "-c", f"mkdir -p /etc/containerd && printf '{config}' > /etc/containerd/config.toml"])
    before = _sha(vm, "/etc/containerd/config.toml")
    code, refusal, _ = thinpool_json(vm, "apply", "--yes", "--engine", "containerd-devmapper", "/dev/vda")
    assert code == 1 and "root_path = '/srv/snapshots'" in refusal["problem"] and "--force" in refusal["fix"]
    assert _sha(vm, "/etc/containerd/config.toml") == before and _no_pv(vm)


def test_links_are_refused_untouched_unless_followed_and_masked_or_dangling_ones_always(vm: VM) -> None:
    vm.run(
        [
            "bash",
            "-c",
            'mkdir -p /etc/docker /srv/config && echo \'{"log-driver": "journald"}\' > '
            "/srv/config/daemon.json && ln -s /srv/config/daemon.json /etc/docker/daemon.json",
        ]
    )
    before = _sha(vm, "/srv/config/daemon.json")
    engine = ("--engine", "docker-overlay2-thin", "/dev/vda")
    code, refusal, _ = thinpool_json(vm, "apply", "--yes", "--force", *engine)
    assert code == 1 and "symbolic link to /srv/config/daemon.json" in refusal["problem"], refusal
    assert "--follow-links" in refusal["fix"] and _sha(vm, "/srv/config/daemon.json") == before and _no_pv(vm)
    drop_in = "/etc/systemd/system/docker.service.d/thinpool.conf"
    vm.run(["bash", "-c", f"mkdir -p {drop_in.rsplit('/', 1)[0]} && ln -s /dev/null {drop_in}"])
    code, refusal, _ = thinpool_json(vm, "apply", "--yes", "--follow-links", *engine)
    assert code == 1 and "masked" in refusal["problem"] and _no_pv(vm)
    vm.run(["bash", "-c", f"rm {drop_in} && ln -sfn /nowhere/daemon.json /etc/docker/daemon.json"])
    code, refusal, _ = thinpool_json(vm, "apply", "--yes", "--follow-links", *engine)
    assert code == 1 and "which does not exist" in refusal["problem"] and _no_pv(vm)
    assert vm.run(["test", "-e", "/nowhere"], check=False).returncode == 1  # no folder made through the link
    vm.run(["ln", "-sfn", "/srv/config/daemon.json", "/etc/docker/daemon.json"])
    code, result, err = thinpool_json(vm, "apply", "--yes", "--follow-links", *engine)
    assert code == 0, err or result
    assert vm.run(["readlink", "/etc/docker/daemon.json"]).stdout.strip() == "/srv/config/daemon.json"
    written = json.loads(vm.run(["cat", "/srv/config/daemon.json"]).stdout)
    assert written["log-driver"] == "journald" and written["storage-driver"] == "overlay2"
    backups = vm.run(["bash", "-c", "cat /srv/config/daemon.json.thinpool-*.bak"]).stdout
    assert json.loads(backups) == {"log-driver": "journald"}
    vm.run(["rm", "-rf", "/srv/config"])  # the rest is the next test's reset


@pytest.mark.parametrize("device", ["vda", "../dev/vda", "-vvv"])
def test_a_relative_or_option_like_device_never_reaches_a_command(vm: VM, device: str) -> None:
    before = vm.run(["bash", "-c", "head -c 1048576 /dev/vda | sha256sum"]).stdout
    done = vm.run(["bash", "-c", f"cd /dev && {' '.join(vm.thinpool_argv)} apply --yes -- {device}"], check=False)
    assert done.returncode == 1 and "not an absolute device path" in done.stderr and "fix:" in done.stderr
    assert vm.run(["bash", "-c", "head -c 1048576 /dev/vda | sha256sum"]).stdout == before and _no_pv(vm)
