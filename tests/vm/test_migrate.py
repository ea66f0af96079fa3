"""A real Docker 20.10 devicemapper host moved to overlay2 on a thin volume of its pool, and back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from thinpool.rehearse.vm import VM

from .helpers import DOCKERD, NO_UDEV, kill_at_command, lvs, start_daemon, stop_docker, thinpool_json

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12")]

TO = ("migrate", "--to", "docker-overlay2-thin", "--staging", "/srv/staging", "--yes")
VOLUME_TREE = "cd /var/lib/docker/volumes/vol1/_data && find . -type f | sort | xargs sha256sum"


def _devicemapper_host(vm: VM, images: dict[str, str]) -> None:
    """thinpool's devicemapper pool with Docker on it: an imported image under two tags, a committed
    one, a stopped and a running container, and a named volume with data."""
    code, result, err = thinpool_json(vm, "apply", "--yes", "--engine", "docker-devicemapper", *NO_UDEV, "/dev/vda")
    assert code == 0, err or result
    start_daemon(vm, DOCKERD, ["docker", "version"], "/tmp/dockerd.log")
    vm.run(["docker", "import", images["rootfs"], "tiny:1"], timeout=300)
    vm.run(["docker", "tag", "tiny:1", "tiny:latest"])
    vm.run(
        [
            "docker",
            "run",
            "--network",
            "none",
            "--name",
            "c1",
            "-v",
            "vol1:/v",
            "tiny:1",
            "sh",
            "-c",
            "echo hello > /f && head -c 1048576 /dev/urandom > /v/data && mkdir /v/sub && echo x > /v/sub/y",
        ],
        timeout=300,
    )
    vm.run(["docker", "commit", "c1", "tiny:committed"], timeout=300)
    vm.run(["docker", "run", "-d", "--network", "none", "--name", "c2", "tiny:1", "sleep", "3600"], timeout=300)


def _images(vm: VM) -> dict[str, list[str]]:
    ids = vm.run(["docker", "image", "ls", "-q", "--no-trunc"]).stdout.split()
    inspected = json.loads(vm.run(["docker", "image", "inspect", *sorted(set(ids))]).stdout)
    return {item["Id"]: sorted(item["RepoTags"]) for item in inspected}


def _migrate(vm: VM, *args: str) -> list[dict[str, Any]]:
    code, result, err = thinpool_json(vm, *TO, *args, timeout=900)
    assert code == 0, err or result
    assert result["kind"] == "thinpool-migrate" and result["ok"], result
    steps: list[dict[str, Any]] = result["steps"]
    return steps


def _driver(vm: VM) -> dict[str, str]:
    info = json.loads(vm.run(["docker", "info", "--format", "{{json .}}"]).stdout)
    return {"driver": info["Driver"], **dict(info["DriverStatus"] or [])}


def test_a_devicemapper_host_moves_to_overlay2_with_its_images_and_volumes(vm: VM, images: dict[str, str]) -> None:
    _devicemapper_host(vm, images)
    volume = vm.run(["bash", "-c", VOLUME_TREE]).stdout
    (exported,) = _migrate(vm, "--step", "export", "--commit-containers")
    assert exported["ok"] and any("inventory: 4 images, 1 volumes, 2 containers" in item for item in exported["done"])
    before = _images(vm)  # with c1 and c2 committed to images
    stop_docker(vm)
    used_by_docker = lvs(vm, "docker")["thinpool"].data_percent
    (switched,) = _migrate(vm, "--step", "switch")
    assert any("record Docker's thin devices" in item for item in switched["done"]), switched
    kept = {name: lv for name, lv in lvs(vm, "docker").items() if name.startswith("devicemapper-")}
    assert kept and all(lv.pool_lv == "thinpool" and not lv.active for lv in kept.values())
    start_daemon(vm, DOCKERD, ["docker", "version"], "/tmp/dockerd.log")
    status = _driver(vm)
    assert status["driver"] == "overlay2" and status["Backing Filesystem"] == "xfs", status
    (imported,) = _migrate(vm, "--step", "import")
    assert imported["ok"] and imported["report"]["volumes_matched"] == ["vol1"], imported
    assert _images(vm) == before  # the same image IDs, every tag
    assert vm.run(["bash", "-c", VOLUME_TREE]).stdout == volume
    assert vm.run(["docker", "run", "--rm", "--network", "none", "tiny:committed", "cat", "/f"]).stdout == "hello\n"
    c1 = ["docker", "run", "--rm", "--network", "none", "thinpool-migrate/c1:committed", "cat", "/f"]
    assert vm.run(c1).stdout == "hello\n"  # c1's writable layer came over as an image
    not_carried = imported["report"]["containers_not_carried"]
    assert sorted(text.split()[0] for text in not_carried) == ["c1", "c2"]
    (again,) = _migrate(vm, "--step", "import")
    assert again["ok"] and again["done"] == []  # everything was there already
    (finished,) = _migrate(vm, "--finish")
    assert sum("old thin device" in item for item in finished["done"]) == len(kept)
    after = lvs(vm, "docker")
    assert not [name for name in after if name.startswith("devicemapper-")]
    assert float(after["thinpool"].data_percent) < float(used_by_docker)  # Docker's old devices gave their space back
    vm.run(["lvcreate", "-q", "-V", "64m", "-T", "docker/thinpool", "-n", "after"])  # lvm and the kernel agree
    assert vm.run(["test", "!", "-e", "/var/lib/docker.devicemapper"], check=False).returncode == 0
    _, doctor, _ = thinpool_json(vm, "doctor", "docker/thinpool")
    assert doctor["kind"] == "thinpool-doctor" and doctor["worst"] != "critical", doctor["findings"]
    (again,) = _migrate(vm, "--finish")
    assert again["done"] == []  # nothing left to do


@pytest.mark.sweep  # CI time; the power-cut sweep also cuts migrate's switch at three points on this release
def test_a_switch_killed_halfway_reruns_and_rolls_back_to_devicemapper(vm: VM, images: dict[str, str]) -> None:
    _devicemapper_host(vm, images)
    before = _images(vm)
    _migrate(vm, "--step", "export")
    stop_docker(vm)
    kill_at_command(vm, "vgcfgrestore", 0.0, *TO, "--step", "switch")
    (switched,) = _migrate(vm, "--step", "switch")
    assert any("apply --engine docker-overlay2-thin" in item for item in switched["done"]), switched
    assert "docker-data" in lvs(vm, "docker")
    vm.run(["lvcreate", "-q", "-y", "-L", "8m", "-n", "since", "docker"])  # lvm's metadata of before would lose it
    code, refused, err = thinpool_json(vm, *TO, "--rollback", "--yes")
    assert code == 1 and "now LV since 8388608 B" in refused.get("problem", ""), err or refused
    vm.run(["lvremove", "-q", "-y", "docker/since"])
    (rolled,) = _migrate(vm, "--rollback")
    assert any("put back lvm's metadata" in item for item in rolled["done"]), rolled
    assert not [name for name in lvs(vm, "docker") if name.startswith("devicemapper-") or name == "docker-data"]
    start_daemon(vm, DOCKERD, ["docker", "version"], "/tmp/dockerd.log")
    assert _driver(vm)["driver"] == "devicemapper"
    assert _images(vm) == before
    names = vm.run(["docker", "ps", "-a", "--format", "{{.Names}}"]).stdout.split()
    assert sorted(names) == ["c1", "c2"]
    assert vm.run(["docker", "run", "--rm", "--network", "none", "tiny:committed", "cat", "/f"]).stdout == "hello\n"
